/// Errors of the Training module. `badInput` is the user's to fix (exit code 2);
/// `runtime` is a failure while running (exit code 1).
public struct TrainingError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable { case badInput, runtime }
    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
