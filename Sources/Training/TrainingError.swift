import Common

/// Errors of the Training module. `badInput` is the user's to fix (exit code 2); `runtime` is a
/// failure while running (exit code 1).
public typealias TrainingError = DomainError<TrainingErrors>
public enum TrainingErrors: InputOrRuntimeDomain {}
