import Common

/// Errors of the Telemetry module: a metrics file that cannot be opened or written (runtime).
public typealias TelemetryError = DomainError<TelemetryErrors>
public enum TelemetryErrors: ErrorDomain {
    public enum Code: String, Sendable { case io }
    public static func kind(of code: Code) -> ErrorKind { .runtime }
}
