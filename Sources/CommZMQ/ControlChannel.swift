import Common
import CZeroMQ
import Comm
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The coordinator's end of the control plane: a ROUTER socket (ROUTER_MANDATORY, so a send to a
/// peer that is gone fails instead of vanishing). Messages are one payload frame after the peer's
/// identity. Its poll set holds the socket and an eventfd (`wakeup`), so the loop wakes for a
/// message, a wake-up from another thread, or its deadline — nothing else. Use from one thread.
public final class ControlRouter: ControlServer {
    private let socket: ZMQSocket
    private let identity = ZMQMessage(), payload = ZMQMessage()
    private let events: EventWakeup
    public let endpoint: String
    /// The CURVE key each peer authenticated with (ZAP's user id), from its messages.
    private var keys: [Data: String] = [:]

    /// With `security`, a CURVE server whose clients `authenticator` admits by key (domain
    /// `ZMQNetwork.controlDomain`); with `handshakes`, its failed handshakes are logged.
    public init(context: ZMQContext, bind endpoint: String, security: ZMQNetwork.Security? = nil,
                authenticator: ZMQAuthenticator? = nil, handshakes: ZMQHandshakeWatcher? = nil) throws {
        socket = try ZMQSocket(context: context, kind: .router)
        try socket.setOption(ZMQ_ROUTER_MANDATORY, 1, name: "ZMQ_ROUTER_MANDATORY")
        // A peer that sends a bigger part is disconnected before libzmq allocates it; at most
        // 64 messages are queued per peer.
        try socket.setMaximumMessageSize(ZMQNetwork.maxControlMessageBytes)
        try socket.setOption(ZMQ_RCVHWM, 64, name: "ZMQ_RCVHWM")
        if let security, authenticator != nil {
            try socket.setCurveServer(secretKey: security.keys.secretKey)
            try socket.setZAPDomain(ZMQNetwork.controlDomain)
        }
        try handshakes?.watch(socket, label: "control")
        try socket.bind(endpoint)
        self.endpoint = try socket.lastEndpoint()
        events = try EventWakeup()
    }

    public var wakeup: any Wakeup { events }

    public func next(until deadline: ContinuousClock.Instant?) throws -> ControlEvent {
        try events.wait(for: socket, until: deadline) {
            guard try socket.receive(identity) else { return nil }
            let peer = Data(identity.bytes)
            guard socket.hasMoreParts, try socket.receive(payload, dontWait: false) else { return nil }
            if let key = payload.property("User-Id"), !key.isEmpty, keys[peer] == nil {
                if keys.count > 4096 { keys.removeAll() }
                keys[peer] = key
            }
            var data = Data(payload.bytes)
            while socket.hasMoreParts {   // tolerate stray extra frames
                try socket.receive(payload, dontWait: false)
                data = Data(payload.bytes)
            }
            return .message(peer: peer, data)
        }
    }

    /// Sends `data` to `peer`; false if the peer is not connected (or its queue is full).
    @discardableResult
    public func send(_ data: Data, to peer: Data) throws -> Bool {
        try identity.reset(byteCount: peer.count)
        peer.withUnsafeBytes { identity.mutableBytes.copyMemory(from: $0) }
        try payload.reset(byteCount: data.count)
        data.withUnsafeBytes { if data.count > 0 { payload.mutableBytes.copyMemory(from: $0) } }
        do {
            guard try socket.send(identity, more: true) else { return false }
        } catch let e as ZMQError where e.errno == EHOSTUNREACH {
            return false
        }
        return try socket.send(payload)
    }

    public func authenticatedKey(of peer: Data) -> String? { keys[peer] }

    public func close(linger: Duration) {
        socket.stopMonitor()
        socket.close(lingerMs: Int32(clamping: linger.wholeMilliseconds))
    }
}

/// A worker's end of the control plane: a DEALER connected to the coordinator with IMMEDIATE set,
/// so nothing is queued before the connection is up (sends return false instead). Polls with an
/// eventfd like `ControlRouter`. It has a ZeroMQ context of its own, so that `close` can wait for
/// the worker's last message (`bye`, `failed`) to leave — by terminating that context — without
/// waiting for the data plane's sockets, and a worker that exits right after never loses it.
public final class ControlDealer: ControlClient {
    private let context: ZMQContext
    private let socket: ZMQSocket
    private let payload = ZMQMessage()
    private let events: EventWakeup

    /// With `security` (and its `coordinatorKey`), a CURVE client that pins the coordinator's key.
    public init(connect endpoint: String, security: ZMQNetwork.Security? = nil) throws {
        context = try ZMQContext(ioThreads: 1)
        socket = try ZMQSocket(context: context, kind: .dealer)
        try socket.setOption(ZMQ_IMMEDIATE, 1, name: "ZMQ_IMMEDIATE")
        try socket.setMaximumMessageSize(ZMQNetwork.maxControlMessageBytes)
        if let security {
            guard let server = security.coordinatorKey else {
                throw CommError(.invalidArgument, "security.coordinator_public_key is needed to reach a coordinator with keys")
            }
            try socket.setCurveClient(serverKey: server, publicKey: security.keys.publicKey, secretKey: security.keys.secretKey)
        }
        try socket.connect(endpoint)
        events = try EventWakeup()
    }

    public var wakeup: any Wakeup { events }

    /// False when the coordinator is not connected yet or the queue is full.
    @discardableResult
    public func send(_ data: Data) throws -> Bool {
        try payload.reset(byteCount: data.count)
        data.withUnsafeBytes { if data.count > 0 { payload.mutableBytes.copyMemory(from: $0) } }
        return try socket.send(payload)
    }

    public func next(until deadline: ContinuousClock.Instant?) throws -> ControlEvent {
        try events.wait(for: socket, until: deadline) {
            guard try socket.receive(payload) else { return nil }
            let data = Data(payload.bytes)
            while socket.hasMoreParts { try socket.receive(payload, dontWait: false) }
            return .message(peer: Data(), data)
        }
    }

    /// Closes the socket and waits until its unsent messages have left, at most `linger`.
    public func close(linger: Duration) {
        socket.close(lingerMs: Int32(clamping: linger.wholeMilliseconds))
        context.terminate()
    }
}

/// An eventfd: `signal()` from any thread adds to its counter and makes it readable; the loop that
/// polls it beside its socket drains it.
final class EventWakeup: Wakeup {
    // Sendable: `fd` never changes, and eventfd reads and writes are atomic kernel operations.
    let fd: Int32

    init() throws {
        fd = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard fd >= 0 else {
            throw CommError(.transport, "cannot create the control loop's eventfd", cause: ZMQError(errno: errno, function: "eventfd", context: ""))
        }
    }

    deinit { Glibc.close(fd) }

    func signal() {
        var one: UInt64 = 1
        _ = write(fd, &one, 8)
    }

    /// Polls `socket` and this eventfd until one of them has something or `deadline` passes:
    /// `receive` is tried first (a message beats a wake-up; the wake-up stays pending).
    func wait(for socket: ZMQSocket, until deadline: ContinuousClock.Instant?,
              receive: () throws -> ControlEvent?) throws -> ControlEvent {
        while true {
            if let event = try receive() { return event }
            var timeoutMs = -1
            if let deadline {
                let left = ContinuousClock.now.duration(to: deadline)
                if left <= .zero { return .deadline }
                // Round up: waking a moment early would only loop back here.
                timeoutMs = Int((left + .nanoseconds(999_999)).wholeMilliseconds)
            }
            let ready = try ZMQSocket.poll([(socket, Int16(ZMQ_POLLIN))], fileDescriptors: [fd], timeoutMs: timeoutMs)
            if ready.sockets[0] & Int16(ZMQ_POLLIN) != 0 { continue }
            if ready.fileDescriptors[0] & Int16(ZMQ_POLLIN) != 0 {
                var count: UInt64 = 0
                _ = read(fd, &count, 8)
                return .wakeup
            }
        }
    }
}
