import Common
import Data
import Foundation
import Telemetry

/// What a request's generation reports, in order: one `token` per generated token (with the text
/// that may be shown now, possibly empty), then one `finished` or `failed`.
public enum GenerationEvent: Sendable {
    case token(text: [UInt8], first: Bool)
    case finished(FinishReason, promptTokens: Int, completionTokens: Int)
    /// The generation ended without finishing: `timedOut` (the request's deadline passed), or a
    /// failure of the engine.
    case failed(message: String, timedOut: Bool)

    public var isTerminal: Bool {
        if case .token = self { return false }
        return true
    }
}

/// The server's engine thread: runs `BatchScheduler`'s steps on an `InferenceEngine` and reports
/// each request's tokens through its sink. It waits on its `Monitor` for an event (a submission, a
/// cancellation, a shutdown) whenever nothing runs, and otherwise runs steps back to back;
/// deadlines are checked between steps. `run` returns once a shutdown has drained every request.
public final class GenerationLoop: Sendable {
    public typealias Sink = @Sendable (GenerationEvent) -> Void

    struct Submission: Sendable {
        let request: GenerationRequest
        let deadline: ContinuousClock.Instant
        let sink: Sink
    }

    struct State: Sendable {
        var scheduler: BatchScheduler
        var nextID = 0
        var submissions: [Int: Submission] = [:]
        var cancelled: Set<Int> = []
    }

    private let state: Monitor<State>
    // Safe: the engine, tokenizer and metrics are used by the loop's thread only (run); the
    // tokenizer and metrics are Sendable themselves.
    nonisolated(unsafe) private let engine: InferenceEngine
    private let tokenizer: ModelTokenizer
    private let metrics: ServeMetrics?

    public init(engine: InferenceEngine, tokenizer: ModelTokenizer, maxBatch: Int, maxQueue: Int, metrics: ServeMetrics? = nil) {
        self.engine = engine
        self.tokenizer = tokenizer
        self.metrics = metrics
        state = Monitor(State(scheduler: BatchScheduler(maxBatch: maxBatch, maxQueue: maxQueue)))
    }

    /// Queues a request; its events go to `sink` (from the loop's thread). Nil id: not accepted.
    public func submit(_ request: GenerationRequest, deadline: ContinuousClock.Instant, sink: @escaping Sink)
        -> (id: Int?, admission: BatchScheduler.Admission) {
        state.withLock { s in
            let id = s.nextID
            let admission = s.scheduler.submit(id)
            guard admission == .accepted else { return (nil, admission) }
            s.nextID += 1
            s.submissions[id] = Submission(request: request, deadline: deadline, sink: sink)
            metrics?.occupancy(queued: s.scheduler.waiting.count, running: s.scheduler.running.count)
            return (id, admission)
        }
    }

    /// The client of request `id` went away: it is dropped before the next step.
    public func cancel(_ id: Int) {
        state.withLock { s in
            if s.submissions[id] != nil { s.cancelled.insert(id) }
        }
    }

    /// Stops accepting requests; `run` returns when every accepted one has ended.
    public func shutdown() { state.withLock { $0.scheduler.shutdown() } }

    public var isShuttingDown: Bool { state.withLock { $0.scheduler.shuttingDown } }

    /// Requests waiting and running now.
    public var occupancy: (queued: Int, running: Int) {
        state.withLock { ($0.scheduler.waiting.count, $0.scheduler.running.count) }
    }

    private struct Active {
        let generation: Generation
        let submission: Submission
    }

    /// The loop; call on a thread of its own.
    public func run() {
        var active: [Int: Active] = [:]
        while true {
            // Wait for something to run (or for the drain to finish).
            let next: (step: BatchScheduler.Step, new: [(Int, Submission)], dropped: [Int])? = state.wait { s in
                var dropped: [Int] = []
                for id in s.cancelled {
                    s.scheduler.remove(id)
                    s.submissions[id] = nil
                    dropped.append(id)
                }
                s.cancelled.removeAll()
                if s.scheduler.isDrained { return .some(nil) }
                guard let step = s.scheduler.nextStep() else {
                    for id in dropped { active[id] = nil }
                    return nil
                }
                return .some((step, step.admitted.map { ($0, s.submissions[$0]!) }, dropped))
            }
            guard let next else { return }
            for id in next.dropped { active[id] = nil }
            // Requests that end in this round: their last event goes out once the scheduler has
            // let go of them, so that a client who sends its next request on that event finds the place free.
            var ended: [(id: Int, sink: Sink, event: GenerationEvent)] = []
            for (id, submission) in next.new {
                do {
                    active[id] = Active(generation: try Generation(submission.request, engine: engine, tokenizer: tokenizer),
                                        submission: submission)
                } catch {
                    ended.append((id, submission.sink, .failed(message: "\(error)", timedOut: false)))
                }
            }
            // Deadlines, and requests with nothing to generate (max_tokens 0).
            let now = ContinuousClock.now
            for id in next.step.batch {
                guard let a = active[id] else { continue }
                if let reason = a.generation.finishReason {
                    ended.append((id, a.submission.sink, .finished(reason, promptTokens: a.generation.request.prompt.count, completionTokens: 0)))
                    active[id] = nil
                } else if now >= a.submission.deadline {
                    ended.append((id, a.submission.sink,
                                  .failed(message: "the request timed out after \(a.generation.tokens.count) tokens", timedOut: true)))
                    active[id] = nil
                }
            }
            let batch = next.step.batch.filter { active[$0] != nil }
            var promptTokens = 0, seconds = 0.0
            if !batch.isEmpty {
                promptTokens = next.new.reduce(0) { $0 + (active[$1.0] != nil ? $1.1.request.prompt.count : 0) }
                let start = ContinuousClock.now
                do {
                    let logits = try engine.step(batch.map { InferenceEngine.Item(cache: active[$0]!.generation.cache,
                                                                                   tokens: active[$0]!.generation.input) })
                    for (slot, id) in batch.enumerated() {
                        let a = active[id]!, g = a.generation
                        let first = g.tokens.isEmpty
                        let text = g.accept(logits: logits[slot])
                        a.submission.sink(.token(text: text, first: first))
                        if let reason = g.finishReason {
                            ended.append((id, a.submission.sink,
                                          .finished(reason, promptTokens: g.request.prompt.count, completionTokens: g.tokens.count)))
                            active[id] = nil
                        }
                    }
                } catch {
                    for id in batch {
                        if let a = active[id] { ended.append((id, a.submission.sink, .failed(message: "\(error)", timedOut: false))) }
                        active[id] = nil
                    }
                }
                seconds = (ContinuousClock.now - start).seconds
            }
            let occupancy = state.withLock { s in
                for e in ended { s.scheduler.remove(e.id); s.submissions[e.id] = nil }
                return (s.scheduler.waiting.count, s.scheduler.running.count)
            }
            for e in ended { e.sink(e.event) }
            if !batch.isEmpty {
                metrics?.step(promptTokens: promptTokens, generated: batch.count, seconds: seconds, queued: occupancy.0, running: occupancy.1)
            }
        }
    }
}
