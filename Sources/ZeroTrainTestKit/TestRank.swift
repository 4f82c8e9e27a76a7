import Bench
import Comm
import Foundation

/// The rank test process (`ZeroTrainTestRank`, an executable target of the test kit): Bench's
/// `RankWorker` with the test commands, spawned by the multi-process tests through `RankProcess`.
public enum TestRank {
    /// The built `ZeroTrainTestRank` (next to the test bundle: `swift build` and `swift test` build
    /// it), or `$ZEROTRAIN_TEST_RANK_BIN`; nil when neither exists.
    public static func executable() -> URL? {
        RankProcess.executable(named: "ZeroTrainTestRank", environmentVariable: "ZEROTRAIN_TEST_RANK_BIN")
    }

    /// `bind`, `connect`, `bench`, `exit` as in `zerotrain bench comm --worker`, plus `run`: one
    /// collective on the inputs of `ReferenceCollectives` (kind, count, seed, average, bfloat16,
    /// root, timeoutMs), answered with its digest, seconds and dropped frames. Every group runs over
    /// a `StallingTransport`; `run` with `stallAfterFrames` stalls the rank after that many
    /// received frames (it reports the `stalled` event), so a test can kill it mid-collective.
    public static func worker() -> RankWorker {
        var stalling: StallingTransport?
        return RankWorker(wrapTransport: { transport in
            let s = StallingTransport(transport)
            stalling = s
            return s
        }, handle: { c, group in
            guard c.cmd == "run" else { return nil }
            guard let group, let kind = c.kind else { throw CommError(.invalidArgument, "run needs a formed group and a kind") }
            stalling?.stallAfter = c.stallAfterFrames
            let timeout = Duration.milliseconds(c.timeoutMs ?? 10_000)
            let outcome = try CollectiveCheck.run(kind, group: group, count: c.count ?? 0, seed: c.seed ?? 1,
                                                  op: c.average == true ? .average : .sum,
                                                  wire: c.bfloat16 == true ? .bfloat16 : .float32,
                                                  root: c.root ?? 0, deadline: .now + timeout)
            var reply = RankReply(ok: true)
            reply.digest = String(outcome.digest, radix: 16)
            reply.seconds = outcome.seconds
            reply.droppedFrames = group.droppedFrames
            return reply
        })
    }
}
