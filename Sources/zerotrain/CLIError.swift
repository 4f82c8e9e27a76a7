import Common
import ArgumentParser
import Foundation

/// Turns any error into one line on stderr and the exit code: 2 for bad input (config, data,
/// files, arguments), 1 for failures while running — the error's `kind`; its message and causes
/// make the line.
enum CLIError {
    static func exit(_ error: any Error) -> ExitCode {
        let (message, code): (String, Int32)
        switch error {
        case let e as any ZeroTrainError: (message, code) = (e.description, e.kind == .badInput ? 2 : 1)
        case let e as ValidationError: (message, code) = (e.message, 2)
        default: (message, code) = ("\(error)", 1)
        }
        Console.error("zerotrain: error: " + message.split(whereSeparator: \.isNewline).joined(separator: " "))
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
