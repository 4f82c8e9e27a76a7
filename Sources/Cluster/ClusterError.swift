/// Errors of the Cluster module. `badInput` (exit 2): refused by the coordinator, bad arguments.
/// `runtime` (exit 1): a lost peer, a failed device, a coordinator that never answered.
public struct ClusterError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable { case badInput, runtime }
    public let code: Code
    public let message: String
    public init(_ code: Code, _ message: String) { self.code = code; self.message = message }
    public var description: String { message }
}
