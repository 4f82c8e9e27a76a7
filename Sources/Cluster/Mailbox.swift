import Comm
import Common

/// What other threads hand a daemon's loop — items (a device's reports) and a stop request —
/// each of which wakes the loop through its control endpoint's wake-up.
final class Mailbox<Item: Sendable>: Sendable {
    private struct State {
        var items: [Item] = []
        var stop = false
        var wakeup: (any Wakeup)?
    }
    private let state = Monitor(State())

    func post(_ item: Item) {
        state.withLock { s -> (any Wakeup)? in s.items.append(item); return s.wakeup }?.signal()
    }

    /// Safe from any thread, also before the loop has started.
    func requestStop() {
        state.withLock { s -> (any Wakeup)? in s.stop = true; return s.wakeup }?.signal()
    }

    /// Connects the loop's wake-up; returns whether a stop was requested before.
    func attach(_ wakeup: any Wakeup) -> Bool {
        state.withLock { s in s.wakeup = wakeup; return s.stop }
    }

    /// Everything posted since the last call, and whether a stop has been requested.
    func take() -> (items: [Item], stop: Bool) {
        state.withLock { s in
            defer { s.items = [] }
            return (s.items, s.stop)
        }
    }
}
