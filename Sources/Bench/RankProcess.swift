import Comm
import Common
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A rank worker in a child process (`zerotrain bench comm --worker`, the test kit's
/// `ZeroTrainTestRank`), driven over JSON lines.
/// The child is SIGKILLed when this object goes away, so a failing test or benchmark never leaves
/// processes behind.
public final class RankProcess {
    public let process = Process()
    private let stdinPipe = Pipe()
    private let lines: LineQueue

    /// Starts `executable arguments...` with stdin/stdout piped and stderr inherited.
    ///
    /// Ignores SIGPIPE in this process (once): writing a command to a worker that was killed must
    /// be an error, not the death of the launcher.
    public init(executable: URL, arguments: [String]) throws {
        _ = Self.ignoreSIGPIPE
        let stdoutPipe = Pipe()
        process.executableURL = executable
        process.arguments = arguments
        process.standardInput = stdinPipe
        process.standardOutput = stdoutPipe
        lines = LineQueue(stdoutPipe.fileHandleForReading)
        do {
            try process.run()
        } catch {
            throw CommError(.transport, "could not start \(executable.path)", cause: error)
        }
        lines.start()
    }

    deinit { kill() }

    private static let ignoreSIGPIPE: Void = { _ = signal(SIGPIPE, SIG_IGN) }()

    public var pid: Int32 { process.processIdentifier }

    /// SIGKILL now and reap (idempotent).
    public func kill() {
        if process.isRunning {
            _ = Glibc.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? stdinPipe.fileHandleForWriting.close()
    }

    public func send(_ command: RankCommand) throws {
        var data = try JSONEncoder().encode(command)
        data.append(0x0A)
        do {
            try stdinPipe.fileHandleForWriting.write(contentsOf: data)
        } catch {
            throw CommError(.closed, "rank process \(pid) does not take commands", cause: error)
        }
    }

    /// The next reply line, or `.timeout` after `timeout`.
    public func reply(timeout: Duration) throws -> RankReply {
        guard let line = lines.next(deadline: .now + timeout) else {
            throw CommError(.timeout, "rank process \(pid) did not answer within \(timeout)")
        }
        do {
            return try JSONDecoder().decode(RankReply.self, from: Data(line.utf8))
        } catch {
            throw CommError(.malformedFrame, "rank process \(pid) answered \(line)", cause: error)
        }
    }

    /// `send` then `reply`.
    public func call(_ command: RankCommand, timeout: Duration) throws -> RankReply {
        try send(command)
        return try reply(timeout: timeout)
    }

    /// The executable `name`: `$environmentVariable` when set, else this process itself when it
    /// is `name`, else `name` next to the running executable or up to three folders above it (a
    /// test bundle lives in the build products directory, or a few levels below it).
    public static func executable(named name: String, environmentVariable: String? = nil) -> URL? {
        let fm = FileManager.default
        if let variable = environmentVariable, let env = ProcessInfo.processInfo.environment[variable],
           fm.isExecutableFile(atPath: env) {
            return URL(fileURLWithPath: env)
        }
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        if exe.lastPathComponent == name { return exe }
        var dir = exe.deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent(name)
            if fm.isExecutableFile(atPath: candidate.path) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return nil
    }
}

/// Lines read from a pipe on a dedicated thread (blocking reads stay off the cooperative pool).
final class LineQueue: Sendable {
    private struct Lines {
        var complete: [String] = []
        var ended = false
    }
    private let handle: FileHandle
    private let lines = Monitor(Lines())

    init(_ handle: FileHandle) { self.handle = handle }

    func start() {
        let handle = handle, lines = lines
        let thread = Thread {
            // The reader thread's own: bytes after the last newline.
            var buffer = Data()
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty {
                    lines.withLock { $0.ended = true }
                    return
                }
                buffer.append(chunk)
                var read: [String] = []
                while let newline = buffer.firstIndex(of: 0x0A) {
                    read.append(String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self))
                    buffer.removeSubrange(buffer.startIndex...newline)
                }
                if !read.isEmpty { lines.withLock { $0.complete += read } }
            }
        }
        thread.start()
    }

    /// The next line; nil when the pipe closed or `deadline` passed first.
    func next(deadline: ContinuousClock.Instant) -> String? {
        let line: String?? = lines.wait(until: deadline) { l in
            if !l.complete.isEmpty { return l.complete.removeFirst() }
            return l.ended ? .some(nil) : nil
        }
        return line ?? nil
    }
}
