import Common
import Foundation

/// A worker that cannot see the job's token file fetches it from the coordinator over the control
/// plane, in chunks (`fetch` → `chunk`): each chunk is checked by its CRC-32C before it is
/// appended to the cache in the worker's run directory, and a fetch that stopped (a restarted
/// worker) resumes after the bytes already cached. Pure: the worker's loop carries the actions out.
public struct TokenFetch: Sendable, Equatable {
    public enum Action: Sendable, Equatable {
        /// Send this request to the coordinator.
        case request(ControlMessage)
        /// Append these verified bytes to the cache (they start at `offset`).
        case append(offset: Int, Data)
        /// Every byte is cached: the file is complete.
        case complete
        case fail(String)
    }

    /// Bytes per chunk (raw; base64 on the wire).
    public static let chunkBytes = 1 << 20
    /// A chunk whose checksum fails is asked for again this many times.
    public static let retries = 3

    /// The file's path on the coordinator's host.
    public let path: String
    public private(set) var cached: Int
    public private(set) var size: Int?
    private var failures = 0

    public init(path: String, cachedBytes: Int) {
        self.path = path
        self.cached = cachedBytes
    }

    public mutating func start() -> [Action] { [request()] }

    /// A `chunk` message from the coordinator.
    public mutating func received(_ m: ControlMessage) -> [Action] {
        guard m.kind == .chunk, m.path == path else { return [] }
        if let reason = m.reason { return [.fail("the coordinator cannot send \(path): \(reason)")] }
        guard let offset = m.offset, let total = m.size, let data = m.data, let crc = m.crc else {
            return [.fail("a malformed chunk of \(path)")]
        }
        // A stale answer (to a repeated request): ignored.
        guard offset == cached else { return [] }
        if size == nil { size = total }
        guard total == size, offset + data.count <= total else { return [.fail("\(path) changed size on the coordinator while it was fetched")] }
        guard CRC32C.checksum(Array(data)) == crc else {
            failures += 1
            return failures > Self.retries ? [.fail("chunk at byte \(offset) of \(path) failed its CRC-32C \(failures) times")] : [request()]
        }
        failures = 0
        cached += data.count
        let done = cached == total
        if !done && data.isEmpty { return [.fail("an empty chunk at byte \(offset) of \(path), short of its \(total) bytes")] }
        return [.append(offset: offset, data)] + (done ? [.complete] : [request()])
    }

    private func request() -> Action {
        var m = ControlMessage(.fetch)
        m.path = path
        m.offset = cached
        m.length = Self.chunkBytes
        return .request(m)
    }

    /// The coordinator's answer to a `fetch`: bytes `offset ..< offset+length` of `file` (which
    /// must be the job's token file), or a `chunk` with a reason.
    public static func serve(_ request: ControlMessage, files: [String]) -> ControlMessage {
        var c = ControlMessage(.chunk)
        c.path = request.path
        guard let file = request.path, files.contains(file) else {
            c.reason = "only the job's data files are served"
            return c
        }
        guard let offset = request.offset, offset >= 0, let length = request.length, length > 0, let handle = FileHandle(forReadingAtPath: file) else {
            c.reason = "cannot read it (or a malformed request)"
            return c
        }
        defer { try? handle.close() }
        do {
            let total = Int(try handle.seekToEnd())
            try handle.seek(toOffset: UInt64(min(offset, total)))
            let data = try handle.read(upToCount: min(length, chunkBytes)) ?? Data()
            c.offset = offset
            c.size = total
            c.data = data
            c.crc = CRC32C.checksum(Array(data))
        } catch {
            c.reason = "cannot read it: \(error)"
        }
        return c
    }
}
