import Foundation

/// State shared between threads behind one lock, with the ability to sleep until it changes:
/// a `Mutex` that threads can also wait on. Every change made through `withLock` wakes the
/// waiters, which re-check their condition.
public final class Monitor<State: Sendable>: @unchecked Sendable {
    // Safe: `state` is read and written only while `condition` is locked, and is Sendable, so
    // what a caller takes out of it may go to another thread.
    private let condition = NSCondition()
    private var state: State

    public init(_ state: State) { self.state = state }

    /// Runs `body` with the state locked, then wakes every waiter.
    @discardableResult
    public func withLock<R>(_ body: (inout State) throws -> R) rethrows -> R {
        condition.lock()
        defer { condition.broadcast(); condition.unlock() }
        return try body(&state)
    }

    /// Blocks until `body` returns a value (it runs with the state locked, first at once and then
    /// after every change), and returns that value.
    public func wait<R>(_ body: (inout State) throws -> R?) rethrows -> R {
        condition.lock()
        defer { condition.broadcast(); condition.unlock() }
        while true {
            if let result = try body(&state) { return result }
            condition.wait()
        }
    }

    /// As `wait`, but gives up at `deadline` and returns nil.
    public func wait<R>(until deadline: ContinuousClock.Instant, _ body: (inout State) throws -> R?) rethrows -> R? {
        condition.lock()
        defer { condition.broadcast(); condition.unlock() }
        while true {
            if let result = try body(&state) { return result }
            let remaining = ContinuousClock.now.duration(to: deadline)
            guard remaining > .zero else { return nil }
            _ = condition.wait(until: Date(timeIntervalSinceNow: remaining.seconds))
        }
    }
}
