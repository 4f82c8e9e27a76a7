import Bench
import Comm
import Foundation
import Testing
import ZeroTrainTestKit

/// Real rank processes (`ZeroTrainTestRank`) on this host, driven over JSON lines,
/// checked against the direct computation; and a rank SIGKILLed in the middle of an all-reduce.
@Suite("Collectives across processes", .serialized)
struct MultiProcessTests {
    /// A ring of worker processes; killed (SIGKILL) when released.
    final class Ring {
        var workers: [RankProcess]
        init(size n: Int) throws {
            let executable = try #require(TestRank.executable(),
                                          "build the ZeroTrainTestRank executable (swift build) or set ZEROTRAIN_TEST_RANK_BIN")
            workers = try (0..<n).map { _ in try RankProcess(executable: executable, arguments: []) }
        }
        deinit { workers.forEach { $0.kill() } }

        /// (Re)forms a group of `members` (indices into `workers`) as ranks 0..<members.count.
        func form(_ members: [Int], epoch: UInt64, scheme: String) throws {
            let n = members.count
            let tag = "\(ProcessInfo.processInfo.processIdentifier)-\(epoch)-\(UInt32.random(in: 0...UInt32.max))"
            var endpoints: [String] = []
            for (rank, w) in members.enumerated() {
                var bind = RankCommand(cmd: "bind")
                bind.rank = rank
                bind.worldSize = n
                bind.epoch = epoch
                bind.jobID = 77
                bind.endpoint = scheme == "tcp" ? "tcp://127.0.0.1:*" : "ipc:///tmp/zerotrain-mp-\(tag)-\(rank)"
                let reply = try workers[w].call(bind, timeout: .seconds(30))
                #expect(reply.ok, "bind: \(reply.error ?? "")")
                endpoints.append(try #require(reply.endpoint))
            }
            for (rank, w) in members.enumerated() {
                var connect = RankCommand(cmd: "connect")
                connect.successor = endpoints[(rank + 1) % n]
                let reply = try workers[w].call(connect, timeout: .seconds(30))
                #expect(reply.ok, "connect: \(reply.error ?? "")")
            }
        }

        func runCommand(kind: CollectiveCheck.Kind, count: Int, seed: UInt64, timeoutMs: Int = 20_000) -> RankCommand {
            var run = RankCommand(cmd: "run")
            run.kind = kind
            run.count = count
            run.seed = seed
            run.timeoutMs = timeoutMs
            run.root = 0
            return run
        }
    }

    @Test(arguments: [(1, "tcp"), (2, "tcp"), (3, "ipc"), (5, "tcp")])
    func everyCollectiveAcrossProcesses(n: Int, scheme: String) throws {
        let ring = try Ring(size: n)
        try ring.form(Array(0..<n), epoch: 1, scheme: scheme)
        let counts = Array(Set([1, n - 1, n, 13, 1_000_003])).sorted()
        var seed: UInt64 = 1
        for kind in [CollectiveCheck.Kind.allReduce, .reduceScatter, .allGather, .broadcast, .scalars, .barrier] {
            for count in counts where !(kind == .scalars && count > 13) && !(kind == .barrier && count > 0) {
                seed += 1
                var command = ring.runCommand(kind: kind, count: count, seed: seed)
                command.root = n - 1
                for w in ring.workers { try w.send(command) }
                for (rank, w) in ring.workers.enumerated() {
                    let reply = try w.reply(timeout: .seconds(60))
                    let expected = CollectiveCheck.expectedDigest(kind, rank: rank, worldSize: n, count: count, seed: seed, root: n - 1)
                    #expect(reply.ok && reply.digest == String(expected, radix: 16),
                            "\(kind) n=\(n) count=\(count) rank=\(rank): \(reply.error ?? "digest mismatch")")
                }
            }
        }
    }

    @Test func killedRankFailsSurvivorsWithinDeadlineThenNewEpochWorks() throws {
        let n = 4, victim = 2, count = 4 * 1_048_576 + 3   // 16 MiB: 16+ segments per rank in flight
        let ring = try Ring(size: n)
        try ring.form(Array(0..<n), epoch: 1, scheme: "tcp")
        // Warm the ring (connections up) so the failure happens mid-collective, not at connect time.
        for w in ring.workers { try w.send(ring.runCommand(kind: .barrier, count: 0, seed: 1)) }
        for w in ring.workers { #expect(try w.reply(timeout: .seconds(30)).ok) }

        var command = ring.runCommand(kind: .allReduce, count: count, seed: 3, timeoutMs: 5_000)
        let start = ContinuousClock.now
        for (rank, w) in ring.workers.enumerated() {
            var c = command
            if rank == victim { c.stallAfterFrames = 6 }
            try w.send(c)
        }
        let stalled = try ring.workers[victim].reply(timeout: .seconds(30))
        #expect(stalled.event == "stalled")
        ring.workers[victim].kill()
        for rank in 0..<n where rank != victim {
            let reply = try ring.workers[rank].reply(timeout: .seconds(10))
            #expect(!reply.ok, "rank \(rank) should fail")
            #expect(reply.peer == victim, "rank \(rank) blamed \(reply.peer.map(String.init) ?? "nobody"): \(reply.error ?? "")")
            #expect(reply.operation == "allReduce")
            #expect(reply.error?.contains("#1") == true)
        }
        #expect(start.duration(to: .now) < .seconds(5.5 + 1))

        // The three survivors form epoch 2 (ranks 0, 1, 2 = old 0, 1, 3) and all-reduce correctly.
        let survivors = (0..<n).filter { $0 != victim }
        try ring.form(survivors, epoch: 2, scheme: "tcp")
        command = ring.runCommand(kind: .allReduce, count: 1_000_003, seed: 4)
        for w in survivors { try ring.workers[w].send(command) }
        let expected = String(CollectiveCheck.expectedDigest(.allReduce, rank: 0, worldSize: survivors.count,
                                                             count: 1_000_003, seed: 4), radix: 16)
        for w in survivors {
            let reply = try ring.workers[w].reply(timeout: .seconds(30))
            #expect(reply.ok && reply.digest == expected, "worker \(w): \(reply.error ?? "digest mismatch")")
        }
    }

    @Test func silentRankMakesSurvivorsFailAtTheirDeadline() throws {
        let n = 3, silent = 1
        let ring = try Ring(size: n)
        try ring.form(Array(0..<n), epoch: 1, scheme: "ipc")
        for w in ring.workers { try w.send(ring.runCommand(kind: .barrier, count: 0, seed: 1)) }
        for w in ring.workers { #expect(try w.reply(timeout: .seconds(30)).ok) }
        // SIGSTOP: the process is alive (its connections stay up) but does nothing.
        #expect(kill(ring.workers[silent].pid, SIGSTOP) == 0)
        let start = ContinuousClock.now
        let command = ring.runCommand(kind: .allReduce, count: 1_000_003, seed: 9, timeoutMs: 1_500)
        for rank in 0..<n where rank != silent { try ring.workers[rank].send(command) }
        for rank in 0..<n where rank != silent {
            let reply = try ring.workers[rank].reply(timeout: .seconds(10))
            #expect(!reply.ok && reply.operation == "allReduce" && reply.sequence == 1)
            // The successor of the silent rank waited for it; the others either waited for their
            // own predecessor or were told (abort) whom to blame.
            if rank == (silent + 1) % n {
                #expect(reply.peer == silent && reply.code == "timeout", "\(reply.error ?? "")")
            } else {
                #expect(reply.peer == silent || reply.peer == (rank - 1 + n) % n, "\(reply.error ?? "")")
            }
        }
        // Deadline, plus reclaiming the frames queued for the stopped rank (≤ 0.2 s + close), plus slack for a loaded CI host.
        #expect(start.duration(to: .now) < .seconds(1.5 + 3))
    }
}
