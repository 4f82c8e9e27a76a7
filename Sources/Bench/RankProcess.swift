import Comm
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
            throw CommError(.transport, "could not start \(executable.path)", underlying: "\(error)")
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
            throw CommError(.closed, "rank process \(pid) does not take commands", underlying: "\(error)")
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
            throw CommError(.malformedFrame, "rank process \(pid) answered \(line)", underlying: "\(error)")
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
final class LineQueue: @unchecked Sendable {
    private let handle: FileHandle
    private let condition = NSCondition()
    private var lines: [String] = []
    private var buffer = Data()
    private var ended = false

    init(_ handle: FileHandle) { self.handle = handle }

    func start() {
        let thread = Thread { [self] in
            while true {
                let chunk = handle.availableData
                condition.lock()
                if chunk.isEmpty {
                    ended = true
                    condition.broadcast()
                    condition.unlock()
                    return
                }
                buffer.append(chunk)
                while let newline = buffer.firstIndex(of: 0x0A) {
                    lines.append(String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self))
                    buffer.removeSubrange(buffer.startIndex...newline)
                }
                condition.broadcast()
                condition.unlock()
            }
        }
        thread.start()
    }

    func next(deadline: ContinuousClock.Instant) -> String? {
        condition.lock()
        defer { condition.unlock() }
        while lines.isEmpty {
            if ended { return nil }
            let remaining = ContinuousClock.now.duration(to: deadline)
            guard remaining > .zero else { return nil }
            _ = condition.wait(until: Date(timeIntervalSinceNow: 0.05))
        }
        return lines.removeFirst()
    }
}
