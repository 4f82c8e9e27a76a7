import Common

/// Tracks which borrowed send payloads of one collective the transport has released.
///
/// Index `i` is the i-th borrowed send of the collective. Zero-copy transports release payloads
/// from their I/O thread, so the flags sit in a `Monitor`; a collective waits on a specific send
/// before overwriting the bytes it lent, and on all of them before returning.
final class SendLedger: Sendable {
    private struct Flags {
        var released: [Bool] = []
        var outstanding = 0
    }
    private let flags = Monitor(Flags())

    /// Registers a new borrowed send and returns its release handle.
    func makeRelease() -> SendRelease {
        let index = flags.withLock { f in
            f.released.append(false)
            f.outstanding += 1
            return f.released.count - 1
        }
        return SendRelease(ledger: self, index: index)
    }

    func markReleased(_ index: Int) {
        flags.withLock { f in
            guard index < f.released.count, !f.released[index] else { return }
            f.released[index] = true
            f.outstanding -= 1
        }
    }

    /// Waits until send `index` was released; false if `deadline` passed first.
    func wait(for index: Int, deadline: ContinuousClock.Instant) -> Bool {
        flags.wait(until: deadline) { f in index < f.released.count && !f.released[index] ? nil : true } ?? false
    }

    /// Waits until every registered send was released; false if `deadline` passed first.
    func waitAll(deadline: ContinuousClock.Instant) -> Bool {
        flags.wait(until: deadline) { f in f.outstanding > 0 ? nil : true } ?? false
    }
}
