import Common

/// Errors of the Cluster module. `badInput` (exit 2): refused by the coordinator, bad arguments.
/// `runtime` (exit 1): a lost peer, a failed device, a coordinator that never answered.
public struct ClusterError: ZeroTrainError, Sendable {
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
