/// The codes of one module's errors and whose problem each is.
public protocol ErrorDomain: Sendable {
    associatedtype Code: RawRepresentable & Sendable & Equatable where Code.RawValue == String
    static func kind(of code: Code) -> ErrorKind
}

/// A module's error type, the same shape everywhere: a code of the module's domain, the message,
/// the cause. Modules name theirs (`public typealias ZeroError = DomainError<ZeroErrors>`).
public struct DomainError<Domain: ErrorDomain>: ZeroTrainError, Sendable {
    public let code: Domain.Code
    public let message: String
    public let cause: (any Error)?

    public init(_ code: Domain.Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var kind: ErrorKind { Domain.kind(of: code) }
}

/// The domain of modules whose errors are either the user's (`badInput`) or the run's (`runtime`).
public protocol InputOrRuntimeDomain: ErrorDomain where Code == InputOrRuntime {}

public enum InputOrRuntime: String, Sendable, Equatable {
    case badInput, runtime
}

extension InputOrRuntimeDomain {
    public static func kind(of code: InputOrRuntime) -> ErrorKind { code == .badInput ? .badInput : .runtime }
}
