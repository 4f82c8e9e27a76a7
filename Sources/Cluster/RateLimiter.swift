/// A token bucket: at most `burst` events at once, refilled at `perSecond`. Time is passed in
/// (seconds on any monotonic clock), so it is tested without a clock. The coordinator limits
/// registration attempts with it.
public struct RateLimiter: Sendable, Equatable {
    public let perSecond: Double
    public let burst: Double
    private var tokens: Double
    private var last: Double?
    /// Events refused since the last `takeRefusals()`.
    public private(set) var refusals = 0

    public init(perSecond: Double, burst: Double) {
        self.perSecond = perSecond
        self.burst = burst
        tokens = burst
    }

    /// Whether an event at `now` is within the rate (and counts it).
    public mutating func admit(now: Double) -> Bool {
        if let last { tokens = min(burst, tokens + max(0, now - last) * perSecond) }
        last = now
        guard tokens >= 1 else {
            refusals += 1
            return false
        }
        tokens -= 1
        return true
    }

    /// The refusals since the last call, and resets the count.
    public mutating func takeRefusals() -> Int {
        defer { refusals = 0 }
        return refusals
    }
}
