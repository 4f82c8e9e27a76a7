/// Continuous batching as a state machine (no clocks, no threads): requests wait in a FIFO queue
/// of at most `maxQueue`, and every engine step admits waiting requests into the free places of
/// the running batch (at most `maxBatch` sequences), which prefill in the same step as the others
/// decode; a request leaves the batch the step it finishes. After `shutdown` nothing new is
/// accepted, and what was accepted — running or waiting — still runs to its end (`isDrained`).
public struct BatchScheduler: Sendable, Equatable {
    public typealias ID = Int
    public let maxBatch: Int, maxQueue: Int
    public private(set) var waiting: [ID] = []
    public private(set) var running: [ID] = []
    public private(set) var shuttingDown = false

    public init(maxBatch: Int, maxQueue: Int) {
        precondition(maxBatch >= 1 && maxQueue >= 0, "maxBatch must be ≥ 1 and maxQueue ≥ 0")
        self.maxBatch = maxBatch
        self.maxQueue = maxQueue
    }

    public enum Admission: Sendable, Equatable { case accepted, queueFull, shuttingDown }

    /// A new request: accepted (it waits for a place) unless the queue is full or the server stops.
    public mutating func submit(_ id: ID) -> Admission {
        if shuttingDown { return .shuttingDown }
        // A request that will get a place at the next step does not count against the queue.
        guard waiting.count < maxQueue + max(0, maxBatch - running.count) else { return .queueFull }
        waiting.append(id)
        return .accepted
    }

    /// What the next engine step runs: `admitted` joined the batch now (they prefill), `batch` is
    /// every running sequence, admitted ones last. Nil when nothing runs (the loop waits for an event).
    public struct Step: Sendable, Equatable {
        public let admitted: [ID]
        public let batch: [ID]
    }

    public mutating func nextStep() -> Step? {
        let admitted = Array(waiting.prefix(maxBatch - running.count))
        waiting.removeFirst(admitted.count)
        running += admitted
        return running.isEmpty ? nil : Step(admitted: admitted, batch: running)
    }

    /// A request ended (finished, failed, timed out or cancelled by its client), wherever it is.
    public mutating func remove(_ id: ID) {
        waiting.removeAll { $0 == id }
        running.removeAll { $0 == id }
    }

    /// Stop accepting; what was accepted runs to its end.
    public mutating func shutdown() { shuttingDown = true }

    /// Shut down and nothing left to run.
    public var isDrained: Bool { shuttingDown && waiting.isEmpty && running.isEmpty }
}
