import Common

/// Errors of the Model module: invalid model configurations and unusable inputs (both the
/// user's to fix). The message names the field path and the rule, e.g.
/// `model.moe_config.top_k: must be ≤ num_experts (16), got 20`.
public typealias ModelError = DomainError<ModelErrors>
public enum ModelErrors: ErrorDomain {
    public enum Code: String, Sendable { case invalidConfig, invalidInput }
    public static func kind(of code: Code) -> ErrorKind { .badInput }
}
