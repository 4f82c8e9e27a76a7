import Comm
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The cluster's network over ZeroMQ: one context for the process's ring links (inproc links
/// between the devices of a worker need a shared one) and the coordinator's ROUTER, a DEALER with
/// a context of its own for a worker (`ControlDealer`), PUSH/PULL ring links (`ZMQTransport`).
/// With `Security`, the control plane and the ring's tcp links are CURVE-authenticated through a
/// ZAP handler in the context (`ZMQAuthenticator`); failed handshakes on the control socket and the
/// tcp ring link are logged (`ZMQHandshakeWatcher`). See docs/protocol.md and docs/security.md.
public final class ZMQNetwork: ClusterNetwork {
    /// This process's keys and whom it trusts.
    public struct Security: Sendable {
        /// This process's key pair (`security.secret_key_file`).
        public var keys: ZMQCurveKeyPair
        /// A worker: the coordinator's public key, pinned.
        public var coordinatorKey: String?
        /// A coordinator: the workers' public keys it admits.
        public var allowedWorkers: Set<String> = []
        /// CURVE on the ring's tcp links (false: admitted by the predecessor's address, in the clear).
        public var encryptDataPlane = true

        public init(keys: ZMQCurveKeyPair) { self.keys = keys }
    }

    /// The ZAP domains of the two planes.
    public static let controlDomain = "zerotrain-control", ringDomain = "zerotrain-ring"
    /// Largest control message part accepted (a 1 MiB token chunk is ≈ 1.4 MB of JSON), bytes.
    public static let maxControlMessageBytes: Int64 = 16 << 20
    /// Largest ring message part accepted: the cluster's ring segments are 1 MiB (ProcessGroup.Options.segmentBytes).
    public static let maxRingMessageBytes: Int64 = 2 << 20

    public let context: ZMQContext
    public let security: Security?
    /// The ZAP handler of `context` (with security only).
    public let authenticator: ZMQAuthenticator?
    /// Logs failed handshakes on the control socket and the tcp ring link, with or without security.
    public let handshakes: ZMQHandshakeWatcher
    private let log: @Sendable (String) -> Void

    public init(ioThreads: Int = 1, security: Security? = nil,
                log: @escaping @Sendable (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }) throws {
        context = try ZMQContext(ioThreads: ioThreads)
        self.security = security
        self.log = log
        if let security {
            guard ZMQContext.has("curve") else {
                throw CommError(.invalidArgument, "this libzmq is built without CURVE; security: needs it (Debian's libzmq5 has it)")
            }
            let zap = try ZMQAuthenticator(context: context, log: log)
            zap.setPolicy(.keys(security.allowedWorkers), domain: Self.controlDomain)
            zap.setPolicy(.pending, domain: Self.ringDomain)
            authenticator = zap
        } else {
            authenticator = nil
        }
        handshakes = try ZMQHandshakeWatcher(context: context, log: log)
    }

    public func listen(_ endpoint: String) throws -> any ControlServer {
        try ControlRouter(context: context, bind: endpoint, security: security, authenticator: authenticator, handshakes: handshakes)
    }

    public func connect(coordinator endpoint: String) throws -> any ControlClient {
        try ControlDealer(connect: endpoint, security: security)
    }

    public var encryptsRing: Bool { security?.encryptDataPlane ?? false }

    /// Device 0 binds `tcp://ADVERTISE:*` (its predecessor is on another worker); the others bind
    /// `inproc://zerotrain-PID-D` in this process's context (their predecessor is the previous device).
    public func bindRingLink(device: Int, devices: Int, advertiseHost: String) throws -> any RingLink {
        let endpoint = device == 0 ? "tcp://\(advertiseHost):*" : "inproc://zerotrain-\(getpid())-\(device)"
        var options = ZMQTransport.Options()
        if device == 0 {
            options.maxMessageBytes = Self.maxRingMessageBytes
            options.handshakes = handshakes
            if let security {
                options.zapDomain = Self.ringDomain
                if security.encryptDataPlane { options.curve = .init(own: security.keys) }
            }
        }
        return try ZMQTransport(context: context, rank: device, worldSize: max(2, devices), bind: endpoint, options: options)
    }

    /// Ring links from other processes: admitted by key (CURVE) or by the predecessor's address.
    public func admitRingPredecessors(_ peers: [RingPeer]?) {
        guard let security, let authenticator else { return }
        guard let peers else { return authenticator.setPolicy(.pending, domain: Self.ringDomain) }
        if security.encryptDataPlane {
            authenticator.setPolicy(.keys(Set(peers.compactMap(\.publicKey))), domain: Self.ringDomain)
        } else {
            authenticator.setPolicy(.addresses(Set(peers.flatMap { Self.addresses(ofEndpoint: $0.endpoint) })), domain: Self.ringDomain)
        }
    }

    /// The numeric IP addresses of a `tcp://HOST:PORT` endpoint's host (what a ZAP request names).
    static func addresses(ofEndpoint endpoint: String) -> [String] {
        guard endpoint.hasPrefix("tcp://") else { return [] }
        var host = String(endpoint.dropFirst(6))
        if let colon = host.lastIndex(of: ":") { host = String(host[..<colon]) }
        host = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0 else { return [host] }
        defer { freeaddrinfo(list) }
        var out: [String] = []
        var p = list
        while let a = p {
            var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(a.pointee.ai_addr, a.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0 {
                out.append(String(cString: buffer))
            }
            p = a.pointee.ai_next
        }
        return Array(Set(out))
    }
}

extension ZMQTransport: RingLink {}
