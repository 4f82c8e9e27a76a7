import Common

/// Errors of the Cluster module. `badInput` (exit 2): refused by the coordinator, bad arguments.
/// `runtime` (exit 1): a lost peer, a failed device, a coordinator that never answered.
public typealias ClusterError = DomainError<ClusterErrors>
public enum ClusterErrors: InputOrRuntimeDomain {}
