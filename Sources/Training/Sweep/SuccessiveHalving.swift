/// Asynchronous successive halving (ASHA, Li et al. 2018) as a state machine over loss reports:
/// rungs at `minSteps`·ηᵏ below the end of training (`maxSteps`, the last rung). Every trial runs
/// to the first rung and pauses there; whenever a slot frees up, the best trial of the highest
/// rung that is in the top 1/η of the trials that reached that rung and was not promoted yet goes
/// on to the next rung (resumed from its checkpoint), else a new trial starts. Pure (no
/// processes, no clock): synthetic curves test it; the sweep driver acts on its answers.
public struct SuccessiveHalving: Sendable {
    public enum Decision: Sendable, Equatable {
        case `continue`
        /// The trial reached its rung `rung` (a step) with best loss `loss`: pause it there.
        case pause(rung: Int, loss: Double)
        /// The trial reached the last rung (the end of training).
        case complete
    }

    public let minSteps: Int
    public let eta: Int
    /// The rungs' steps, ascending; the last is the end of training.
    public let rungs: [Int]
    /// Per rung: trial → its best loss so far when it reached the rung.
    private(set) var results: [[String: Double]]
    /// Per rung: trials promoted from it.
    private(set) var promoted: [Set<String>]
    /// Each trial's best loss so far and the rung it runs to (an index into `rungs`).
    private var best: [String: Double] = [:]
    private var level: [String: Int] = [:]

    public init(minSteps: Int, eta: Int, maxSteps: Int) {
        precondition(minSteps >= 1 && eta >= 2 && maxSteps >= 1)
        self.minSteps = minSteps
        self.eta = eta
        var rungs: [Int] = []
        var r = minSteps
        while r < maxSteps {
            rungs.append(r)
            r *= eta
        }
        rungs.append(maxSteps)
        self.rungs = rungs
        results = Array(repeating: [:], count: rungs.count)
        promoted = Array(repeating: [], count: rungs.count)
    }

    /// The rung (an index into `rungs`) the trial runs to, or was paused at.
    public func level(of trial: String) -> Int { level[trial] ?? 0 }

    /// Records a report of a running trial and decides.
    public mutating func report(trial: String, step: Int, loss: Double) -> Decision {
        best[trial] = min(best[trial] ?? loss, loss)
        let k = level[trial] ?? 0
        level[trial] = k
        // Reports past the rung change nothing (the job pauses at its rung by itself; a trial
        // whose total_steps exceeds the last rung runs on past it).
        guard step >= rungs[k], results[k][trial] == nil else { return .continue }
        results[k][trial] = best[trial]!
        return k == rungs.count - 1 ? .complete : .pause(rung: rungs[k], loss: best[trial]!)
    }

    /// The trial to resume when a slot is free, and the rung step it now runs to; nil when none
    /// qualifies (then a new trial starts, or the sweep waits). A trial in `running` is not
    /// promoted yet: its report of the rung comes from its metrics before its job has checkpointed
    /// and exited, and a second job of the same trial must not start beside it.
    public mutating func promotion(excluding running: Set<String> = []) -> (trial: String, rung: Int)? {
        for k in stride(from: rungs.count - 2, through: 0, by: -1) {
            let ranked = results[k].sorted { $0.value != $1.value ? $0.value < $1.value : $0.key < $1.key }
            let top = ranked.prefix(ranked.count / eta)
            if let t = top.first(where: { !promoted[k].contains($0.key) && !running.contains($0.key) }) {
                promoted[k].insert(t.key)
                level[t.key] = k + 1
                return (t.key, rungs[k + 1])
            }
        }
        return nil
    }

    /// Rebuilds a trial's place from its recorded curve and the rung it ran to (a restarted
    /// sweep): its results at the rungs it reached, and the promotions that took it there.
    public mutating func replay(trial: String, curve: [(step: Int, loss: Double)], level: Int) {
        let level = min(level, rungs.count - 1)
        self.level[trial] = level
        for k in 0..<level { promoted[k].insert(trial) }
        var k = 0
        for point in curve {
            best[trial] = min(best[trial] ?? point.loss, point.loss)
            while k <= level, point.step >= rungs[k] {
                results[k][trial] = best[trial]!
                k += 1
            }
        }
    }
}
