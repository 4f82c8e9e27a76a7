import Common
import CZeroMQ
import Synchronization

/// The connections of a socket, from its connection events (connected, accepted, disconnected).
struct ConnectionTally: Sendable {
    /// Connections currently up (accepted or connected minus disconnected).
    private(set) var connections = 0
    /// Whether a connection was ever up.
    private(set) var everConnected = false
    /// When the connection count last dropped to zero.
    private(set) var lostAt: ContinuousClock.Instant?
    /// The last few events, for error messages ("connected tcp://… after 3 ms").
    private(set) var history: [String] = []
    private let created = ContinuousClock.now

    static func counts(_ kind: Int32) -> Bool {
        kind == ZMQ_EVENT_CONNECTED || kind == ZMQ_EVENT_ACCEPTED || kind == ZMQ_EVENT_DISCONNECTED
    }

    mutating func apply(_ kind: Int32, value: UInt32, endpoint: String) {
        let at = created.duration(to: .now).wholeMilliseconds
        history.append("\(Self.name(of: kind))(\(value)) \(endpoint) at +\(at) ms")
        if history.count > 8 { history.removeFirst() }
        switch kind {
        case ZMQ_EVENT_CONNECTED, ZMQ_EVENT_ACCEPTED:
            connections += 1
            everConnected = true
            lostAt = nil
        case ZMQ_EVENT_DISCONNECTED:
            connections = max(0, connections - 1)
            if connections == 0 { lostAt = .now }
        default:
            break
        }
    }

    private static func name(of event: Int32) -> String {
        switch event {
        case ZMQ_EVENT_CONNECTED: "connected"
        case ZMQ_EVENT_ACCEPTED: "accepted"
        case ZMQ_EVENT_DISCONNECTED: "disconnected"
        default: "event\(event)"
        }
    }
}

/// Keeps a count of a socket's live connections from its libzmq monitor: read from the monitor's
/// PAIR socket on the monitored socket's thread, or — for a bound socket whose failed handshakes
/// are logged — from a `ZMQHandshakeWatcher`, whose thread reads the monitor and keeps the count.
/// Either way the owner polls `poll(_:timeoutMs:)`, which wakes on the socket or on an event.
final class ZMQMonitor {
    private static let counter = Atomic<Int>(0)

    private enum Source {
        case reader(ZMQSocket, message: ZMQMessage, endpointPart: ZMQMessage)
        case watcher(MonitorInbox)
    }

    private let source: Source
    private var tally = ConnectionTally()

    /// A monitor read on this thread (the monitored socket's).
    init(watching target: ZMQSocket, context: ZMQContext) throws {
        let id = Self.counter.wrappingAdd(1, ordering: .relaxed).newValue
        let endpoint = "inproc://zerotrain-monitor-\(id)"
        try target.monitor(endpoint, events: ZMQ_EVENT_CONNECTED | ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED)
        let socket = try ZMQSocket(context: context, kind: .pair)
        // Unlimited queue: libzmq blocks its I/O thread when an event does not fit.
        try socket.setOption(ZMQ_RCVHWM, 0, name: "ZMQ_RCVHWM")
        try socket.connect(endpoint)
        source = .reader(socket, message: ZMQMessage(), endpointPart: ZMQMessage())
    }

    /// A monitor read by `watcher`, which also logs the socket's failed handshakes under `label`.
    /// Call before the target binds.
    init(watching target: ZMQSocket, through watcher: ZMQHandshakeWatcher, label: String) throws {
        let inbox = try MonitorInbox()
        try watcher.watch(target, label: label, forward: inbox)
        source = .watcher(inbox)
    }

    var connections: Int { tally.connections }
    var everConnected: Bool { tally.everConnected }

    /// Applies every pending event; returns whether there were any.
    @discardableResult
    func drain() throws -> Bool {
        switch source {
        case let .watcher(inbox):
            let (now, changed) = inbox.take()
            tally = now
            return changed
        case let .reader(socket, message, endpointPart):
            var any = false
            while try socket.receive(message) {
                any = true
                let part = message.bytes
                var event: UInt16 = 0, value: UInt32 = 0
                if part.count >= 6 {
                    event = part.loadUnaligned(as: UInt16.self)
                    value = part.loadUnaligned(fromByteOffset: 2, as: UInt32.self)
                }
                var endpoint = ""
                while socket.hasMoreParts {
                    _ = try socket.receive(endpointPart, dontWait: false)
                    endpoint = String(decoding: endpointPart.bytes, as: UTF8.self)
                }
                tally.apply(Int32(event), value: value, endpoint: endpoint)
            }
            message.clear()
            endpointPart.clear()
            return any
        }
    }

    /// Polls `item` (the monitored socket) and this monitor's events, at most `timeoutMs`.
    func poll(_ item: (socket: ZMQSocket, events: Int16), timeoutMs: Int) throws {
        switch source {
        case let .reader(socket, _, _):
            _ = try ZMQSocket.poll([item, (socket, Int16(ZMQ_POLLIN))], timeoutMs: timeoutMs)
        case let .watcher(inbox):
            _ = try ZMQSocket.poll([item], fileDescriptors: [inbox.wakeup.fd], timeoutMs: timeoutMs)
        }
    }

    /// True once a connection that was up has been down for longer than `grace`.
    func lost(grace: Duration) -> Bool {
        guard tally.everConnected, tally.connections == 0, let lostAt = tally.lostAt else { return false }
        return lostAt.duration(to: .now) > grace
    }

    /// Stops `target`'s event stream, then closes the reader (in this order, see
    /// `ZMQSocket.stopMonitor`); a watcher closes its reader when the stream stops.
    func close(target: ZMQSocket?) {
        target?.stopMonitor()
        if case let .reader(socket, _, _) = source { socket.close() }
    }

    /// "events: connected(12) tcp://… at +3 ms, …" or "no connection events".
    var summary: String {
        tally.history.isEmpty ? "no connection events" : "events: " + tally.history.joined(separator: ", ")
    }
}
