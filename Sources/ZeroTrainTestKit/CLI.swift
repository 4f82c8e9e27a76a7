import Bench
import Common
import Foundation

/// Runs the built `zerotrain` binary (next to the test bundle) as a real process, for the tests
/// that check the command line, the daemons and the local cluster.
public enum CLI {
    /// The package root (this file is Sources/ZeroTrainTestKit/CLI.swift).
    public static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    public static let fixtures = repo.appendingPathComponent("Tests/Fixtures")

    /// The binary the tests run: `$ZEROTRAIN_BIN` when set (e.g. one built before a change, to
    /// record golden runs with it), else `zerotrain` next to the test bundle.
    public static var binary: URL {
        RankProcess.executable(named: "zerotrain", environmentVariable: "ZEROTRAIN_BIN")
            ?? repo.appendingPathComponent(".build/release/zerotrain")
    }

    /// Processes started here that have exited, recorded by their termination handlers.
    private static let exited = Monitor<Set<ObjectIdentifier>>([])

    private static func launch(_ p: Process) throws {
        let id = ObjectIdentifier(p)
        exited.withLock { _ = $0.remove(id) }
        p.terminationHandler = { _ in exited.withLock { _ = $0.insert(id) } }
        try p.run()
    }

    /// Waits until all of `processes` (started by `start`) have exited, for at most `timeout`
    /// seconds; true if they all did. Woken by their exits, not by polling.
    @discardableResult
    public static func wait(for processes: [Process], timeout: Double) -> Bool {
        let ids = Set(processes.map(ObjectIdentifier.init))
        return exited.wait(until: .now + .milliseconds(Int(timeout * 1000))) { $0.isSuperset(of: ids) ? true : nil } ?? false
    }

    public struct Result: Sendable { public let status: Int32; public let stdout: String; public let stderr: String }

    /// Starts the binary (or another `executable`, such as a test process); the caller must wait or kill it.
    public static func start(_ args: [String], executable: URL? = nil, stdout: Any = FileHandle.nullDevice,
                             stderr: Any = FileHandle.nullDevice) throws -> Process {
        let p = Process()
        p.executableURL = executable ?? binary
        p.arguments = args
        p.currentDirectoryURL = repo
        p.standardOutput = stdout
        p.standardError = stderr
        try launch(p)
        return p
    }

    /// Runs to completion (killed after `timeout` seconds) and returns status and output.
    /// Output goes through files, so a chatty process never blocks on a full pipe.
    /// `environment` adds to (or overrides) this process's variables.
    public static func run(_ args: [String], timeout: Double = 120, environment: [String: String] = [:]) throws -> Result {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let outURL = dir.appendingPathComponent("stdout"), errURL = dir.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
        let p = Process()
        p.executableURL = binary
        p.arguments = args
        p.currentDirectoryURL = repo
        p.standardOutput = out
        p.standardError = err
        if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        try launch(p)
        if !wait(for: [p], timeout: timeout) { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        try out.close()
        try err.close()
        return Result(status: p.terminationStatus,
                      stdout: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
                      stderr: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "")
    }

    /// Output of another program (e.g. pgrep).
    public static func runTool(_ path: String, _ args: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    public static func tempDir() -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("zt-cli-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    public static func write(_ text: String, to url: URL) throws { try text.write(to: url, atomically: true, encoding: .utf8) }
}

/// Tests/Fixtures, found from this package's path so tests run from any working directory.
public enum Fixtures {
    public static let root = CLI.fixtures
    public static func reference(_ name: String) -> URL { root.appendingPathComponent("reference").appendingPathComponent(name) }
}
