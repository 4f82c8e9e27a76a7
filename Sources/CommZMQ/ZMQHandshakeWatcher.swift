import Comm
import CZeroMQ
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Logs the failed handshakes of bound sockets — garbage, a peer without CURVE, one that pinned
/// another server key — once per connection with the peer's address, at most `logBurst` lines a
/// second (then a count), so a flood of garbage cannot flood the log. libzmq drops such peers by
/// itself; this only says so. One per ZeroMQ context (`ZMQNetwork`): the coordinator's control
/// socket and each worker's tcp ring link are watched.
///
/// The sockets' monitor PAIRs are read by a thread of its own that blocks in `zmq_poll` on them
/// and an eventfd (no timer), so the peer's address is taken (`getpeername`) while the accepted
/// connection is still open, whatever the socket's own thread is doing. A socket's connection
/// events can also be forwarded (`MonitorInbox`) to its owner, which then reads them without a
/// monitor of its own (libzmq allows one monitor per socket): the ring link's peer-loss detection.
public final class ZMQHandshakeWatcher: Sendable {
    static let logBurst = 10
    /// Events a watched socket's monitor reports.
    static let events = ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED
        | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
        | ZMQ_EVENT_MONITOR_STOPPED

    private struct Shared {
        var added: [(endpoint: String, label: String, forward: MonitorInbox?)] = []
        var stopped = false
        /// Failed handshakes seen, logged or not (tests, status).
        var failures = 0
    }

    private final class Box: Sendable { let state = Mutex(Shared()) }
    private let box = Box()
    private let wake: EventWakeup
    private let done = DispatchSemaphore(value: 0)
    private let counter = Atomic<Int>(0)

    /// Starts the thread; `log` gets "security: LABEL: refused a connection from ADDRESS: REASON".
    public init(context: ZMQContext, log: @escaping @Sendable (String) -> Void) throws {
        wake = try EventWakeup()
        let thread = Thread { [wake, box, done] in
            Loop(context: context, wake: wake, box: box, log: log).run()
            done.signal()
        }
        thread.name = "zerotrain-handshakes"
        thread.start()
    }

    deinit { stop() }

    /// Watches `socket` (call on its thread, before it binds) under `label` ("control", "ring");
    /// `forward` also gets its connection events. Stop it with `socket.stopMonitor()` before
    /// closing the socket: the watcher then closes its reader.
    func watch(_ socket: ZMQSocket, label: String, forward: MonitorInbox? = nil) throws {
        let id = counter.wrappingAdd(1, ordering: .relaxed).newValue
        let endpoint = "inproc://zerotrain-handshakes-\(id)"
        try socket.monitor(endpoint, events: Self.events)
        box.state.withLock { $0.added.append((endpoint, label, forward)) }
        wake.signal()
    }

    /// Failed handshakes seen so far.
    public var failures: Int { box.state.withLock { $0.failures } }

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

    /// The thread's state: a reader per watched socket, and the log's rate limit.
    private final class Loop {
        let context: ZMQContext
        let wake: EventWakeup
        let box: Box
        let log: @Sendable (String) -> Void
        var watches: [Watch] = []
        lazy var securityLog = SecurityLog(burst: ZMQHandshakeWatcher.logBurst, what: "failed handshake(s)", write: log)
        let event = ZMQMessage(), endpoint = ZMQMessage()

        final class Watch {
            let reader: ZMQSocket
            let label: String
            let forward: MonitorInbox?
            var state = HandshakeWatch()
            var stopped = false
            init(reader: ZMQSocket, label: String, forward: MonitorInbox?) {
                self.reader = reader
                self.label = label
                self.forward = forward
            }
        }

        init(context: ZMQContext, wake: EventWakeup, box: Box, log: @escaping @Sendable (String) -> Void) {
            self.context = context
            self.wake = wake
            self.box = box
            self.log = log
        }

        func run() {
            defer { for w in watches { w.reader.close() } }
            while true {
                let (stopped, added) = box.state.withLock { s in
                    defer { s.added = [] }
                    return (s.stopped, s.added)
                }
                if stopped { return }
                for a in added {
                    guard let reader = try? ZMQSocket(context: context, kind: .pair) else { continue }
                    // Unlimited: libzmq's I/O thread blocks on a monitor event that does not fit.
                    try? reader.setOption(ZMQ_RCVHWM, 0, name: "ZMQ_RCVHWM")
                    if (try? reader.connect(a.endpoint)) != nil {
                        watches.append(Watch(reader: reader, label: a.label, forward: a.forward))
                    } else {
                        reader.close()
                    }
                }
                let ready: (sockets: [Int16], fileDescriptors: [Int16])
                do {
                    ready = try ZMQSocket.poll(watches.map { ($0.reader, Int16(ZMQ_POLLIN)) }, fileDescriptors: [wake.fd], timeoutMs: -1)
                } catch {
                    return   // the context is terminating (ETERM)
                }
                if ready.fileDescriptors[0] & Int16(ZMQ_POLLIN) != 0 {
                    var count: UInt64 = 0
                    _ = read(wake.fd, &count, 8)
                }
                for (w, revents) in zip(watches, ready.sockets) where revents & Int16(ZMQ_POLLIN) != 0 { drain(w) }
                for w in watches where w.stopped { w.reader.close() }
                watches.removeAll { $0.stopped }
            }
        }

        func drain(_ w: Watch) {
            while (try? w.reader.receive(event)) == true {
                let bytes = event.bytes
                var kind: Int32 = 0, value: UInt32 = 0
                if bytes.count >= 6 {
                    kind = Int32(bytes.loadUnaligned(as: UInt16.self))
                    value = bytes.loadUnaligned(fromByteOffset: 2, as: UInt32.self)
                }
                var uri = ""
                while w.reader.hasMoreParts, (try? w.reader.receive(endpoint, dontWait: false)) == true {
                    uri = String(decoding: endpoint.bytes, as: UTF8.self)
                }
                if kind == ZMQ_EVENT_MONITOR_STOPPED {
                    w.stopped = true
                    break
                }
                let address = kind == ZMQ_EVENT_ACCEPTED ? Self.peerAddress(Int32(bitPattern: value)) : nil
                if let refusal = w.state.event(kind, value: value, address: address) {
                    box.state.withLock { $0.failures += 1 }
                    say("\(w.label): refused a connection from \(refusal.line)")
                }
                w.forward?.post(kind: kind, value: value, endpoint: uri)
            }
            event.clear()
            endpoint.clear()
        }

        /// Logs, at most `logBurst` lines a second; the rest are counted and summed up.
        func say(_ line: String) { securityLog(line) }

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

/// A socket's connection count kept by the watcher's thread for the socket's owner, with an
/// eventfd the owner polls next to the socket (`ZMQMonitor`): bounded however many events come.
final class MonitorInbox: Sendable {
    let wakeup: EventWakeup
    private let tally = Mutex(ConnectionTally())

    init() throws { wakeup = try EventWakeup() }

    func post(kind: Int32, value: UInt32, endpoint: String) {
        guard ConnectionTally.counts(kind) else { return }
        tally.withLock { $0.apply(kind, value: value, endpoint: endpoint) }
        wakeup.signal()
    }

    /// The tally now, and whether events came since the last look.
    func take() -> (ConnectionTally, changed: Bool) {
        var count: UInt64 = 0
        let changed = read(wakeup.fd, &count, 8) == 8
        return (tally.withLock { $0 }, changed)
    }
}
