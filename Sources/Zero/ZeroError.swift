import Common

/// Errors of the Zero module. `badInput` is the user's to fix (a config value, a command-line
/// argument, a plan that does not match its model; exit code 2); `runtime` is a failure while
/// running (out of device memory, an offload file that cannot be made; exit code 1).
public struct ZeroError: ZeroTrainError, Sendable {
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
