import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// POSIX file operations for checkpoint files: large writes and positioned reads straight from and
/// into caller memory (no `Data` copies), fsync of files and folders. Every failure is an I/O
/// error (`io`, a runtime failure) naming the path and keeping the system's reason as the cause.
enum FileIO {
    static func posixError(_ code: Int32 = errno) -> NSError { NSError(domain: NSPOSIXErrorDomain, code: Int(code)) }

    /// Opens `url` for writing, created or truncated.
    static func create(_ url: URL) throws -> Int32 {
        let fd = Glibc.open(url.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw CheckpointError(.io, "cannot create \(url.path)", cause: posixError()) }
        return fd
    }

    /// Opens `url` for reading; a missing file is `notFound` (bad input), any other failure `io`.
    static func openForReading(_ url: URL) throws -> Int32 {
        let fd = Glibc.open(url.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let e = errno
            if e == ENOENT { throw CheckpointError(.notFound, "cannot read \(url.path): no such file") }
            throw CheckpointError(.io, "cannot read \(url.path)", cause: posixError(e))
        }
        return fd
    }

    /// Writes all `count` bytes at file offset `offset` (partial writes and EINTR retried).
    static func pwriteAll(_ fd: Int32, _ bytes: UnsafeRawPointer, count: Int, offset: Int, path: String) throws {
        var done = 0
        while done < count {
            let n = Glibc.pwrite(fd, bytes + done, count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw CheckpointError(.io, "cannot write \(path)", cause: posixError())
            }
            done += n
        }
    }

    /// Linux's O_DIRECT (not exported to Swift): writes that go from the caller's memory to the
    /// device without a copy into the page cache.
    #if arch(x86_64)
    static let directFlag: Int32 = 0o40000
    #elseif arch(arm64)
    static let directFlag: Int32 = 0o200000
    #else
    static let directFlag: Int32 = 0
    #endif

    /// Direct I/O needs the file offset, the memory address and the length aligned to this.
    static let directAlignment = 4096

    /// A second descriptor of `url` (already created) for direct writes, or nil where the file
    /// system does not support them (tmpfs …): the caller then writes through the page cache.
    static func openDirect(_ url: URL) -> Int32? {
        guard directFlag != 0 else { return nil }
        let fd = Glibc.open(url.path, O_WRONLY | O_CLOEXEC | directFlag)
        return fd >= 0 ? fd : nil
    }

    /// Reads exactly `count` bytes at `offset`; a short read (the file shrank) is `corrupted`.
    static func preadAll(_ fd: Int32, _ bytes: UnsafeMutableRawPointer, count: Int, offset: Int, path: String) throws {
        var done = 0
        while done < count {
            let n = Glibc.pread(fd, bytes + done, count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw CheckpointError(.io, "cannot read \(path)", cause: posixError())
            }
            if n == 0 {
                throw CheckpointError(.corrupted, "\(path) ends at byte \(offset + done), expected at least \(offset + count) (truncated)")
            }
            done += n
        }
    }

    static func fsync(_ fd: Int32, path: String) throws {
        guard Glibc.fsync(fd) == 0 else { throw CheckpointError(.io, "cannot fsync \(path)", cause: posixError()) }
    }

    static func close(_ fd: Int32) { _ = Glibc.close(fd) }

    /// fsync of a folder, so the names created, renamed or removed in it are durable.
    static func fsyncDirectory(_ url: URL) throws {
        let fd = Glibc.open(url.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw CheckpointError(.io, "cannot open folder \(url.path)", cause: posixError()) }
        defer { close(fd) }
        try fsync(fd, path: url.path)
    }

    /// Creates `url` (and its parents); a folder that exists already, or that another rank creates
    /// at the same time, is fine.
    static func makeDirectory(_ url: URL) throws {
        if Glibc.mkdir(url.path, 0o755) == 0 || errno == EEXIST { return }
        do {
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        } catch {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue { return }
            throw CheckpointError(.io, "cannot create folder \(url.path)", cause: error)
        }
    }

    /// Writes `data` to `url` (created or truncated) and fsyncs it.
    static func writeDurably(_ data: Data, to url: URL) throws {
        let fd = try create(url)
        defer { close(fd) }
        try data.withUnsafeBytes { raw in
            if let base = raw.baseAddress { try pwriteAll(fd, base, count: raw.count, offset: 0, path: url.path) }
        }
        try fsync(fd, path: url.path)
    }

    /// Renames atomically (replacing a file at `to`).
    static func rename(_ from: URL, to: URL) throws {
        guard Glibc.rename(from.path, to.path) == 0 else {
            throw CheckpointError(.io, "cannot rename \(from.path) to \(to.path)", cause: posixError())
        }
    }

    /// The size of a regular file, nil when there is none at `url`.
    static func size(_ url: URL) -> Int? {
        let fd = Glibc.open(url.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        return Int(st.st_size)
    }
}
