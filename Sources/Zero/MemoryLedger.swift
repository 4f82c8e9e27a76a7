import Foundation
import Synchronization

/// Accounts a rank's memory by tier and category against the device budget (`device:` in the
/// config). Every large buffer a rank allocates is entered here before it is allocated, so a
/// configuration that does not fit fails up front with a message naming the top consumers and
/// what would fit, instead of swapping or being killed half-way through. Only the device tier has
/// a budget; host and disk bytes (offloaded state) are counted separately.
public final class MemoryLedger: Sendable {
    public enum Category: String, CaseIterable, Codable, Sendable {
        /// Model states: the rank's parameters, gradients and AdamW moments (whole or its shard).
        case params, grads, optimizer
        case activations
        /// Communication buffers: gradient buckets, stage 2–3 region gradients being reduced.
        case comm
        /// Stage 3: parameters gathered from the shards for the regions in use and prefetched.
        case gathered
    }

    /// Budget in bytes; nil = unlimited.
    public let capacity: Int?
    public let rank: Int

    /// What is entered, by tier and category. The training thread and the communication thread
    /// (stage 2–3 working buffers) both change it.
    private struct Entries {
        var current: [Category: Int] = [:]
        var peak: [Category: Int] = [:]
        var peakTotal = 0
        var offloaded: [MemoryTier: [Category: Int]] = [:]
        var offloadedPeak: [MemoryTier: Int] = [:]
    }
    private let entries = Mutex(Entries())

    public init(capacity: Int?, rank: Int) {
        self.capacity = capacity
        self.rank = rank
    }

    /// Enters `bytes` of `category` for `what`; throws an out-of-memory error if the budget would be exceeded.
    /// `advice` says what would fit (from the planner's view of this job).
    public func allocate(_ bytes: Int, _ category: Category, tier: MemoryTier = .device, what: String,
                         advice: @autoclosure () -> String = "") throws {
        try entries.withLock { e in
            guard tier == .device else {
                e.offloaded[tier, default: [:]][category, default: 0] += bytes
                e.offloadedPeak[tier] = max(e.offloadedPeak[tier, default: 0], e.offloaded[tier]!.values.reduce(0, +))
                return
            }
            try checkFits(e, bytes, category, what: what, advice: advice())
            let total = e.current.values.reduce(0, +)
            e.current[category, default: 0] += bytes
            e.peak[category] = max(e.peak[category, default: 0], e.current[category, default: 0])
            e.peakTotal = max(e.peakTotal, total + bytes)
        }
    }

    /// Throws the same out-of-memory error as `allocate` if `bytes` more of `category` would not
    /// fit now, without entering them: a pre-flight check for buffers allocated later (the stage
    /// 2–3 working set), so a configuration fails before training starts rather than at step 1.
    public func require(_ bytes: Int, _ category: Category, what: String, advice: @autoclosure () -> String = "") throws {
        try entries.withLock { e in try checkFits(e, bytes, category, what: what, advice: advice()) }
    }

    private func checkFits(_ e: Entries, _ bytes: Int, _ category: Category, what: String,
                           advice: @autoclosure () -> String) throws {
        let total = e.current.values.reduce(0, +)
        guard let capacity, total + bytes > capacity else { return }
        let consumers = Category.allCases.map { ($0, e.current[$0, default: 0] + ($0 == category ? bytes : 0)) }
            .filter { $0.1 > 0 }.sorted { $0.1 > $1.1 }
            .map { "\($0.0.rawValue) \(ByteSize.format($0.1))" }.joined(separator: ", ")
        let hint = advice()
        throw ZeroError(.runtime, "out of device memory on rank \(rank): \(what) needs \(ByteSize.format(bytes)) (\(category.rawValue)) but only \(ByteSize.format(max(0, capacity - total))) of \(ByteSize.format(capacity)) is left; top consumers: \(consumers)" + (hint.isEmpty ? "" : "; \(hint)"))
    }

    public func release(_ bytes: Int, _ category: Category, tier: MemoryTier = .device) {
        entries.withLock { e in
            if tier == .device {
                e.current[category, default: 0] -= bytes
            } else {
                e.offloaded[tier, default: [:]][category, default: 0] -= bytes
            }
        }
    }

    /// Current and peak bytes by category, for the metrics.
    public struct Snapshot: Codable, Sendable, Equatable {
        /// Device bytes by category, now and at their peaks.
        public var current: [String: Int]
        public var peak: [String: Int]
        public var peakTotal: Int
        public var capacity: Int?
        /// Offloaded bytes by category, per tier ("host", "disk"), now; and each tier's peak total.
        public var offloaded: [String: [String: Int]]
        public var offloadedPeak: [String: Int]

        enum CodingKeys: String, CodingKey {
            case current, peak, peakTotal = "peak_total", capacity, offloaded, offloadedPeak = "offloaded_peak"
        }

        /// params + grads + optimizer at their peaks.
        public var peakModelStates: Int { ["params", "grads", "optimizer"].reduce(0) { $0 + (peak[$1] ?? 0) } }
    }

    public var snapshot: Snapshot {
        let e = entries.withLock { $0 }
        func names(_ d: [Category: Int]) -> [String: Int] { Dictionary(uniqueKeysWithValues: d.map { ($0.key.rawValue, $0.value) }) }
        return Snapshot(current: names(e.current), peak: names(e.peak), peakTotal: e.peakTotal, capacity: capacity,
                        offloaded: Dictionary(uniqueKeysWithValues: e.offloaded.map { ($0.key.rawValue, names($0.value)) }),
                        offloadedPeak: Dictionary(uniqueKeysWithValues: e.offloadedPeak.map { ($0.key.rawValue, $0.value) }))
    }
}
