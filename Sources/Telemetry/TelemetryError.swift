import Common

/// Errors of the Telemetry module: a metrics file that cannot be opened or written.
public struct TelemetryError: ZeroTrainError, Sendable {
    public enum Code: String, Sendable { case io }
    public let code: Code
    public let message: String
    public let cause: (any Error)?

    public init(_ code: Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var kind: ErrorKind { .runtime }
}
