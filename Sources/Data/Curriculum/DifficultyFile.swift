import Common
import Foundation

/// The difficulty of every document of one token shard, beside it (`train-00000.difficulty` for
/// `train-00000.zts`), written by `zerotrain data prepare` when `difficulty:` names a source.
/// Little-endian: magic `ZTDIFF01` (8), documents D (8), CRC-32C of the values (4), zero (12),
/// then D float64 values in the shard's document order.
public enum DifficultyFile {
    public static let magic = Array("ZTDIFF01".utf8)
    static let headerBytes = 32

    /// The sidecar's path for a shard's.
    public static func path(forShard shard: String) -> String {
        (shard.hasSuffix(".zts") ? String(shard.dropLast(4)) : shard) + ".difficulty"
    }

    public static func write(_ values: [Double], to path: String) throws {
        var body = [UInt8]()
        body.reserveCapacity(values.count * 8)
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { body += $0 } }
        var header = magic
        withUnsafeBytes(of: UInt64(values.count).littleEndian) { header += $0 }
        withUnsafeBytes(of: body.withUnsafeBytes { CRC32C.checksum($0) }.littleEndian) { header += $0 }
        header += [UInt8](repeating: 0, count: headerBytes - header.count)
        guard FileManager.default.createFile(atPath: path, contents: Data(header + body)) else {
            throw DataError(.unreadable, "\(path): cannot write the difficulty file")
        }
    }

    /// The values of a shard's sidecar; `documents` is the shard's document count, which the file must match.
    public static func read(path: String, documents: Int) throws -> [Double] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataError(.unreadable, "\(path): no difficulty file (data.curriculum.difficulty: score needs `zerotrain data prepare` with difficulty: set)")
        }
        let bytes = [UInt8](data)
        guard bytes.count >= headerBytes, Array(bytes[0..<8]) == magic else { throw DataError(.malformed, "\(path): not a difficulty file (bad magic)") }
        func u64(_ at: Int) -> UInt64 { bytes[at..<(at + 8)].reversed().reduce(0) { $0 << 8 | UInt64($1) } }
        let count = Int(u64(8))
        guard count == documents else { throw DataError(.malformed, "\(path): holds \(count) values; its shard has \(documents) documents") }
        guard bytes.count == headerBytes + 8 * count else { throw DataError(.malformed, "\(path): size \(bytes.count) bytes; the header promises \(headerBytes + 8 * count) (truncated)") }
        let crc = UInt32(truncatingIfNeeded: u64(16) & 0xFFFF_FFFF)
        guard bytes[headerBytes...].withUnsafeBytes({ CRC32C.checksum($0) }) == crc else { throw DataError(.malformed, "\(path): checksum mismatch (corrupt file)") }
        return (0..<count).map { Double(bitPattern: u64(headerBytes + 8 * $0)) }
    }
}
