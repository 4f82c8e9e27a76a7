import Common
import CZeroMQ
import Comm
import Foundation

/// The ZeroMQ ring `Transport`: one PULL socket bound at this rank's data endpoint (frames from
/// the predecessor) and one PUSH socket connected to the successor's endpoint.
///
/// Frames are two-part messages `[64-byte header][payload]`; large payloads are sent zero-copy and
/// received into libzmq's buffer, which `receive` hands to the reducer without copying. Socket
/// monitors turn a dropped connection into `.peerLost` within `peerLossGrace`, and ZMTP heartbeats
/// turn a silent (stopped, partitioned) peer into a dropped connection.
///
/// Create, connect, use and close it on one thread (libzmq sockets are not thread-safe). Endpoints:
/// `tcp://host:port` (port `*` picks a free one, see `boundEndpoint`), `ipc:///path`,
/// `inproc://name` (all ranks must then share one `ZMQContext`).
public final class ZMQTransport: Transport {
    public struct Options: Sendable {
        /// High-water mark in messages per link, 0 = unlimited. The ring schedule itself bounds what
        /// is in flight (about one chunk per link), and a bounded HWM could deadlock a ring whose
        /// ranks all send before they receive.
        public var highWaterMark: Int32 = 0
        /// Kernel SNDBUF/RCVBUF in bytes, -1 = OS default.
        public var kernelBufferBytes: Int32 = -1
        /// TCP keepalive probes (idle 10 s, every 2 s, 3 probes): catches dead hosts.
        public var tcpKeepAlive: Bool = true
        /// ZMTP heartbeat interval and timeout in ms (0 = off): catches silent peers.
        public var heartbeatIntervalMs: Int32 = 1000
        public var heartbeatTimeoutMs: Int32 = 3000
        /// Payloads of at least this many bytes are sent zero-copy; smaller ones are copied.
        public var zeroCopyThreshold: Int = 32 * 1024
        /// How long a dropped predecessor connection may stay down, with nothing left to read,
        /// before receives fail with `.peerLost` (frames sent just before a clean close still arrive).
        public var peerLossGrace: Duration = .milliseconds(100)
        /// CURVE encryption of both links (costs ~10x throughput on loopback; see docs/security.md).
        public var curve: Curve?
        /// With a ZAP domain set, the context's ZAP handler (`ZMQAuthenticator`) decides who may
        /// connect to the bound socket (by CURVE key, or by address without CURVE).
        public var zapDomain: String?
        /// The largest message part the bound socket accepts (a header or one payload segment), in
        /// bytes; a predecessor that sends more is disconnected before anything is allocated. -1 = no limit.
        public var maxMessageBytes: Int64 = -1
        /// Logs the bound socket's failed handshakes (garbage, a peer without CURVE …) with the
        /// peer's address, and reads its connection events on its own thread; nil = the
        /// transport reads them itself and nothing is logged.
        public var handshakes: ZMQHandshakeWatcher?

        public struct Curve: Sendable {
            /// This rank's key pair: it is the CURVE server of its bound (receiving) socket.
            public var own: ZMQCurveKeyPair
            /// The successor's public key (this rank is a client of the successor's socket), when
            /// known at creation; `connect(successor:publicKey:)` may give it later.
            public var successorPublicKey: String?

            public init(own: ZMQCurveKeyPair, successorPublicKey: String? = nil) {
                self.own = own
                self.successorPublicKey = successorPublicKey
            }
        }

        public init() {}
    }

    public let rank: Int
    public let worldSize: Int
    public let options: Options
    /// The endpoint bound (with the real port when `*` was asked for): give it to the predecessor.
    public let boundEndpoint: String

    private let context: ZMQContext
    private var pull: ZMQSocket?
    private var push: ZMQSocket?
    private var pullMonitor: ZMQMonitor?
    private var pushMonitor: ZMQMonitor?
    private let headerIn = ZMQMessage(), payloadIn = ZMQMessage(), extraIn = ZMQMessage()
    private let headerOut = ZMQMessage(), payloadOut = ZMQMessage()

    private var predecessor: Int { (rank - 1 + worldSize) % worldSize }
    private var successor: Int { (rank + 1) % worldSize }

    /// Binds this rank's data endpoint. Call `connect(successor:)` next.
    public init(context: ZMQContext, rank: Int, worldSize: Int, bind endpoint: String,
                options: Options = Options()) throws {
        guard worldSize >= 1, (0..<worldSize).contains(rank) else {
            throw CommError(.invalidArgument, "rank \(rank) is not in 0..<\(worldSize)")
        }
        try Self.checkScheme(endpoint)
        self.context = context
        self.rank = rank
        self.worldSize = worldSize
        self.options = options
        var socket: ZMQSocket?
        do {
            let pull = try ZMQSocket(context: context, kind: .pull)
            socket = pull
            try Self.configure(pull, options, endpoint: endpoint)
            if let curve = options.curve { try pull.setCurveServer(secretKey: curve.own.secretKey) }
            if let domain = options.zapDomain { try pull.setZAPDomain(domain) }
            if options.maxMessageBytes >= 0 { try pull.setMaximumMessageSize(options.maxMessageBytes) }
            pullMonitor = try options.handshakes.map { try ZMQMonitor(watching: pull, through: $0, label: "ring") }
                ?? ZMQMonitor(watching: pull, context: context)
            try pull.bind(endpoint)
            boundEndpoint = try pull.lastEndpoint()
            self.pull = pull
        } catch {
            pullMonitor?.close(target: socket)
            socket?.close()
            throw ZMQError.commError(error, "rank \(rank) could not bind its data endpoint \(endpoint)")
        }
    }

    /// Connects to the successor's bound endpoint. Sends wait (up to their deadline) until the
    /// connection is up.
    public func connect(successor endpoint: String) throws {
        try connect(successor: endpoint, publicKey: options.curve?.successorPublicKey)
    }

    /// As `connect(successor:)`, pinning the successor's CURVE key `publicKey` (needed when the
    /// transport encrypts, `options.curve`; ignored otherwise).
    public func connect(successor endpoint: String, publicKey: String?) throws {
        try Self.checkScheme(endpoint)
        do {
            let push = try ZMQSocket(context: context, kind: .push)
            try Self.configure(push, options, endpoint: endpoint)
            try push.setOption(ZMQ_IMMEDIATE, 1, name: "ZMQ_IMMEDIATE")
            if let curve = options.curve {
                guard let serverKey = publicKey else {
                    throw CommError(.invalidArgument, "rank \(rank) encrypts its ring link but was given no public key for rank \(successor)")
                }
                try push.setCurveClient(serverKey: serverKey, publicKey: curve.own.publicKey, secretKey: curve.own.secretKey)
            }
            pushMonitor = try ZMQMonitor(watching: push, context: context)
            self.push = push
            try push.connect(endpoint)
        } catch {
            throw ZMQError.commError(error, "rank \(rank) could not connect to rank \(successor) at \(endpoint)", peer: successor)
        }
    }

    private static func checkScheme(_ endpoint: String) throws {
        guard ["tcp://", "ipc://", "inproc://"].contains(where: endpoint.hasPrefix) else {
            throw CommError(.invalidArgument, "endpoint \(endpoint) must start with tcp://, ipc:// or inproc://")
        }
    }

    private static func configure(_ socket: ZMQSocket, _ options: Options, endpoint: String) throws {
        try socket.setHighWaterMarks(send: options.highWaterMark, receive: options.highWaterMark)
        if options.kernelBufferBytes > 0 {
            try socket.setKernelBuffers(send: options.kernelBufferBytes, receive: options.kernelBufferBytes)
        }
        if endpoint.hasPrefix("tcp://") {
            if options.tcpKeepAlive { try socket.setTCPKeepAlive(idleSeconds: 10, intervalSeconds: 2, count: 3) }
        }
        if options.heartbeatIntervalMs > 0, !endpoint.hasPrefix("inproc://") {
            try socket.setHeartbeat(intervalMs: options.heartbeatIntervalMs, timeoutMs: options.heartbeatTimeoutMs)
        }
    }

    deinit { close() }

    /// Closes the send link (LINGER=0): libzmq drops the queued frames and runs their releases.
    /// Later sends fail with `.closed`; form a new transport to continue.
    public func discardPendingSends() {
        pushMonitor?.close(target: push)
        push?.close()
        push = nil
        pushMonitor = nil
    }

    public func close() {
        pushMonitor?.close(target: push)
        pullMonitor?.close(target: pull)
        push?.close()
        pull?.close()
        push = nil
        pull = nil
        pushMonitor = nil
        pullMonitor = nil
        headerOut.clear()
        payloadOut.clear()
    }

    // MARK: Sending

    public func send(header: FrameHeader, payload: UnsafeRawBufferPointer, release: SendRelease,
                     deadline: ContinuousClock.Instant) throws {
        do {
            if payload.count >= options.zeroCopyThreshold {
                try payloadOut.reset(borrowing: payload, release: { release() })
            } else {
                defer { release() }
                try payloadOut.reset(byteCount: payload.count)
                if payload.count > 0 { payloadOut.mutableBytes.copyMemory(from: payload) }
            }
            try headerOut.reset(byteCount: FrameHeader.size)
            header.encode(into: headerOut.mutableBytes)
        } catch {
            payloadOut.clear()
            throw ZMQError.commError(error, "rank \(rank) could not build a frame for rank \(successor)", peer: successor)
        }
        try sendFrame(deadline: deadline)
    }

    public func send(payloadByteCount: Int, deadline: ContinuousClock.Instant,
                     fill: (UnsafeMutableRawBufferPointer) -> FrameHeader) throws {
        do {
            try payloadOut.reset(byteCount: payloadByteCount)
            let header = fill(payloadOut.mutableBytes)
            try headerOut.reset(byteCount: FrameHeader.size)
            header.encode(into: headerOut.mutableBytes)
        } catch {
            payloadOut.clear()
            throw ZMQError.commError(error, "rank \(rank) could not build a frame for rank \(successor)", peer: successor)
        }
        try sendFrame(deadline: deadline)
    }

    public func trySend(header: FrameHeader, payload: [UInt8]) {
        try? send(payloadByteCount: payload.count, deadline: .now + .milliseconds(50)) { out in
            payload.withUnsafeBytes { if $0.count > 0 { out.copyMemory(from: $0) } }
            return header
        }
    }

    /// Sends `headerOut` + `payloadOut` as one two-part message, waiting for the link up to `deadline`.
    private func sendFrame(deadline: ContinuousClock.Instant) throws {
        defer {
            headerOut.clear()
            payloadOut.clear()
        }
        guard let push, let pushMonitor else {
            throw CommError(.closed, "rank \(rank) has no connection to its successor (closed or connect(successor:) not called)",
                            peer: successor)
        }
        do {
            for (part, more) in [(headerOut, true), (payloadOut, false)] {
                while try !push.send(part, more: more) {
                    try pushMonitor.drain()
                    if pushMonitor.lost(grace: options.peerLossGrace) {
                        throw CommError(.peerLost, "the connection to rank \(successor) dropped (process gone?)", peer: successor)
                    }
                    let remaining = ContinuousClock.now.duration(to: deadline)
                    guard remaining > .zero else {
                        throw CommError(.timeout, (pushMonitor.everConnected
                                        ? "rank \(successor) stopped taking frames before the deadline"
                                        : "could not connect to rank \(successor) before the deadline")
                                        + " (\(pushMonitor.summary))", peer: successor)
                    }
                    try pushMonitor.poll((push, Int16(ZMQ_POLLOUT)), timeoutMs: Self.pollSlice(remaining))
                }
            }
        } catch let error as ZMQError {
            throw error.commError("rank \(rank) could not send to rank \(successor)", peer: successor)
        }
    }

    // MARK: Receiving

    public func receive<R>(deadline: ContinuousClock.Instant,
                           _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> R) throws -> R {
        guard let pull, let pullMonitor else {
            throw CommError(.closed, "rank \(rank)'s transport is closed", peer: predecessor)
        }
        do {
            while true {
                if try pull.receive(headerIn) {
                    defer {
                        headerIn.clear()
                        payloadIn.clear()
                    }
                    var parts = 1
                    if pull.hasMoreParts {
                        try pull.receive(payloadIn, dontWait: false)
                        parts += 1
                    }
                    while pull.hasMoreParts {
                        try pull.receive(extraIn, dontWait: false)
                        extraIn.clear()
                        parts += 1
                    }
                    guard parts == 2 else {
                        throw CommError(.malformedFrame, "a message of \(parts) parts arrived; frames have 2 (header, payload)",
                                        peer: predecessor)
                    }
                    return try body(headerIn.bytes, payloadIn.bytes)
                }
                try pullMonitor.drain()
                if pullMonitor.lost(grace: options.peerLossGrace) {
                    throw CommError(.peerLost, "the connection from rank \(predecessor) dropped (process gone?)", peer: predecessor)
                }
                let remaining = ContinuousClock.now.duration(to: deadline)
                guard remaining > .zero else {
                    throw CommError(.timeout, "nothing from rank \(predecessor) before the deadline (\(pullMonitor.summary))",
                                    peer: predecessor)
                }
                try pullMonitor.poll((pull, Int16(ZMQ_POLLIN)), timeoutMs: Self.pollSlice(remaining))
            }
        } catch let error as ZMQError {
            throw error.commError("rank \(rank) could not receive from rank \(predecessor)", peer: predecessor)
        }
    }

    /// Poll at most 20 ms at a time so monitor grace periods and deadlines are checked promptly.
    private static func pollSlice(_ remaining: Duration) -> Int {
        max(1, min(Int(remaining.wholeMilliseconds) + 1, 20))
    }
}
