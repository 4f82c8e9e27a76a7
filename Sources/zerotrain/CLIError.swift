import Common
import ArgumentParser
import Checkpoint
import Cluster
import Data
import Foundation
import Model
import Training
import Zero

/// Turns any error into one line on stderr and the exit code: 2 for bad input (config, data,
/// files, arguments), 1 for failures while running.
enum CLIError {
    static func exit(_ error: Error) -> ExitCode {
        let (message, code): (String, Int32)
        switch error {
        case let e as ConfigError: (message, code) = (e.message, 2)
        case let e as ModelError: (message, code) = (e.message, 2)
        case let e as DataError: (message, code) = (e.message, 2)
        case let e as CheckpointError: (message, code) = (e.description, e.kind == .badInput ? 2 : 1)
        case let e as TrainingError: (message, code) = (e.message, e.code == .badInput ? 2 : 1)
        case let e as ClusterError: (message, code) = (e.message, e.code == .badInput ? 2 : 1)
        case let e as ZeroError: (message, code) = (e.message, e.code == .badInput ? 2 : 1)
        default: (message, code) = ("\(error)", 1)
        }
        Console.error("zerotrain: error: \(message)")
        return ExitCode(code)
    }
}

/// Unbuffered, line-at-a-time output (safe from any thread).
enum Console {
    static func out(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    static func error(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}

/// Runs `body`, mapping thrown errors to a one-line message and exit code.
func runReportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as ExitCode {
        throw e
    } catch {
        throw CLIError.exit(error)
    }
}

/// `runReportingErrors` for async commands.
func runReportingErrors(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let e as ExitCode {
        throw e
    } catch {
        throw CLIError.exit(error)
    }
}
