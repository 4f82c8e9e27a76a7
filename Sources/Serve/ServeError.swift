import Common

/// Errors of the Serve module: a model folder or request the user must fix (`badInput`), or a
/// failure while serving (`runtime`).
public typealias ServeError = DomainError<ServeErrors>
public enum ServeErrors: InputOrRuntimeDomain {
    public typealias Code = InputOrRuntime
}
