import Common

/// Errors of the Zero module. `badInput` is the user's to fix (a config value, a command-line
/// argument, a plan that does not match its model; exit code 2); `runtime` is a failure while
/// running (out of device memory, an offload file that cannot be made; exit code 1).
public typealias ZeroError = DomainError<ZeroErrors>
public enum ZeroErrors: InputOrRuntimeDomain {}
