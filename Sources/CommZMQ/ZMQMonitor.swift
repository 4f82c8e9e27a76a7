import CZeroMQ
import Synchronization

/// Reads a socket's connection events (connected, accepted, disconnected) from libzmq's monitor
/// PAIR socket, and keeps a count of live connections. Same thread as the monitored socket.
final class ZMQMonitor {
    private static let counter = Atomic<Int>(0)

    let socket: ZMQSocket
    private let message = ZMQMessage()
    private let endpointPart = ZMQMessage()
    /// Connections currently up (accepted or connected minus disconnected).
    private(set) var connections = 0
    /// Whether a connection was ever up.
    private(set) var everConnected = false
    /// When the connection count last dropped to zero.
    private(set) var lostAt: ContinuousClock.Instant?

    init(watching target: ZMQSocket, context: ZMQContext) throws(ZMQError) {
        let id = Self.counter.wrappingAdd(1, ordering: .relaxed).newValue
        let endpoint = "inproc://zerotrain-monitor-\(id)"
        try target.monitor(endpoint, events: ZMQ_EVENT_CONNECTED | ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED)
        socket = try ZMQSocket(context: context, kind: .pair)
        try socket.connect(endpoint)
    }

    /// Applies every pending event; returns whether there were any.
    @discardableResult
    func drain() throws(ZMQError) -> Bool {
        var any = false
        while try socket.receive(message) {
            any = true
            let part = message.bytes
            var event: UInt16 = 0
            if part.count >= 2 { event = part.loadUnaligned(as: UInt16.self) }
            while socket.hasMoreParts { _ = try socket.receive(endpointPart, dontWait: false) }
            switch Int32(event) {
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
        message.clear()
        endpointPart.clear()
        return any
    }

    /// True once a connection that was up has been down for longer than `grace`.
    func lost(grace: Duration) -> Bool {
        guard everConnected, connections == 0, let lostAt else { return false }
        return lostAt.duration(to: .now) > grace
    }

    func close() { socket.close() }
}
