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
/// `attemptBurst`). Handshakes that fail before a ZAP request (a client that pinned another server
/// key, plaintext or garbage on a CURVE port) are logged by `ZMQHandshakeWatcher`.
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
        var stopped = false
        /// Counters for tests and status: admitted and refused handshakes.
        var admitted = 0, refused = 0
    }

    private final class Box: Sendable { let state = Mutex(Shared()) }
    private let box = Box()
    private let wake: EventWakeup
    private let done = DispatchSemaphore(value: 0)
    private let log: @Sendable (String) -> Void

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
        var buckets: [String: (tokens: Double, at: ContinuousClock.Instant)] = [:]
        lazy var securityLog = SecurityLog(burst: ZMQAuthenticator.logBurst, what: "refusal(s)", write: log)

        init(context: ZMQContext, wake: EventWakeup, box: Box, log: @escaping @Sendable (String) -> Void) throws {
            zap = try ZMQSocket(context: context, kind: .router)
            try zap.setOption(ZMQ_RCVHWM, 0, name: "ZMQ_RCVHWM")
            try zap.bind(ZMQAuthenticator.endpoint)
            self.wake = wake
            self.box = box
            self.log = log
        }

        func run() {
            defer { zap.close() }
            while true {
                if box.state.withLock({ $0.stopped }) { return }
                answerPending()
                var timeout = -1
                if let oldest = pending.map(\.since).min() {
                    let left = ContinuousClock.now.duration(to: oldest + ZMQAuthenticator.pendingTimeout)
                    timeout = max(1, Int(left.wholeMilliseconds) + 1)
                }
                guard let ready = try? ZMQSocket.poll([(zap, Int16(ZMQ_POLLIN))], fileDescriptors: [wake.fd], timeoutMs: timeout) else { return }
                if ready.fileDescriptors[0] & Int16(ZMQ_POLLIN) != 0 {
                    var count: UInt64 = 0
                    _ = read(wake.fd, &count, 8)
                }
                while let frames = receiveRequest() { handle(frames, since: .now, fresh: true) }
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
        func say(_ line: String) { securityLog(line) }
    }
}
