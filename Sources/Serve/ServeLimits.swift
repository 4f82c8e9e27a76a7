/// The server's request limits (`zerotrain serve` flags; docs/serving.md).
public struct ServeLimits: Sendable, Equatable {
    /// Largest max_tokens a request may ask for (also the default of /predict and chat completions).
    public var maxTokens = 256
    /// Largest request body, bytes (413 above).
    public var maxBodyBytes = 1 << 20
    /// Seconds from a request's arrival to its end: past it, the generation is dropped (504, or an
    /// error event on a stream).
    public var requestTimeout: Double = 60
    /// Requests that may wait for a place in the running batch (429 above).
    public var maxQueue = 64
    /// Sequences in the running decode batch.
    public var maxBatch = 16
    /// Seconds a graceful shutdown waits for the last responses to be written, once every
    /// accepted request has finished generating.
    public var drainGrace: Double = 5

    public init() {}

    /// Nil when valid, else the flag and the rule.
    public var problem: String? {
        if maxTokens < 1 { return "--max-tokens must be ≥ 1, got \(maxTokens)" }
        if maxBodyBytes < 64 { return "--max-body-bytes must be ≥ 64, got \(maxBodyBytes)" }
        if !(requestTimeout > 0) { return "--request-timeout must be > 0 seconds, got \(requestTimeout)" }
        if maxQueue < 0 { return "--max-queue must be ≥ 0, got \(maxQueue)" }
        if maxBatch < 1 { return "--max-batch must be ≥ 1, got \(maxBatch)" }
        return nil
    }
}
