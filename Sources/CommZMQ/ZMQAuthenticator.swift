import Comm
import CZeroMQ
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The ZAP handler (rfc.zeromq.org/spec/27) of one ZeroMQ context: a ROUTER bound at
/// `inproc://zeromq.zap.01`, served by a thread of its own. libzmq asks it about every connection
/// that reaches a socket of the context with a ZAP domain set, during the handshake; without it, a
/// CURVE server admits any client key. Each domain has a policy:
///
/// * `keys(set)`: CURVE clients whose public key is in the set are admitted; the reply's user id is
///   the key (Z85), so messages of the connection carry it (`ZMQ_MSG "User-Id"`);
/// * `addresses(set)`: connections without CURVE (the NULL mechanism) from these IP addresses;
/// * `pending`: the answer waits (at most `pendingTimeout`) until the domain gets another policy —
///   a ring link is bound before the worker learns who its predecessor is;
/// * no policy: refused.
///
/// Refusals are logged with the peer's address and key fingerprint (at most `logBurst` lines per
/// second, then a count). Handshakes are rate-limited per address (`attemptsPerSecond`, burst
/// `attemptBurst`). Sockets registered with `watch` also have their failed handshakes (a client that
/// pinned another server key, plaintext or garbage on a CURVE port) logged with the peer's address.
public final class ZMQAuthenticator: Sendable {
    public enum Policy: Sendable, Equatable {
        case keys(Set<String>)
        case addresses(Set<String>)
        case pending
    }

    public static let endpoint = "inproc://zeromq.zap.01"
    /// How long a request for a `pending` domain waits before it is refused.
    public static let pendingTimeout: Duration = .seconds(15)
    /// Requests waiting at most (more are refused at once).
    static let maxPending = 256
    static let attemptsPerSecond = 20.0, attemptBurst = 40.0
    static let logBurst = 10

    private struct Shared {
        var policies: [String: Policy] = [:]
        var watches: [(endpoint: String, label: String)] = []
        var stopped = false
        /// Counters for tests and status: admitted and refused handshakes.
        var admitted = 0, refused = 0
    }

    private final class Box: Sendable { let state = Mutex(Shared()) }
    private let box = Box()
    private let wake: EventWakeup
    private let done = DispatchSemaphore(value: 0)
    private let log: @Sendable (String) -> Void
    private let monitorCounter = Atomic<Int>(0)

    /// Binds the handler in `context` and starts its thread; returns once it is bound (so sockets
    /// created afterwards are authenticated from their first connection).
    public init(context: ZMQContext, log: @escaping @Sendable (String) -> Void) throws {
        self.log = log
        wake = try EventWakeup()
        let bound = DispatchSemaphore(value: 0)
        final class Failure: Sendable { let error = Mutex<(any Error)?>(nil) }
        let failure = Failure()
        let thread = Thread { [wake, box, done, log] in
            let loop: Loop
            do {
                loop = try Loop(context: context, wake: wake, box: box, log: log)
            } catch {
                failure.error.withLock { $0 = error }
                bound.signal()
                done.signal()
                return
            }
            bound.signal()
            loop.run()
            done.signal()
        }
        thread.name = "zerotrain-zap"
        thread.start()
        bound.wait()
        if let error = failure.error.withLock({ $0 }) {
            throw ZMQError.commError(error, "cannot start the ZAP handler (\(Self.endpoint))")
        }
    }

    deinit { stop() }

    /// Sets (or, with nil, removes) a domain's policy; requests waiting for it are answered now.
    public func setPolicy(_ policy: Policy?, domain: String) {
        box.state.withLock { $0.policies[domain] = policy }
        wake.signal()
    }

    public var counts: (admitted: Int, refused: Int) { box.state.withLock { ($0.admitted, $0.refused) } }

    /// Logs `socket`'s failed handshakes (with `label`, e.g. "control"). Call on the socket's thread
    /// before it binds; close the socket before this authenticator stops.
    public func watch(_ socket: ZMQSocket, label: String) throws {
        let id = monitorCounter.wrappingAdd(1, ordering: .relaxed).newValue
        let endpoint = "inproc://zerotrain-zap-monitor-\(id)"
        try socket.monitor(endpoint, events: ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED
                           | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        box.state.withLock { $0.watches.append((endpoint, label)) }
        wake.signal()
    }

    /// Stops the thread (once) and waits for it.
    public func stop() {
        let first = box.state.withLock { s -> Bool in
            defer { s.stopped = true }
            return !s.stopped
        }
        guard first else { return }
        wake.signal()
        done.wait()
    }

    /// The handler thread's state: its sockets and what is waiting.
    private final class Loop {
        let zap: ZMQSocket
        let wake: EventWakeup
        let box: Box
        let log: @Sendable (String) -> Void
        let part = ZMQMessage()
        var pending: [(frames: [[UInt8]], since: ContinuousClock.Instant)] = []
        var monitors: [Monitor] = []
        var buckets: [String: (tokens: Double, at: ContinuousClock.Instant)] = [:]
        var logWindow = (start: ContinuousClock.now, lines: 0, suppressed: 0)

        final class Monitor {
            let socket: ZMQSocket
            let label: String
            /// Connections accepted whose handshake has not finished: fd → peer address.
            var unconfirmed: [Int32: String] = [:]
            /// A handshake failed: the reason, to log when its connection's fd is closed.
            var failure: String?
            init(socket: ZMQSocket, label: String) {
                self.socket = socket
                self.label = label
            }
        }

        init(context: ZMQContext, wake: EventWakeup, box: Box, log: @escaping @Sendable (String) -> Void) throws {
            zap = try ZMQSocket(context: context, kind: .router)
            try zap.setOption(ZMQ_RCVHWM, 0, name: "ZMQ_RCVHWM")
            try zap.bind(ZMQAuthenticator.endpoint)
            self.wake = wake
            self.box = box
            self.log = log
        }

        func run() {
            defer {
                for m in monitors { m.socket.close() }
                zap.close()
            }
            while true {
                let (stopped, watches) = box.state.withLock { s in
                    defer { s.watches = [] }
                    return (s.stopped, s.watches)
                }
                if stopped { return }
                for w in watches {
                    guard let s = try? ZMQSocket(context: zap.context, kind: .pair) else { continue }
                    try? s.setOption(ZMQ_RCVHWM, 0, name: "ZMQ_RCVHWM")
                    if (try? s.connect(w.endpoint)) != nil { monitors.append(Monitor(socket: s, label: w.label)) } else { s.close() }
                }
                answerPending()
                var timeout = -1
                if let oldest = pending.map(\.since).min() {
                    let left = ContinuousClock.now.duration(to: oldest + ZMQAuthenticator.pendingTimeout)
                    timeout = max(1, Int(left.wholeMilliseconds) + 1)
                }
                let items = [(zap, Int16(ZMQ_POLLIN))] + monitors.map { ($0.socket, Int16(ZMQ_POLLIN)) }
                guard let ready = try? ZMQSocket.poll(items, fileDescriptors: [wake.fd], timeoutMs: timeout) else { return }
                if ready.fileDescriptors[0] & Int16(ZMQ_POLLIN) != 0 {
                    var count: UInt64 = 0
                    _ = read(wake.fd, &count, 8)
                }
                while let frames = receiveRequest() { handle(frames, since: .now, fresh: true) }
                for m in monitors { drain(m) }
            }
        }

        /// One whole multipart message from the ZAP socket, or nil when none is waiting.
        func receiveRequest() -> [[UInt8]]? {
            guard (try? zap.receive(part)) == true else { return nil }
            var frames = [Array(part.bytes)]
            while zap.hasMoreParts, frames.count < 16, (try? zap.receive(part, dontWait: false)) == true {
                frames.append(Array(part.bytes))
            }
            while zap.hasMoreParts { _ = try? zap.receive(part, dontWait: false) }
            part.clear()
            return frames
        }

        /// frames: routing id, empty delimiter, "1.0", request id, domain, address, identity, mechanism, credentials…
        func handle(_ frames: [[UInt8]], since: ContinuousClock.Instant, fresh: Bool) {
            guard frames.count >= 8, frames[1].isEmpty, String(decoding: frames[2], as: UTF8.self) == "1.0" else { return }
            let domain = String(decoding: frames[4], as: UTF8.self)
            let address = String(decoding: frames[5], as: UTF8.self)
            let mechanism = String(decoding: frames[7], as: UTF8.self)
            var key: String?
            if mechanism == "CURVE", frames.count >= 9 { key = frames[8].withUnsafeBytes { ZMQCurveKeyPair.z85(raw: $0) } }
            let who = "\(address.isEmpty ? "an unknown address" : address)" + (key.map { ", key \(ZMQCurveKeyPair.fingerprint($0))" } ?? ", no CURVE key")
            // Rate limit by address, on the first look at a request only.
            if fresh && !admitAttempt(address) {
                refuse(frames, "too many handshakes", log: "\(domain): refused a connection from \(who): more than \(Int(ZMQAuthenticator.attemptsPerSecond)) handshakes per second from that address")
                return
            }
            let policy = box.state.withLock { $0.policies[domain] }
            switch policy {
            case nil:
                refuse(frames, "no such domain", log: "\(domain.isEmpty ? "(no domain)" : domain): refused a connection from \(who): nothing is served there")
            case .pending:
                if since.duration(to: .now) >= ZMQAuthenticator.pendingTimeout {
                    refuse(frames, "not admitted in time", log: "\(domain): refused a connection from \(who): no membership admitted it within \(ZMQAuthenticator.pendingTimeout)")
                } else if pending.count >= ZMQAuthenticator.maxPending {
                    refuse(frames, "too many waiting", log: "\(domain): refused a connection from \(who): \(ZMQAuthenticator.maxPending) handshakes are waiting already")
                } else {
                    pending.append((frames, since))
                }
            case let .keys(allowed):
                if let key, allowed.contains(key) {
                    admit(frames, userID: Array(key.utf8))
                } else {
                    refuse(frames, "key not allowed", log: "\(domain): refused a connection from \(who): " + (key == nil ? "it does not speak CURVE" : "the key is not allowed"))
                }
            case let .addresses(allowed):
                if mechanism == "NULL", allowed.contains(address) {
                    admit(frames, userID: [])
                } else {
                    refuse(frames, "address not allowed", log: "\(domain): refused a connection from \(who): not the address of a peer of this ring link")
                }
            }
        }

        func answerPending() {
            let waiting = pending
            pending = []
            for p in waiting { handle(p.frames, since: p.since, fresh: false) }
        }

        func admitAttempt(_ address: String) -> Bool {
            let now = ContinuousClock.now
            var b = buckets[address] ?? (ZMQAuthenticator.attemptBurst, now)
            b.tokens = min(ZMQAuthenticator.attemptBurst, b.tokens + b.at.duration(to: now).seconds * ZMQAuthenticator.attemptsPerSecond)
            b.at = now
            let ok = b.tokens >= 1
            if ok { b.tokens -= 1 }
            if buckets.count > 4096 { buckets.removeAll() }   // bounded: an attacker with many addresses resets the buckets, not the memory
            buckets[address] = b
            return ok
        }

        func admit(_ frames: [[UInt8]], userID: [UInt8]) {
            box.state.withLock { $0.admitted += 1 }
            reply(frames, status: "200", text: "OK", userID: userID)
        }

        func refuse(_ frames: [[UInt8]], _ text: String, log line: String) {
            box.state.withLock { $0.refused += 1 }
            reply(frames, status: "400", text: text, userID: [])
            say(line)
        }

        func reply(_ frames: [[UInt8]], status: String, text: String, userID: [UInt8]) {
            let parts: [[UInt8]] = [frames[0], [], Array("1.0".utf8), frames[3], Array(status.utf8), Array(text.utf8), userID, []]
            let message = ZMQMessage()
            for (i, p) in parts.enumerated() {
                guard (try? message.reset(byteCount: p.count)) != nil else { return }
                p.withUnsafeBytes { if !$0.isEmpty { message.mutableBytes.copyMemory(from: $0) } }
                _ = try? zap.send(message, more: i < parts.count - 1)
            }
        }

        /// Logs, at most `logBurst` lines a second; the rest are counted and summed up.
        func say(_ line: String) {
            let now = ContinuousClock.now
            if logWindow.start.duration(to: now) >= .seconds(1) {
                if logWindow.suppressed > 0 { log("security: \(logWindow.suppressed) more refusal(s) not logged in the last second") }
                logWindow = (now, 0, 0)
            }
            if logWindow.lines < ZMQAuthenticator.logBurst {
                logWindow.lines += 1
                log("security: " + line)
            } else {
                logWindow.suppressed += 1
            }
        }

        func drain(_ m: Monitor) {
            let event = ZMQMessage(), endpoint = ZMQMessage()
            while (try? m.socket.receive(event)) == true {
                let bytes = event.bytes
                guard bytes.count >= 6 else { continue }
                let kind = Int32(bytes.loadUnaligned(as: UInt16.self))
                let value = bytes.loadUnaligned(fromByteOffset: 2, as: UInt32.self)
                while m.socket.hasMoreParts { _ = try? m.socket.receive(endpoint, dontWait: false) }
                switch kind {
                case ZMQ_EVENT_ACCEPTED:
                    let fd = Int32(bitPattern: value)
                    m.unconfirmed[fd] = Self.peerAddress(fd)
                    if m.unconfirmed.count > 1024 { m.unconfirmed.removeAll() }
                case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
                    if m.unconfirmed.count == 1 { m.unconfirmed.removeAll() }
                case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL, ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                    m.failure = kind == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ? Self.describe(protocolError: Int32(bitPattern: value))
                        : "the handshake failed (a peer without CURVE, or one that broke off)"
                case ZMQ_EVENT_DISCONNECTED:
                    let fd = Int32(bitPattern: value)
                    let address = m.unconfirmed.removeValue(forKey: fd)
                    if let failure = m.failure {
                        m.failure = nil
                        say("\(m.label): refused a connection from \(address ?? "an unknown address"): \(failure)")
                    }
                default:
                    break
                }
            }
        }

        static func describe(protocolError code: Int32) -> String {
            switch code {
            case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
                "the CURVE handshake did not decrypt (the peer pinned another server key, or sent a forged handshake)"
            case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
                "the peer does not speak CURVE (security mechanisms differ)"
            default:
                "a malformed handshake (ZMTP protocol error 0x\(String(UInt32(bitPattern: code), radix: 16)))"
            }
        }

        /// "ADDRESS:PORT" of a connected TCP socket, or nil (ipc, closed).
        static func peerAddress(_ fd: Int32) -> String? {
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let rc = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) }
            }
            guard rc == 0 else { return nil }
            var host = [CChar](repeating: 0, count: Int(NI_MAXHOST)), port = [CChar](repeating: 0, count: Int(NI_MAXSERV))
            let ok = withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    getnameinfo($0, length, &host, socklen_t(host.count), &port, socklen_t(port.count), NI_NUMERICHOST | NI_NUMERICSERV)
                }
            }
            guard ok == 0 else { return nil }
            return String(cString: host) + ":" + String(cString: port)
        }
    }
}
