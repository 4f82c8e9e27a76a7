import CZeroMQ

/// A libzmq socket. Not thread-safe: create and use it on one thread. Closed with LINGER=0 (pending
/// outgoing messages are dropped, so closing never blocks) by `close()` or deinit.
public final class ZMQSocket {
    public enum Kind: Sendable {
        case push, pull, pair, dealer, router

        var raw: Int32 {
            switch self {
            case .push: ZMQ_PUSH
            case .pull: ZMQ_PULL
            case .pair: ZMQ_PAIR
            case .dealer: ZMQ_DEALER
            case .router: ZMQ_ROUTER
            }
        }
    }

    public let context: ZMQContext
    public let kind: Kind
    private(set) var handle: UnsafeMutableRawPointer?

    public init(context: ZMQContext, kind: Kind) throws {
        guard let h = zmq_socket(context.handle, kind.raw) else { throw ZMQError.last("zmq_socket") }
        self.context = context
        self.kind = kind
        handle = h
        try setOption(ZMQ_LINGER, 0, name: "ZMQ_LINGER")
    }

    deinit { close() }

    /// Closes now, dropping unsent messages (their zero-copy releases still run).
    public func close() { close(lingerMs: 0) }

    /// Closes, giving unsent messages up to `lingerMs` to leave (the context's termination waits
    /// for them that long at most).
    public func close(lingerMs: Int32) {
        guard let h = handle else { return }
        var linger = lingerMs
        zmq_setsockopt(h, ZMQ_LINGER, &linger, MemoryLayout<Int32>.size)
        zmq_close(h)
        handle = nil
    }

    private func live(_ function: String) throws -> UnsafeMutableRawPointer {
        guard let handle else { throw ZMQError(errno: ENOTSOCK, function: function, context: "socket already closed") }
        return handle
    }

    // MARK: Options

    public func setOption(_ option: Int32, _ value: Int32, name: String) throws {
        var v = value
        if zmq_setsockopt(try live("zmq_setsockopt"), option, &v, MemoryLayout<Int32>.size) != 0 {
            throw ZMQError.last("zmq_setsockopt", "\(name)=\(value)")
        }
    }

    public func setOption(_ option: Int32, int64 value: Int64, name: String) throws {
        var v = value
        if zmq_setsockopt(try live("zmq_setsockopt"), option, &v, MemoryLayout<Int64>.size) != 0 {
            throw ZMQError.last("zmq_setsockopt", "\(name)=\(value)")
        }
    }

    /// The largest message part this socket accepts, in bytes: a peer that sends a bigger one is
    /// disconnected by libzmq before the part is allocated (-1 = no limit).
    public func setMaximumMessageSize(_ bytes: Int64) throws {
        try setOption(ZMQ_MAXMSGSIZE, int64: bytes, name: "ZMQ_MAXMSGSIZE")
    }

    /// The ZAP domain: with one set, the context's ZAP handler (`ZMQAuthenticator`) decides about
    /// every connection to this socket, also without CURVE (by address).
    public func setZAPDomain(_ domain: String) throws {
        try setOption(ZMQ_ZAP_DOMAIN, bytes: Array(domain.utf8), name: "ZMQ_ZAP_DOMAIN")
    }

    public func setOption(_ option: Int32, bytes: [UInt8], name: String) throws {
        let h = try live("zmq_setsockopt")
        let rc = bytes.withUnsafeBytes { zmq_setsockopt(h, option, $0.baseAddress, $0.count) }
        if rc != 0 { throw ZMQError.last("zmq_setsockopt", name) }
    }

    public func getInt32Option(_ option: Int32, name: String) throws -> Int32 {
        var v: Int32 = 0
        var size = MemoryLayout<Int32>.size
        if zmq_getsockopt(try live("zmq_getsockopt"), option, &v, &size) != 0 {
            throw ZMQError.last("zmq_getsockopt", name)
        }
        return v
    }

    /// High-water marks in messages (0 = unlimited).
    public func setHighWaterMarks(send: Int32, receive: Int32) throws {
        try setOption(ZMQ_SNDHWM, send, name: "ZMQ_SNDHWM")
        try setOption(ZMQ_RCVHWM, receive, name: "ZMQ_RCVHWM")
    }

    /// Kernel socket buffers in bytes (-1 = OS default).
    public func setKernelBuffers(send: Int32, receive: Int32) throws {
        try setOption(ZMQ_SNDBUF, send, name: "ZMQ_SNDBUF")
        try setOption(ZMQ_RCVBUF, receive, name: "ZMQ_RCVBUF")
    }

    /// TCP keepalive: probes after `idleSeconds` of silence, every `intervalSeconds`, `count` times.
    public func setTCPKeepAlive(idleSeconds: Int32, intervalSeconds: Int32, count: Int32) throws {
        try setOption(ZMQ_TCP_KEEPALIVE, 1, name: "ZMQ_TCP_KEEPALIVE")
        try setOption(ZMQ_TCP_KEEPALIVE_IDLE, idleSeconds, name: "ZMQ_TCP_KEEPALIVE_IDLE")
        try setOption(ZMQ_TCP_KEEPALIVE_INTVL, intervalSeconds, name: "ZMQ_TCP_KEEPALIVE_INTVL")
        try setOption(ZMQ_TCP_KEEPALIVE_CNT, count, name: "ZMQ_TCP_KEEPALIVE_CNT")
    }

    /// ZMTP heartbeats: PING every `intervalMs`; the connection is dropped after `timeoutMs` of silence.
    public func setHeartbeat(intervalMs: Int32, timeoutMs: Int32) throws {
        try setOption(ZMQ_HEARTBEAT_IVL, intervalMs, name: "ZMQ_HEARTBEAT_IVL")
        try setOption(ZMQ_HEARTBEAT_TIMEOUT, timeoutMs, name: "ZMQ_HEARTBEAT_TIMEOUT")
        try setOption(ZMQ_HEARTBEAT_TTL, max(timeoutMs, 100), name: "ZMQ_HEARTBEAT_TTL")
    }

    /// Makes this socket a CURVE server (the bind side of a link) with its Z85 secret key. Without a
    /// ZAP handler in the context (`ZMQAuthenticator`) and a ZAP domain, it admits any client key.
    public func setCurveServer(secretKey: String) throws {
        try setOption(ZMQ_CURVE_SERVER, 1, name: "ZMQ_CURVE_SERVER")
        try setOption(ZMQ_CURVE_SECRETKEY, bytes: Array(secretKey.utf8) + [0], name: "ZMQ_CURVE_SECRETKEY")
    }

    /// Makes this socket a CURVE client of the server with Z85 public key `serverKey`.
    public func setCurveClient(serverKey: String, publicKey: String, secretKey: String) throws {
        try setOption(ZMQ_CURVE_SERVERKEY, bytes: Array(serverKey.utf8) + [0], name: "ZMQ_CURVE_SERVERKEY")
        try setOption(ZMQ_CURVE_PUBLICKEY, bytes: Array(publicKey.utf8) + [0], name: "ZMQ_CURVE_PUBLICKEY")
        try setOption(ZMQ_CURVE_SECRETKEY, bytes: Array(secretKey.utf8) + [0], name: "ZMQ_CURVE_SECRETKEY")
    }

    // MARK: Endpoints

    public func bind(_ endpoint: String) throws {
        if zmq_bind(try live("zmq_bind"), endpoint) != 0 { throw ZMQError.last("zmq_bind", endpoint) }
    }

    public func connect(_ endpoint: String) throws {
        if zmq_connect(try live("zmq_connect"), endpoint) != 0 { throw ZMQError.last("zmq_connect", endpoint) }
    }

    /// The endpoint actually bound last (resolves `tcp://host:*` to a port).
    public func lastEndpoint() throws -> String {
        var buffer = [CChar](repeating: 0, count: 512)
        var size = buffer.count
        let h = try live("zmq_getsockopt")
        if zmq_getsockopt(h, ZMQ_LAST_ENDPOINT, &buffer, &size) != 0 {
            throw ZMQError.last("zmq_getsockopt", "ZMQ_LAST_ENDPOINT")
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Publishes this socket's connection events (`ZMQ_EVENT_*` mask) on a PAIR socket bound at
    /// `endpoint` (inproc://...), which a `ZMQMonitor` reads.
    public func monitor(_ endpoint: String, events: Int32) throws {
        if zmq_socket_monitor(try live("zmq_socket_monitor"), endpoint, events) != 0 {
            throw ZMQError.last("zmq_socket_monitor", endpoint)
        }
    }

    /// Stops publishing events (closes libzmq's side of the monitor). Must happen before the
    /// reader of the monitor closes: libzmq sends events with a *blocking* send, so events for a
    /// monitor nobody reads any more would hang libzmq's I/O thread forever.
    public func stopMonitor() {
        guard let handle else { return }
        zmq_socket_monitor(handle, nil, 0)
    }

    // MARK: Messages

    /// Sends one part. Returns false if it would block (`dontWait`), retries EINTR. On success libzmq
    /// took the content and `message` is empty; on failure it is unchanged.
    @discardableResult
    public func send(_ message: ZMQMessage, more: Bool = false, dontWait: Bool = true) throws -> Bool {
        let h = try live("zmq_msg_send")
        let flags = (more ? ZMQ_SNDMORE : 0) | (dontWait ? ZMQ_DONTWAIT : 0)
        while true {
            if zmq_msg_send(message.pointer, h, flags) >= 0 { return true }
            let e = ZMQError.last("zmq_msg_send")
            if e.interrupted { continue }
            if e.wouldBlock { return false }
            throw e
        }
    }

    /// Receives one part into `message`. Returns false if nothing is ready (`dontWait`), retries EINTR.
    @discardableResult
    public func receive(_ message: ZMQMessage, dontWait: Bool = true) throws -> Bool {
        let h = try live("zmq_msg_recv")
        while true {
            if zmq_msg_recv(message.pointer, h, dontWait ? ZMQ_DONTWAIT : 0) >= 0 { return true }
            let e = ZMQError.last("zmq_msg_recv")
            if e.interrupted { continue }
            if e.wouldBlock { return false }
            throw e
        }
    }

    /// Whether the part just received is followed by more parts of the same message.
    public var hasMoreParts: Bool {
        guard let handle else { return false }
        var v: Int32 = 0
        var size = MemoryLayout<Int32>.size
        return zmq_getsockopt(handle, ZMQ_RCVMORE, &v, &size) == 0 && v != 0
    }

    /// Waits up to `timeoutMs` (-1 = forever) for any of `items` to become ready; returns the
    /// `revents` of each (ZMQ_POLLIN / ZMQ_POLLOUT bits). EINTR counts as "nothing ready".
    public static func poll(_ items: [(socket: ZMQSocket, events: Int16)], timeoutMs: Int) throws -> [Int16] {
        try poll(items, fileDescriptors: [], timeoutMs: timeoutMs).sockets
    }

    /// As above, with plain file descriptors (an eventfd) in the same poll set, waited on for input.
    public static func poll(_ items: [(socket: ZMQSocket, events: Int16)], fileDescriptors: [Int32],
                            timeoutMs: Int) throws -> (sockets: [Int16], fileDescriptors: [Int16]) {
        var raw = items.map { zmq_pollitem_t(socket: $0.socket.handle, fd: 0, events: $0.events, revents: 0) }
            + fileDescriptors.map { zmq_pollitem_t(socket: nil, fd: $0, events: Int16(ZMQ_POLLIN), revents: 0) }
        let rc = zmq_poll(&raw, Int32(raw.count), timeoutMs)
        if rc < 0 {
            let e = ZMQError.last("zmq_poll")
            if e.interrupted { return ([Int16](repeating: 0, count: items.count), [Int16](repeating: 0, count: fileDescriptors.count)) }
            throw e
        }
        return (raw.prefix(items.count).map(\.revents), raw.dropFirst(items.count).map(\.revents))
    }
}
