/// A config problem: one line naming the field path and the rule
/// (`model.moe_config.top_k: must be ≤ num_experts (16), got 20`). Always the user's to fix. A
/// section's own error (a `ModelError`, a `ZeroError`) re-raised as a config error keeps it as
/// its cause.
public struct ConfigError: ZeroTrainError, Sendable {
    public enum Code: String, Sendable { case invalid }
    public let code = Code.invalid
    public let message: String
    public let cause: (any Error)?

    public init(_ message: String, cause: (any Error)? = nil) {
        self.message = message
        self.cause = cause
    }

    /// `error` as a config problem, in its own words.
    public init(_ error: some ZeroTrainError) { self.init(error.message, cause: error) }

    public var kind: ErrorKind { .badInput }
}
