import CZeroMQ
import Foundation

/// The coordinator's end of the control plane: a ROUTER socket (ROUTER_MANDATORY, so a send to a
/// peer that is gone fails instead of vanishing). Messages are one payload frame after the peer's
/// identity. Use from one thread.
public final class ControlRouter {
    private let socket: ZMQSocket
    private let identity = ZMQMessage(), payload = ZMQMessage()
    public let endpoint: String

    public init(context: ZMQContext, bind endpoint: String) throws {
        socket = try ZMQSocket(context: context, kind: .router)
        try socket.setOption(ZMQ_ROUTER_MANDATORY, 1, name: "ZMQ_ROUTER_MANDATORY")
        try socket.bind(endpoint)
        self.endpoint = try socket.lastEndpoint()
    }

    /// Waits up to `timeoutMs` for one message; returns the sender's identity and the payload.
    public func receive(timeoutMs: Int) throws -> (peer: Data, payload: Data)? {
        let ready = try ZMQSocket.poll([(socket, Int16(ZMQ_POLLIN))], timeoutMs: timeoutMs)
        guard ready[0] & Int16(ZMQ_POLLIN) != 0, try socket.receive(identity) else { return nil }
        let peer = Data(identity.bytes)
        guard socket.hasMoreParts, try socket.receive(payload, dontWait: false) else { return nil }
        var data = Data(payload.bytes)
        while socket.hasMoreParts {   // tolerate stray extra frames
            try socket.receive(payload, dontWait: false)
            data = Data(payload.bytes)
        }
        return (peer, data)
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

    public func close() { socket.close() }
}

/// A worker's end of the control plane: a DEALER connected to the coordinator with IMMEDIATE set,
/// so nothing is queued before the connection is up (sends return false instead).
public final class ControlDealer {
    private let socket: ZMQSocket
    private let payload = ZMQMessage()

    public init(context: ZMQContext, connect endpoint: String) throws {
        socket = try ZMQSocket(context: context, kind: .dealer)
        try socket.setOption(ZMQ_IMMEDIATE, 1, name: "ZMQ_IMMEDIATE")
        try socket.connect(endpoint)
    }

    /// False when the coordinator is not connected yet or the queue is full.
    @discardableResult
    public func send(_ data: Data) throws -> Bool {
        try payload.reset(byteCount: data.count)
        data.withUnsafeBytes { if data.count > 0 { payload.mutableBytes.copyMemory(from: $0) } }
        return try socket.send(payload)
    }

    /// Waits up to `timeoutMs` for one message.
    public func receive(timeoutMs: Int) throws -> Data? {
        let ready = try ZMQSocket.poll([(socket, Int16(ZMQ_POLLIN))], timeoutMs: timeoutMs)
        guard ready[0] & Int16(ZMQ_POLLIN) != 0, try socket.receive(payload) else { return nil }
        let data = Data(payload.bytes)
        while socket.hasMoreParts { try socket.receive(payload, dontWait: false) }
        return data
    }

    public func close() { socket.close() }
}
