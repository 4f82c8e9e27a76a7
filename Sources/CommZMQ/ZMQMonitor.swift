import Common
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
    /// The last few events, for error messages ("connected tcp://… after 3 ms").
    private(set) var history: [String] = []
    private let created = ContinuousClock.now

    init(watching target: ZMQSocket, context: ZMQContext) throws {
        let id = Self.counter.wrappingAdd(1, ordering: .relaxed).newValue
        let endpoint = "inproc://zerotrain-monitor-\(id)"
        try target.monitor(endpoint, events: ZMQ_EVENT_CONNECTED | ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED)
        socket = try ZMQSocket(context: context, kind: .pair)
        // Unlimited queue: libzmq blocks its I/O thread when an event does not fit.
        try socket.setOption(ZMQ_RCVHWM, 0, name: "ZMQ_RCVHWM")
        try socket.connect(endpoint)
    }

    /// Applies every pending event; returns whether there were any.
    @discardableResult
    func drain() throws -> Bool {
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
            let at = created.duration(to: .now).wholeMilliseconds
            history.append("\(Self.name(of: Int32(event)))(\(value)) \(endpoint) at +\(at) ms")
            if history.count > 8 { history.removeFirst() }
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

    /// Stops `target`'s event stream, then closes the reader (in this order, see `ZMQSocket.stopMonitor`).
    func close(target: ZMQSocket?) {
        target?.stopMonitor()
        socket.close()
    }

    /// "events: connected(12) tcp://… at +3 ms, …" or "no connection events".
    var summary: String {
        history.isEmpty ? "no connection events" : "events: " + history.joined(separator: ", ")
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
