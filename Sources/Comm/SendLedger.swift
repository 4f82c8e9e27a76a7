import Foundation

/// Tracks which borrowed send payloads of one collective the transport has released.
///
/// Index `i` is the i-th borrowed send of the collective. Zero-copy transports release payloads
/// from their I/O thread, so the flags sit behind a condition variable; a collective waits on a
/// specific send before overwriting the bytes it lent, and on all of them before returning.
final class SendLedger: @unchecked Sendable {
    private let condition = NSCondition()
    private var released: [Bool] = []
    private var outstanding = 0

    /// Registers a new borrowed send and returns its release handle.
    func makeRelease() -> SendRelease {
        condition.lock()
        defer { condition.unlock() }
        released.append(false)
        outstanding += 1
        return SendRelease(ledger: self, index: released.count - 1)
    }

    /// Number of sends registered so far (the index the next `makeRelease` will get).
    var count: Int {
        condition.lock()
        defer { condition.unlock() }
        return released.count
    }

    func markReleased(_ index: Int) {
        condition.lock()
        if index < released.count, !released[index] {
            released[index] = true
            outstanding -= 1
            condition.broadcast()
        }
        condition.unlock()
    }

    /// Waits until send `index` was released; false if `deadline` passed first.
    func wait(for index: Int, deadline: ContinuousClock.Instant) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while index < released.count, !released[index] {
            guard let until = Self.date(for: deadline) else { return false }
            _ = condition.wait(until: until)
        }
        return true
    }

    /// Waits until every registered send was released; false if `deadline` passed first.
    func waitAll(deadline: ContinuousClock.Instant) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while outstanding > 0 {
            guard let until = Self.date(for: deadline) else { return false }
            _ = condition.wait(until: until)
        }
        return true
    }

    /// Forgets all (released) entries so the ledger can serve the next collective.
    func reset() {
        condition.lock()
        released.removeAll(keepingCapacity: true)
        outstanding = 0
        condition.unlock()
    }

    private static func date(for deadline: ContinuousClock.Instant) -> Date? {
        let remaining = ContinuousClock.now.duration(to: deadline)
        guard remaining > .zero else { return nil }
        let (s, atto) = remaining.components
        return Date(timeIntervalSinceNow: min(Double(s) + Double(atto) * 1e-18, 0.05))
    }
}
