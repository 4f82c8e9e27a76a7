import Common

/// Errors of the Evaluation module: a reference file that is missing, malformed or lacks a
/// field, or an unknown metric option (the user's), and failures while evaluating (the run's).
public typealias EvaluationError = DomainError<EvaluationErrors>
public enum EvaluationErrors: InputOrRuntimeDomain {
    public typealias Code = InputOrRuntime
}
