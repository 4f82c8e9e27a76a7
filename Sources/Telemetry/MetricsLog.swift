import Common
import Foundation

/// Appends one JSON object per line to a metrics file (JSONL), flushed line by line so a
/// killed run keeps everything it logged.
public final class MetricsLog {
    private let handle: FileHandle
    public let path: String

    public init(path: String) throws {
        self.path = path
        let url = URL(fileURLWithPath: path)
        let fm = FileManager.default
        do {
            try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            if !fm.fileExists(atPath: path) { _ = fm.createFile(atPath: path, contents: nil) }
            handle = try FileHandle(forWritingTo: url)
            try handle.seekToEnd()
        } catch {
            throw TelemetryError(.io, "cannot open metrics file \(path)", cause: error)
        }
    }

    deinit { try? handle.close() }

    public func append<T: Encodable>(_ record: T) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var line = try encoder.encode(record)
        line.append(0x0A)
        try handle.write(contentsOf: line)
    }

    /// Reads every record of a metrics file.
    public static func read<T: Decodable>(_ type: T.Type, path: String) throws -> [T] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return try text.split(separator: "\n").map { try JSONDecoder().decode(T.self, from: Data($0.utf8)) }
    }
}
