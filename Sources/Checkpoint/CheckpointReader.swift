import Common
import Foundation
import Model
import Synchronization

/// Reads a format-2 checkpoint (docs/checkpoint-format.md): the manifest, and any element range of
/// the flat buffers from the shard files that hold it, whatever the number of ranks that wrote
/// it — resharding is just reading another range. Every byte read is checked against the block
/// checksums of the manifest. One reader may be shared by threads (each rank of a restore reads
/// its own range): `read` keeps no state but the byte counter.
public final class CheckpointReader<Config: Codable & Sendable>: Sendable {
    /// The step folder.
    public let folder: URL
    public let manifest: CheckpointManifest<Config>
    /// Ψ = sum of the shards' counts.
    public let elementCount: Int
    /// Shard files by start element.
    private let shards: [CheckpointFile]
    private let readCounter = Atomic<Int>(0)

    /// Opens a checkpoint: `url` is a step folder with manifest.json, or a checkpoint directory
    /// whose `latest` names one. Reads and decodes the manifest, checks the format version, checks
    /// every listed file exists with its listed size.
    public init(_ url: URL) throws {
        folder = try CheckpointStore.resolve(url)
        let path = folder.appendingPathComponent(CheckpointStore.manifestFile)
        manifest = try CheckpointManifest<Config>.decode(try CheckpointStore.readData(path), path: path.path)
        for file in manifest.files {
            let url = folder.appendingPathComponent(file.name)
            guard let size = FileIO.size(url) else {
                // Something is there but cannot be read as a file (a directory, no permission): an I/O failure.
                if FileManager.default.fileExists(atPath: url.path) {
                    throw CheckpointError(.io, "cannot read \(url.path): not a readable regular file")
                }
                throw CheckpointError(.incomplete, "\(url.path) is missing (\(path.path) lists it)")
            }
            guard size == file.bytes else { throw CheckpointStore.sizeMismatch(url, size: size, expected: file.bytes) }
        }
        shards = manifest.shards
        elementCount = manifest.elementCount
    }

    /// Bytes read so far by `read` (whole blocks: a read verifies every block it touches).
    public var bytesRead: Int { readCounter.load(ordering: .relaxed) }

    /// Elements `elements` (of 0..<elementCount) of one flat buffer, into `out[0 ..< elements.count]`,
    /// assembled from the shard files overlapping it, reading only their byte ranges (pread), and
    /// verifying the CRC-32C of every block those bytes fall in.
    public func read(_ tensor: ShardTensor, elements: Range<Int>, into out: UnsafeMutablePointer<Float>) throws {
        guard elements.lowerBound >= 0, elements.upperBound <= elementCount else {
            throw CheckpointError(.invalidArgument, "elements \(elements) lie outside the \(elementCount) elements of \(folder.path)")
        }
        guard !elements.isEmpty else { return }
        for shard in shards {
            let start = shard.start!, end = start + shard.count!
            guard start < elements.upperBound, end > elements.lowerBound else { continue }
            let a = max(elements.lowerBound, start) - start, b = min(elements.upperBound, end) - start
            let base = shard.dataOffsets![tensor.rawValue]!
            try readVerified(shard, bytes: (base + 4 * a)..<(base + 4 * b),
                             into: UnsafeMutableRawPointer(out + (start + a - elements.lowerBound)))
        }
    }

    /// Bytes `range` of a shard file into `dst`: every block the range touches is read whole
    /// (the range's part straight into `dst`, the rest into a scratch block) and checked.
    private func readVerified(_ file: CheckpointFile, bytes range: Range<Int>, into dst: UnsafeMutableRawPointer) throws {
        let url = folder.appendingPathComponent(file.name)
        let fd = try FileIO.openForReading(url)
        defer { FileIO.close(fd) }
        let blockBytes = file.blockBytes!, crcs = file.blockCRC32C!
        var scratch: UnsafeMutableRawPointer?
        defer { scratch?.deallocate() }
        var k = range.lowerBound / blockBytes, copied = 0
        while k * blockBytes < range.upperBound {
            let blockStart = k * blockBytes, blockEnd = min(blockStart + blockBytes, file.bytes)
            let mid = max(range.lowerBound, blockStart)..<min(range.upperBound, blockEnd)
            var crc: UInt32 = 0
            func piece(_ bytes: Range<Int>, into p: UnsafeMutableRawPointer) throws {
                guard !bytes.isEmpty else { return }
                try FileIO.preadAll(fd, p, count: bytes.count, offset: bytes.lowerBound, path: url.path)
                crc = CRC32C.checksum(UnsafeRawBufferPointer(start: p, count: bytes.count), continuing: crc)
            }
            if blockStart < mid.lowerBound || mid.upperBound < blockEnd, scratch == nil {
                scratch = UnsafeMutableRawPointer.allocate(byteCount: blockBytes, alignment: 64)
            }
            try piece(blockStart..<mid.lowerBound, into: scratch ?? dst)
            try piece(mid, into: dst + copied)
            try piece(mid.upperBound..<blockEnd, into: scratch ?? dst)
            readCounter.add(blockEnd - blockStart, ordering: .relaxed)
            guard crc == crcs[k] else { throw Self.mismatch(url, blockStart..<blockEnd, expected: crcs[k], found: crc) }
            copied += mid.count
            k += 1
        }
    }

    /// Reads every listed file whole and checks its CRC-32C and block checksums, and that each
    /// shard's own header agrees with the manifest; throws on the first mismatch.
    public func verify() throws {
        for file in manifest.files {
            let url = folder.appendingPathComponent(file.name)
            guard let size = FileIO.size(url) else { throw CheckpointError(.incomplete, "\(url.path) is missing (the manifest lists it)") }
            guard size == file.bytes else { throw CheckpointStore.sizeMismatch(url, size: size, expected: file.bytes) }
            let fd = try FileIO.openForReading(url)
            defer { FileIO.close(fd) }
            // Shard files block by block; other files (config.json) in pieces of the same size.
            let blockBytes = file.blockBytes ?? CheckpointStore.blockBytes
            let scratch = UnsafeMutableRawPointer.allocate(byteCount: max(1, min(blockBytes, file.bytes)), alignment: 64)
            defer { scratch.deallocate() }
            var whole: UInt32 = 0, offset = 0, k = 0
            while offset < file.bytes {
                let n = min(blockBytes, file.bytes - offset)
                try FileIO.preadAll(fd, scratch, count: n, offset: offset, path: url.path)
                let crc = CRC32C.checksum(UnsafeRawBufferPointer(start: scratch, count: n))
                if let crcs = file.blockCRC32C, k < crcs.count, crc != crcs[k] {
                    throw Self.mismatch(url, offset..<(offset + n), expected: crcs[k], found: crc)
                }
                whole = CRC32C.combine(whole, crc, lengthB: n)
                offset += n
                k += 1
            }
            guard whole == file.crc32c else { throw Self.mismatch(url, 0..<file.bytes, expected: file.crc32c, found: whole) }
            if file.isShard { try checkHeader(fd, of: file, path: url.path) }
        }
    }

    /// A shard's safetensors header must describe the tensors where the manifest says they are.
    private func checkHeader(_ fd: Int32, of file: CheckpointFile, path: String) throws {
        func bad(_ why: String) -> CheckpointError { CheckpointError(.corrupted, "\(path): the file's header disagrees with the manifest: \(why)") }
        guard file.bytes >= 8 else { throw bad("no header") }
        var length: UInt64 = 0
        try FileIO.preadAll(fd, &length, count: 8, offset: 0, path: path)
        let n = Int(clamping: UInt64(littleEndian: length))
        guard n >= 2, n <= file.bytes - 8 else { throw bad("header length \(n) does not fit the file") }
        var bytes = [UInt8](repeating: 0, count: n)
        try bytes.withUnsafeMutableBytes { try FileIO.preadAll(fd, $0.baseAddress!, count: n, offset: 8, path: path) }
        guard let json = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
            throw bad("the header is not a JSON object")
        }
        let count = file.count!
        for t in ShardTensor.allCases {
            guard let entry = json[t.rawValue] as? [String: Any], entry["dtype"] as? String == "F32",
                  (entry["shape"] as? [Any])?.compactMap({ ($0 as? NSNumber)?.intValue }) == [count],
                  let offsets = (entry["data_offsets"] as? [Any])?.compactMap({ ($0 as? NSNumber)?.intValue }), offsets.count == 2,
                  8 + n + offsets[0] == file.dataOffsets![t.rawValue], offsets[1] - offsets[0] == 4 * count else {
                throw bad("tensor \(t.rawValue) is not F32 [\(count)] at byte \(file.dataOffsets![t.rawValue]!)")
            }
        }
        let metadata = json["__metadata__"] as? [String: Any]
        for (key, value) in [("rank", file.rank!), ("start", file.start!), ("count", count), ("step", manifest.step)] {
            guard metadata?[key] as? String == "\(value)" else { throw bad("__metadata__.\(key) is not \(value)") }
        }
    }

    /// The manifest's tensors must be `table`'s (names, shapes, offsets) and Ψ its count.
    public func requireLayout(of table: ParameterTable) throws {
        let expected = TensorLayout.layouts(of: table)
        guard manifest.tensors != expected || elementCount != table.count else { return }
        let first = zip(manifest.tensors, expected).first { $0 != $1 }
        let detail = first.map { "first difference: \($0.name) \($0.shape) at \($0.offset) in the checkpoint, \($1.name) \($1.shape) at \($1.offset) in the model" }
            ?? "\(manifest.tensors.count) tensors and \(elementCount) elements in the checkpoint, \(expected.count) and \(table.count) in the model"
        throw CheckpointError(.incompatible, "\(folder.path) holds a model of another layout (\(detail))")
    }

    static func mismatch(_ url: URL, _ bytes: Range<Int>, expected: UInt32, found: UInt32) -> CheckpointError {
        CheckpointError(.corrupted, "\(url.path): CRC32C mismatch in bytes \(bytes.lowerBound)..<\(bytes.upperBound): expected \(hex(expected)), found \(hex(found))")
    }

    static func hex(_ v: UInt32) -> String { String(format: "0x%08x", v) }
}
