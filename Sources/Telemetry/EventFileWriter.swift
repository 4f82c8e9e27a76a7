import Foundation

/// Writes a TensorBoard event file (`events.out.tfevents.<unix seconds>.<host>.<suffix>`) into a
/// directory: the file-version record first, then one `Summary` per step with one scalar per tag.
/// Each record goes to the kernel in a single `write`, so a killed process loses nothing it
/// logged and TensorBoard reads the file while it grows.
public final class EventFileWriter {
    public let path: String
    private let handle: FileHandle
    private let clock: () -> Double

    /// - Parameter suffix: tells the files of several processes in one directory apart (`coordinator`, `worker3`).
    public init(directory: URL, suffix: String, clock: @escaping () -> Double = { Date().timeIntervalSince1970 }) throws {
        self.clock = clock
        let now = clock()
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "localhost"
        var name = "events.out.tfevents." + String(format: "%010lld", Int64(now)) + ".\(host).\(suffix)"
        let fm = FileManager.default
        do {
            try fm.createDirectory(at: directory, withIntermediateDirectories: true)
            // A restarted process within the same second must not append to the old file.
            var n = 1
            while fm.fileExists(atPath: directory.appendingPathComponent(name).path) {
                n += 1
                name = "events.out.tfevents." + String(format: "%010lld", Int64(now)) + ".\(host).\(suffix)-\(n)"
            }
            path = directory.appendingPathComponent(name).path
            _ = fm.createFile(atPath: path, contents: nil)
            handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            try handle.write(contentsOf: TFRecord.frame(EventProto.fileVersion(wallTime: now)))
        } catch {
            throw TelemetryError(.io, "cannot write the TensorBoard event file in \(directory.path)", cause: error)
        }
    }

    deinit { try? handle.close() }

    /// One step's scalars (tags like `train/loss`); non-finite values are written as they are
    /// (TensorBoard shows NaN and ±inf), values outside Float's range become ±inf.
    public func scalars(step: Int, _ values: [(tag: String, value: Double)]) throws {
        guard !values.isEmpty else { return }
        let record = EventProto.scalars(wallTime: clock(), step: Int64(step), values.map { ($0.tag, Float($0.value)) })
        do {
            try handle.write(contentsOf: TFRecord.frame(record))
        } catch {
            throw TelemetryError(.io, "cannot write to \(path)", cause: error)
        }
    }

    /// Every event of a file, both checksums of every record checked (tests, `zerotrain` tools).
    public static func read(path: String) throws -> [EventProto.Event] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TelemetryError(.io, "cannot read \(path)")
        }
        do {
            return try TFRecord.records(Array(data)).map { try EventProto.decode($0) }
        } catch {
            throw TelemetryError(.io, "\(path) is not a valid event file", cause: error)
        }
    }
}
