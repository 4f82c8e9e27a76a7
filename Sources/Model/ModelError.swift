/// Errors of the Model module: invalid model configurations and unusable inputs.
public struct ModelError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable { case invalidConfig, invalidInput }
    public let code: Code
    /// Names the field path and the rule, e.g. `model.moe_config.top_k: must be ≤ num_experts (16), got 20`.
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
