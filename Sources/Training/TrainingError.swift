import Common

/// Errors of the Training module. `badInput` is the user's to fix (exit code 2);
/// `runtime` is a failure while running (exit code 1).
public struct TrainingError: ZeroTrainError, Sendable {
    public enum Code: String, Sendable { case badInput, runtime }
    public let code: Code
    public let message: String
    public let cause: (any Error)?

    public init(_ code: Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var kind: ErrorKind { code == .badInput ? .badInput : .runtime }
}
