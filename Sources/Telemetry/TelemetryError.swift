import Common

/// Errors of the Telemetry module: a metrics file that cannot be opened or written.
public struct TelemetryError: ZeroTrainError, Sendable {
    public enum Code: String, Sendable { case io }
    public let code: Code
    public let message: String
    public let underlying: (any Error)?

    public init(_ code: Code, _ message: String, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    public var kind: ErrorKind { .runtime }
}
