import Comm
@testable import CommZMQ
import CZeroMQ
import Foundation
import Synchronization
import Testing
import ZeroTrainTestKit

/// Failed handshakes on bound sockets: the state machine on the event sequences libzmq 4.3
/// produces (checked against it), and a real ring link that a raw TCP client sends garbage to.
@Suite("Failed handshakes", .serialized)
struct HandshakeWatchTests {
    typealias W = HandshakeWatch

    static func feed(_ w: inout W, _ events: [(Int32, UInt32, String?)]) -> [String] {
        events.compactMap { w.event($0.0, value: $0.1, address: $0.2)?.line }
    }

    @Test func eachFailedHandshakeIsReportedOnceWithItsAddress() {
        var w = W()
        // NULL mechanism, random bytes: accepted, failed without detail (ECONNRESET), disconnected.
        let plain = Self.feed(&w, [(ZMQ_EVENT_ACCEPTED, 14, "127.0.0.1:50001"), (ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL, 104, nil),
                                   (ZMQ_EVENT_DISCONNECTED, 14, nil)])
        #expect(plain.count == 1 && plain[0].hasPrefix("127.0.0.1:50001: the handshake failed (a peer without CURVE"), "\(plain)")
        // A socket with a ZAP domain drops a non-ZMTP greeting without a failure event.
        let curve = Self.feed(&w, [(ZMQ_EVENT_ACCEPTED, 15, "127.0.0.1:50002"), (ZMQ_EVENT_DISCONNECTED, 15, nil)])
        #expect(curve == ["127.0.0.1:50002: no ZeroMQ handshake (the peer sent something that is not a ZMTP 3 greeting, or nothing)"])
        // A ZMTP 3 greeting with a garbage mechanism: a protocol error.
        let mechanism = Self.feed(&w, [(ZMQ_EVENT_ACCEPTED, 16, "127.0.0.1:50003"),
                                       (ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL, UInt32(bitPattern: ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH), nil),
                                       (ZMQ_EVENT_DISCONNECTED, 16, nil)])
        #expect(mechanism == ["127.0.0.1:50003: the peer does not speak CURVE (security mechanisms differ)"])
        #expect(w.unconfirmed.isEmpty)
    }

    @Test func goodConnectionsAndZAPRefusalsAreNotReported() {
        var w = W()
        // A peer that completes its handshake and later leaves.
        #expect(Self.feed(&w, [(ZMQ_EVENT_ACCEPTED, 20, "10.0.0.2:4000"), (ZMQ_EVENT_HANDSHAKE_SUCCEEDED, 0, nil),
                               (ZMQ_EVENT_DISCONNECTED, 20, nil)]).isEmpty)
        // A key the ZAP handler refused: it logged the refusal with the key's fingerprint.
        #expect(Self.feed(&w, [(ZMQ_EVENT_ACCEPTED, 21, "10.0.0.3:4000"), (ZMQ_EVENT_HANDSHAKE_FAILED_AUTH, 400, nil),
                               (ZMQ_EVENT_DISCONNECTED, 21, nil)]).isEmpty)
        // Two handshakes under way when one succeeds: the good peer stays up, the other fails with a reason.
        let mixed = Self.feed(&w, [(ZMQ_EVENT_ACCEPTED, 22, "10.0.0.4:4000"), (ZMQ_EVENT_ACCEPTED, 23, "10.0.0.5:4000"),
                                   (ZMQ_EVENT_HANDSHAKE_SUCCEEDED, 0, nil),
                                   (ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL, UInt32(bitPattern: ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC), nil),
                                   (ZMQ_EVENT_DISCONNECTED, 23, nil)])
        #expect(mixed == ["10.0.0.5:4000: the CURVE handshake did not decrypt (the peer pinned another server key, or sent a forged handshake)"])
    }

    @Test func aFloodOfHalfOpenConnectionsIsBounded() {
        var w = W()
        for fd in 0..<UInt32(5000) { _ = w.event(ZMQ_EVENT_ACCEPTED, value: fd, address: "10.0.0.9:\(fd)") }
        #expect(w.unconfirmed.count <= W.capacity)
    }

    final class Lines: Sendable {
        private let lines = Mutex<[String]>([])
        func add(_ s: String) { lines.withLock { $0.append(s) } }
        var all: [String] { lines.withLock { $0 } }
    }

    /// A two-rank tcp ring whose rank 0 link is watched: a raw client's garbage is logged once with
    /// the client's address, a flood is rate-limited, and the ring still carries a collective.
    @Test(arguments: [false, true])
    func garbageOnARingLinkIsLoggedAndTheRingStillWorks(curve: Bool) throws {
        let lines = Lines()
        let context = try ZMQContext()
        let zap = curve ? try ZMQAuthenticator(context: context, log: lines.add) : nil
        let watcher = try ZMQHandshakeWatcher(context: context, log: lines.add)
        defer {
            watcher.stop()
            zap?.stop()
        }
        let keys = try (0..<2).map { _ in try ZMQCurveKeyPair.generate() }
        // With a ZAP handler in the context every CURVE socket asks it: both links admit the other rank's key.
        zap?.setPolicy(.keys(Set(keys.map(\.publicKey))), domain: ZMQNetwork.ringDomain)
        let rendezvous = ZMQTransportTests.Rendezvous()
        let garbageClient = Mutex<String?>(nil), firstLines = Mutex<[String]>([])
        let results = try onThreads(2) { rank -> [Double] in
            var options = ZMQTransport.Options()
            if rank == 0 { options.handshakes = watcher }
            if curve {
                options.zapDomain = ZMQNetwork.ringDomain
                options.curve = .init(own: keys[rank])
            }
            let transport = try ZMQTransport(context: context, rank: rank, worldSize: 2, bind: "tcp://127.0.0.1:*", options: options)
            defer { transport.close() }
            rendezvous.publish(rank, transport.boundEndpoint)
            try transport.connect(successor: try rendezvous.lookup((rank + 1) % 2), publicKey: curve ? keys[(rank + 1) % 2].publicKey : nil)
            let group = try ProcessGroup(rank: rank, worldSize: 2, transport: transport, epoch: 1, jobID: 3, options: quietOptions())
            _ = try group.allReduceScalars([1], deadline: .now + .seconds(10))
            try group.barrier(deadline: .now + .seconds(20))   // rank 1 sends the garbage meanwhile
            if rank == 1 {
                let port = Int(rendezvous.endpointPort(0))
                let junk = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 7919) }
                // A client that stalls its handshake: libzmq keeps the connection until the client closes,
                // so its address is read (garbage libzmq resets at once may be logged without one).
                let first = NetworkFuzzer.stalledHandshake(mechanism: curve ? "CURVE" : "NULL")
                guard let client = NetworkFuzzer.garbage(host: "127.0.0.1", port: port, bytes: first) else {
                    throw CommError(.transport, "could not connect to \(port)")
                }
                garbageClient.withLock { $0 = client }
                let deadline = Date().addingTimeInterval(10)
                while Date() < deadline, !lines.all.contains(where: { $0.contains(client) }) { usleep(10_000) }
                usleep(100_000)   // a second line would come now
                firstLines.withLock { $0 = lines.all }
                // A flood: 40 clients in a row, at most 10 lines a second plus a count.
                for _ in 0..<40 { _ = NetworkFuzzer.garbage(host: "127.0.0.1", port: port, bytes: junk, linger: 0.005) }
            }
            try group.barrier(deadline: .now + .seconds(30))
            return try group.allReduceScalars([Double(rank + 1)], deadline: .now + .seconds(10))
        }.map { try $0.get() }
        #expect(results == [[3], [3]])
        let client = try #require(garbageClient.withLock { $0 })
        let matching = firstLines.withLock { $0 }.filter { $0.contains(client) }
        #expect(matching.count == 1 && matching[0].hasPrefix("security: ring: refused a connection from \(client): the handshake failed"),
                "\(lines.all)")
        // Each second of the flood logs at most 10 refusals; the rest are summed up when the next second starts.
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline, watcher.failures < 41 { usleep(10_000) }
        #expect(watcher.failures == 41, "\(lines.all)")
        let refusals = lines.all.filter { $0.hasPrefix("security: ring: refused") }
        #expect(refusals.count <= 31, "\(refusals.count) lines for 41 failed handshakes")
        #expect(!lines.all.contains { $0.contains("zerotrain-ring: refused") }, "no ZAP request was made for garbage: \(lines.all)")
    }
}

extension ZMQTransportTests.Rendezvous {
    /// The port of a published tcp endpoint.
    func endpointPort(_ rank: Int) -> Int {
        guard let e = try? lookup(rank) else { return 0 }
        return Int(e.split(separator: ":").last ?? "") ?? 0
    }
}
