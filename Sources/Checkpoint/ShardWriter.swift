import Common
import Foundation

#if !_endian(little)
#error("shard files are little-endian F32 and are written straight from memory: this needs a little-endian host")
#endif

/// Writes one rank's shard of a checkpoint: a safetensors file with three 1-D F32 tensors
/// (`parameters`, `exp_avg`, `exp_avg_sq`, each the rank's `count` elements) and metadata naming
/// the rank, its element range and the step. The tensors go from the caller's memory straight to
/// the file in writes of at most `CheckpointStore.blockBytes`; the CRC-32C of each block of the
/// file is computed on the way (hardware CRC, one extra read of bytes that are in cache anyway)
/// and the whole file's CRC is combined from the blocks', so no byte is touched twice more.
public enum ShardWriter {
    /// "shard-00001-of-00002.safetensors".
    public static func fileName(rank: Int, worldSize: Int) -> String {
        String(format: "shard-%05d-of-%05d.safetensors", rank, worldSize)
    }

    /// Writes rank `rank`'s shard file into `folder` (created if needed, concurrently with other
    /// ranks: EEXIST is fine), fsyncs it and returns its manifest entry. The three buffers are
    /// the rank's slice `start ..< start + count` of the flat parameter buffer and of AdamW's moments.
    public static func write(into folder: URL, rank: Int, worldSize: Int, start: Int, step: Int, seed: UInt64,
                             parameters: UnsafeBufferPointer<Float>, expAvg: UnsafeBufferPointer<Float>,
                             expAvgSq: UnsafeBufferPointer<Float>) throws -> CheckpointFile {
        let count = parameters.count
        precondition(expAvg.count == count && expAvgSq.count == count, "a shard's three buffers must have the same count")
        precondition(rank >= 0 && rank < worldSize && start >= 0, "rank \(rank) of \(worldSize), start \(start)")
        try FileIO.makeDirectory(folder)
        let name = fileName(rank: rank, worldSize: worldSize)
        let url = folder.appendingPathComponent(name)
        let metadata: [String: String] = [
            "format": "zerotrain-shard", "rank": "\(rank)", "world_size": "\(worldSize)", "start": "\(start)",
            "count": "\(count)", "step": "\(step)",
            "rng": "philox4x32-10 counter-based: every random number derives from (seed, step, micro-batch); seed \(seed), step \(step)",
        ]
        let tensors: [(ShardTensor, UnsafeBufferPointer<Float>)] = [(.parameters, parameters), (.expAvg, expAvg), (.expAvgSq, expAvgSq)]
        let header = Self.header(metadata: metadata, tensors: tensors.map { ($0.0.rawValue, $0.1.count) })
        let dataStart = header.count
        var dataOffsets: [String: Int] = [:]
        for (i, t) in tensors.enumerated() { dataOffsets[t.0.rawValue] = dataStart + 4 * count * i }

        let fd = try FileIO.create(url)
        defer { FileIO.close(fd) }
        let direct = FileIO.openDirect(url)
        defer { if let direct { FileIO.close(direct) } }
        var stream = BlockStream(fd: fd, direct: direct, path: url.path, blockBytes: CheckpointStore.blockBytes)
        try header.withUnsafeBytes { try stream.emit($0.baseAddress!, count: $0.count) }
        if count > 0, expAvg.baseAddress == parameters.baseAddress! + count, expAvgSq.baseAddress == expAvg.baseAddress! + count {
            // One region in memory (a checkpoint snapshot): written as one, so that its writes stay
            // aligned for direct I/O across the tensors' boundaries.
            try stream.emit(UnsafeRawPointer(parameters.baseAddress!), count: 12 * count)
        } else {
            for (_, buffer) in tensors where buffer.count > 0 {
                try stream.emit(UnsafeRawPointer(buffer.baseAddress!), count: 4 * buffer.count)
            }
        }
        stream.finish()
        try FileIO.fsync(fd, path: url.path)
        return CheckpointFile(name: name, rank: rank, start: start, count: count, bytes: stream.offset, crc32c: stream.fileCRC,
                              blockBytes: CheckpointStore.blockBytes, blockCRC32C: stream.blockCRCs, dataOffsets: dataOffsets)
    }

    /// The 8-byte length and the JSON header, padded with spaces so the data starts at a multiple
    /// of 4096 bytes (safetensors allows trailing spaces; 4096 keeps the data aligned for direct I/O).
    static func header(metadata: [String: String], tensors: [(name: String, count: Int)]) -> [UInt8] {
        func quoted(_ s: String) -> String {
            var out = "\""
            for c in s.unicodeScalars {
                switch c {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                default: if c.value < 0x20 { out += String(format: "\\u%04x", c.value) } else { out.unicodeScalars.append(c) }
                }
            }
            return out + "\""
        }
        var json = "{\"__metadata__\":{"
        json += metadata.keys.sorted().map { "\(quoted($0)):\(quoted(metadata[$0]!))" }.joined(separator: ",") + "}"
        var offset = 0
        for t in tensors {
            json += ",\(quoted(t.name)):{\"dtype\":\"F32\",\"shape\":[\(t.count)],\"data_offsets\":[\(offset),\(offset + 4 * t.count)]}"
            offset += 4 * t.count
        }
        json += "}"
        var bytes = Array(json.utf8)
        while (8 + bytes.count) % FileIO.directAlignment != 0 { bytes.append(0x20) }
        var out: [UInt8] = []
        out.reserveCapacity(8 + bytes.count)
        withUnsafeBytes(of: UInt64(bytes.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: bytes)
        return out
    }
}

/// Sequential writes to a file, cut at the block grid, with the CRC-32C of every block. Pieces
/// whose offset, address and length are aligned go through `direct` (O_DIRECT: no copy into the
/// page cache, a tenth of the kernel's CPU time here), the rest through `fd`.
struct BlockStream {
    let fd: Int32
    private(set) var direct: Int32?
    let path: String
    let blockBytes: Int
    private(set) var offset = 0
    private(set) var blockCRCs: [UInt32] = []
    private(set) var fileCRC: UInt32 = 0
    private var blockCRC: UInt32 = 0
    private var blockFill = 0

    init(fd: Int32, direct: Int32? = nil, path: String, blockBytes: Int) {
        self.fd = fd
        self.direct = direct
        self.path = path
        self.blockBytes = blockBytes
    }

    mutating func emit(_ bytes: UnsafeRawPointer, count: Int) throws {
        var p = bytes, n = count
        while n > 0 {
            let piece = min(n, blockBytes - blockFill)
            blockCRC = CRC32C.checksum(UnsafeRawBufferPointer(start: p, count: piece), continuing: blockCRC)
            try write(p, count: piece)
            blockFill += piece
            offset += piece
            if blockFill == blockBytes { closeBlock() }
            p += piece
            n -= piece
        }
    }

    /// Writes at `offset`: the aligned part directly when possible, the rest through the page cache.
    private mutating func write(_ p: UnsafeRawPointer, count: Int) throws {
        let a = FileIO.directAlignment
        var head = 0
        if let direct, offset % a == 0, Int(bitPattern: p) % a == 0 {
            head = count / a * a
            if head > 0 {
                do {
                    try FileIO.pwriteAll(direct, p, count: head, offset: offset, path: path)
                } catch {
                    // The file system refused direct I/O for this write: the page cache it is.
                    self.direct = nil
                    head = 0
                }
            }
        }
        if head < count { try FileIO.pwriteAll(fd, p + head, count: count - head, offset: offset + head, path: path) }
    }

    /// Closes the last, partial block.
    mutating func finish() { if blockFill > 0 { closeBlock() } }

    private mutating func closeBlock() {
        blockCRCs.append(blockCRC)
        fileCRC = CRC32C.combine(fileCRC, blockCRC, lengthB: blockFill)
        blockCRC = 0
        blockFill = 0
    }
}
