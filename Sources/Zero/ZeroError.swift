/// Errors of the Zero module. `badInput` is the user's to fix (a config value, a command-line
/// argument, a plan that does not match its model; exit code 2); `runtime` is a failure while
/// running (exit code 1).
public struct ZeroError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable { case badInput, runtime }
    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
