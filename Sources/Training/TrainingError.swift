import Foundation
import Common

/// Errors of the Training module. `badInput` is the user's to fix (exit code 2); `runtime` is a
/// failure while running (exit code 1); `nonFiniteStreak` is a runtime failure too: too many
/// consecutive updates were skipped for a non-finite loss or gradient norm
/// (`fault_tolerance.max_skipped_steps`), which `TrainingRun` may answer by rolling back.
public typealias TrainingError = DomainError<TrainingErrors>

public enum TrainingErrors: ErrorDomain {
    public enum Code: String, Sendable, Equatable {
        case badInput, runtime, nonFiniteStreak
    }

    public static func kind(of code: Code) -> ErrorKind { code == .badInput ? .badInput : .runtime }
}
