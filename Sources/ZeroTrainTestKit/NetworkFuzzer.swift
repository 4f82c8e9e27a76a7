import Comm
import CommZMQ
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A hostile peer for the security tests: raw TCP garbage (random, truncated and bit-flipped ZMTP
/// handshakes and ring frames, seeded), and well-formed ZeroMQ peers that try to inject frames into
/// a ring link or send mutated control messages with a key of their own.
public struct NetworkFuzzer {
    private var rng: SplitMix

    public init(seed: UInt64) { rng = SplitMix(seed) }

    /// What the fuzzer sent and how the other side reacted.
    public struct Report: Sendable {
        public var connections = 0, frames = 0, bytes = 0
        /// Connections refused outright (the port closed: a daemon gone).
        public var refused = 0
    }

    /// Sends `count` frames to `tcp://host:port`, a few per TCP connection: random bytes, a ZMTP 3
    /// greeting (CURVE, NULL or garbage mechanism) with a truncated or bit-flipped command after it,
    /// a ring frame (64-byte header + payload) with flipped bits, or a frame header that claims
    /// 2^62 bytes. Returns when all are sent.
    public mutating func raw(host: String, port: Int, count: Int) -> Report {
        var report = Report()
        var refusedInARow = 0
        while report.frames < count {
            let fd = Self.connect(host: host, port: port)
            guard fd >= 0 else {
                // The port is closed: the daemon is gone (or the job ended); give up after 50 tries.
                report.refused += 1
                refusedInARow += 1
                if refusedInARow >= 50 { break }
                usleep(1000)
                continue
            }
            refusedInARow = 0
            report.connections += 1
            for _ in 0..<(1 + Int(rng.next() % 3)) where report.frames < count {
                let frame = nextFrame()
                report.frames += 1
                report.bytes += frame.count
                if frame.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) < 0 { break }
            }
            Glibc.close(fd)
        }
        return report
    }

    private mutating func nextFrame() -> [UInt8] {
        switch rng.next() % 5 {
        case 0:
            return (0..<Int(rng.next() % 2048)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        case 1:
            var g = Self.greeting(mechanism: ["CURVE", "NULL", "PLAIN", "XYZZY"][Int(rng.next() % 4)])
            g += Self.command("HELLO", (0..<200).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
            return Array(g.prefix(Int(rng.next() % UInt64(g.count + 1))))
        case 2:
            var g = Self.greeting(mechanism: "CURVE") + Self.command("HELLO", [UInt8](repeating: 0, count: 194))
            flip(&g, times: 1 + Int(rng.next() % 8))
            return g
        case 3:
            var frame = Self.greeting(mechanism: "NULL") + Self.command("READY", Array("\u{0B}Socket-Type\0\0\0\u{04}PUSH".utf8))
            let header = FrameHeader(kind: .data, elementType: .float32, operation: .allReduce, jobID: rng.next(), epoch: 1, sequence: 0,
                                     sourceRank: 0, hop: 0, chunk: 0, segment: 0, payloadLength: 256, payloadCRC: 0)
            frame += [0x01, 64] + header.encoded + [0x00, 0xFF] + (0..<255).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            flip(&frame, times: Int(rng.next() % 4))
            return frame
        default:
            // A long message frame that claims 2^62 bytes: must not make anyone allocate it.
            return Self.greeting(mechanism: "NULL") + [0x02] + [0x40, 0, 0, 0, 0, 0, 0, 0] + [UInt8](repeating: 0xAB, count: 512)
        }
    }

    private mutating func flip(_ bytes: inout [UInt8], times: Int) {
        guard !bytes.isEmpty else { return }
        for _ in 0..<times {
            let i = Int(rng.next() % UInt64(bytes.count))
            bytes[i] ^= UInt8(1) << UInt8(rng.next() % 8)
        }
    }

    /// A ZMTP 3.0 greeting for `mechanism` and the first bytes of a HELLO command: a peer that
    /// starts a handshake and stalls (the server waits for the rest until the peer closes).
    public static func stalledHandshake(mechanism: String) -> [UInt8] {
        greeting(mechanism: mechanism) + Array(command("HELLO", [UInt8](repeating: 0, count: 194)).prefix(24))
    }

    /// ZMTP 3.0 greeting: signature, version 3.0, mechanism (20 bytes), as-server 0, filler.
    static func greeting(mechanism: String) -> [UInt8] {
        var g: [UInt8] = [0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 3, 0]
        g += Array(mechanism.utf8.prefix(20)) + [UInt8](repeating: 0, count: 20 - min(20, mechanism.utf8.count))
        g += [0] + [UInt8](repeating: 0, count: 31)
        return g
    }

    /// A short ZMTP command frame.
    static func command(_ name: String, _ body: [UInt8]) -> [UInt8] {
        let content = [UInt8(name.utf8.count)] + Array(name.utf8) + body
        return [0x04, UInt8(min(255, content.count))] + content.prefix(255)
    }

    /// One raw TCP client that sends `bytes` to `host:port`, waits (at most `linger` seconds) for
    /// the other side to close, and closes. Returns its own address as the server sees it
    /// ("127.0.0.1:PORT"), or nil when it could not connect.
    public static func garbage(host: String, port: Int, bytes: [UInt8], linger: Double = 0.3) -> String? {
        let fd = connect(host: host, port: port)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        var local = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var timeout = timeval(tv_sec: 0, tv_usec: Int(linger * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var sink = [UInt8](repeating: 0, count: 4096)
        let deadline = Date().addingTimeInterval(linger)
        while Date() < deadline, recv(fd, &sink, sink.count, 0) > 0 {}
        return "\(host):\(UInt16(bigEndian: local.sin_port))"
    }

    static func connect(host: String, port: Int) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return -1 }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &address.sin_addr)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 {
            Glibc.close(fd)
            return -1
        }
        return fd
    }

    /// A non-member of the ring tries to push `frames` ring frames into `endpoint` for `seconds`,
    /// as a CURVE client with its own key that pinned the link's public key `serverKey` (public
    /// knowledge), or in the clear (`serverKey` nil). Returns whether libzmq ever completed a
    /// connection (a handshake the link accepted).
    public static func injectRing(endpoint: String, serverKey: String?, jobID: UInt64, seconds: Double) throws -> Bool {
        let context = try ZMQContext()
        let push = try ZMQSocket(context: context, kind: .push)
        defer { push.close() }
        try push.setOption(ZMQ_IMMEDIATE_OPTION, 1, name: "ZMQ_IMMEDIATE")
        if let serverKey {
            let own = try ZMQCurveKeyPair.generate()
            try push.setCurveClient(serverKey: serverKey, publicKey: own.publicKey, secretKey: own.secretKey)
        }
        try push.connect(endpoint)
        let header = FrameHeader(kind: .data, elementType: .float32, operation: .allReduce, jobID: jobID, epoch: 1, sequence: 0,
                                 sourceRank: 0, hop: 0, chunk: 0, segment: 0, payloadLength: 4, payloadCRC: 0)
        let end = Date().addingTimeInterval(seconds)
        var delivered = false
        let h = ZMQMessage(), p = ZMQMessage()
        while Date() < end {
            try h.reset(byteCount: FrameHeader.size)
            header.encode(into: h.mutableBytes)
            try p.reset(byteCount: 4)
            // With IMMEDIATE, a send succeeds only over a completed (authenticated) connection.
            if try push.send(h, more: true) {
                delivered = true
                try push.send(p, dontWait: false)
            }
            usleep(20_000)
        }
        // The socket closes (defer) before its context terminates (when the last reference goes).
        return delivered
    }
}

extension NetworkFuzzer {
    /// `count` mutations of a real control message: truncated, bit-flipped, random bytes, wrong
    /// types, out-of-range numbers and oversized fields.
    public mutating func mutations(of message: Data, count: Int) -> [Data] {
        let base = Array(message)
        return (0..<count).map { i in
            switch i % 6 {
            case 0: return Data(base.prefix(Int(rng.next() % UInt64(base.count + 1))))
            case 1:
                var b = base
                flip(&b, times: 1 + Int(rng.next() % 6))
                return Data(b)
            case 2: return Data((0..<Int(rng.next() % 512)).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
            case 3: return Data(#"{"kind":"register","devices":"many","endpoints":7}"#.utf8)
            case 4: return Data(#"{"kind":"register","protocolVersion":2,"devices":1000000000,"endpoints":[]}"#.utf8)
            default:
                let huge = String(repeating: "A", count: 100_000)
                return Data(#"{"kind":"failed","reason":"\#(huge)","epoch":1}"#.utf8)
            }
        }
    }

    /// Sends `messages` to a coordinator's control endpoint as a CURVE client with `keys` (a key
    /// the coordinator admits), pinning `serverKey`; nil keys: in the clear. Returns how many went out.
    public static func sendControl(endpoint: String, keys: ZMQCurveKeyPair?, serverKey: String?, messages: [Data],
                                   within seconds: Double = 10) throws -> Int {
        var security: ZMQNetwork.Security?
        if let keys {
            security = ZMQNetwork.Security(keys: keys)
            security?.coordinatorKey = serverKey
        }
        let dealer = try ControlDealer(connect: endpoint, security: security)
        defer { dealer.close(linger: .zero) }
        var sent = 0
        let end = Date().addingTimeInterval(seconds)
        while sent < messages.count && Date() < end {
            if try dealer.send(messages[sent]) { sent += 1 } else { usleep(5_000) }
        }
        return sent
    }
}

/// ZMQ_IMMEDIATE (39) without importing the C module into the test kit's users.
let ZMQ_IMMEDIATE_OPTION: Int32 = 39

/// SplitMix64: a small seeded generator (the fuzzer's frames are reproducible from the seed).
struct SplitMix {
    private var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
