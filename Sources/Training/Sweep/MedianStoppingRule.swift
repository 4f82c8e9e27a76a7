import Common

/// The median stopping rule as a state machine over loss reports: it keeps every trial's curve
/// and answers each report with continue or stop. Pure (no processes, no clock), so synthetic
/// curves test it; the sweep driver feeds it metrics.jsonl lines and acts on its answers.
public struct MedianStoppingRule: Sendable {
    public enum Decision: Sendable, Equatable {
        case `continue`
        /// Stop the trial: at `rung`, its best loss `best` was worse than the others' median `median`.
        case stop(rung: Int, best: Double, median: Double)
    }

    public let grace: Int
    public let interval: Int
    public let minTrials: Int
    /// Each trial's (step, loss) reports in step order.
    private(set) var curves: [String: [(step: Int, loss: Double)]] = [:]
    /// The next rung each trial is judged at.
    private var nextRung: [String: Int] = [:]

    public init(grace: Int, interval: Int, minTrials: Int = 2) {
        precondition(interval >= 1 && minTrials >= 1 && grace >= 0)
        self.grace = grace
        self.interval = interval
        self.minTrials = minTrials
    }

    /// The first rung: `grace` (or `interval` when there is no grace period).
    private var firstRung: Int { grace > 0 ? grace : interval }

    /// Records a report and decides. Once a trial passes a rung without stopping it is judged
    /// there no more; a report that jumps several rungs is judged at the latest.
    public mutating func report(trial: String, step: Int, loss: Double) -> Decision {
        curves[trial, default: []].append((step, loss))
        var rung = nextRung[trial] ?? firstRung
        guard step >= rung else { return .continue }
        while rung + interval <= step { rung += interval }
        nextRung[trial] = rung + interval
        let best = curves[trial]!.lazy.map(\.loss).min()!
        let others = curves.compactMap { id, curve in id == trial ? nil : Self.loss(curve, at: rung) }
        guard others.count >= minTrials else { return .continue }
        let median = Self.median(others)
        return best > median ? .stop(rung: rung, best: best, median: median) : .continue
    }

    /// Records the curve of a trial that ended before (a restarted sweep), without deciding.
    public mutating func replay(trial: String, curve: [(step: Int, loss: Double)]) {
        curves[trial] = curve
        nextRung[trial] = Int.max
    }

    /// The loss a curve reported at `step`: its last report at or before it; nil when the
    /// curve has not reached `step`.
    static func loss(_ curve: [(step: Int, loss: Double)], at step: Int) -> Double? {
        guard let last = curve.last, last.step >= step else { return nil }
        return curve.last(where: { $0.step <= step })?.loss
    }

    static func median(_ values: [Double]) -> Double {
        let s = values.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
}
