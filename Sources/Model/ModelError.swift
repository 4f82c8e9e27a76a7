import Common

/// Errors of the Model module: invalid model configurations and unusable inputs (both the
/// user's to fix). The message names the field path and the rule, e.g.
/// `model.moe_config.top_k: must be ≤ num_experts (16), got 20`.
public struct ModelError: ZeroTrainError, Sendable {
    public enum Code: String, Sendable { case invalidConfig, invalidInput }
    public let code: Code
    public let message: String
    public let cause: (any Error)?

    public init(_ code: Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var kind: ErrorKind { .badInput }
}
