import Common
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A token shard file (`.zts`), little-endian:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | magic `ZTSHARD1` |
/// | 8 | 4 | version (1) |
/// | 12 | 4 | bytes per token: 2 (uint16) or 4 (uint32) |
/// | 16 | 8 | documents D |
/// | 24 | 8 | tokens N |
/// | 32 | 4 | vocabulary size |
/// | 36 | 4 | EOS id (0xFFFFFFFF: none) |
/// | 40 | 4 | CRC32C of the index and the tokens |
/// | 44 | 20 | zero |
/// | 64 | 8·(D+1) | document index: token offsets; document d is tokens [off[d], off[d+1]), its EOS included |
/// | 64 + 8·(D+1) | N·dtype | tokens |
///
/// Documents are packed back to back, each followed by EOS, so training windows cross document
/// boundaries at a separator.
public enum TokenShardFormat {
    public static let magic = Array("ZTSHARD1".utf8)
    public static let version: UInt32 = 1
    public static let headerBytes = 64
    /// The token width for a vocabulary: uint16 when every id fits.
    public static func bytesPerToken(vocabularySize: Int) -> Int { vocabularySize <= 65_536 ? 2 : 4 }
}

/// Writes one shard: tokens go to a side file as they come (bounded memory: the index is 8 bytes
/// per document), and `finish` writes header + index + tokens and renames into place.
public final class TokenShardWriter {
    public let path: String
    public let vocabularySize: Int
    public let eos: Int32?
    public let bytesPerToken: Int
    private let body: FileHandle
    private let bodyPath: String
    private var offsets: [UInt64] = [0]
    private var crcTokens: UInt32 = 0
    private var buffer: [UInt8] = []
    public private(set) var tokenCount = 0
    public var documentCount: Int { offsets.count - 1 }

    public init(path: String, vocabularySize: Int, eos: Int32?) throws {
        self.path = path
        self.vocabularySize = vocabularySize
        self.eos = eos
        bytesPerToken = TokenShardFormat.bytesPerToken(vocabularySize: vocabularySize)
        bodyPath = path + ".tokens.tmp"
        guard FileManager.default.createFile(atPath: bodyPath, contents: nil), let h = FileHandle(forWritingAtPath: bodyPath) else {
            throw DataError(.unreadable, "\(path): cannot create the shard")
        }
        body = h
    }

    /// Appends one document (and EOS after it).
    public func append(document tokens: [Int32]) throws {
        for t in tokens { put(t) }
        if let eos { put(eos) }
        offsets.append(UInt64(tokenCount))
        if buffer.count >= 1 << 20 { try flush() }
    }

    @inline(__always) private func put(_ t: Int32) {
        precondition(t >= 0 && Int(t) < vocabularySize, "token id out of the vocabulary")
        let v = UInt32(t)
        buffer.append(UInt8(truncatingIfNeeded: v))
        buffer.append(UInt8(truncatingIfNeeded: v >> 8))
        if bytesPerToken == 4 {
            buffer.append(UInt8(truncatingIfNeeded: v >> 16))
            buffer.append(UInt8(truncatingIfNeeded: v >> 24))
        }
        tokenCount += 1
    }

    private func flush() throws {
        crcTokens = buffer.withUnsafeBytes { CRC32C.checksum($0, continuing: crcTokens) }
        try body.write(contentsOf: buffer)
        buffer.removeAll(keepingCapacity: true)
    }

    /// Writes the shard and removes the side file.
    public func finish() throws {
        try flush()
        try body.close()
        var index = [UInt8]()
        index.reserveCapacity(offsets.count * 8)
        for o in offsets { withUnsafeBytes(of: o.littleEndian) { index += $0 } }
        let crcIndex = index.withUnsafeBytes { CRC32C.checksum($0) }
        let tokenBytes = tokenCount * bytesPerToken
        let crc = CRC32C.combine(crcIndex, crcTokens, lengthB: tokenBytes)
        var header = TokenShardFormat.magic
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { header += $0 } }
        put(TokenShardFormat.version)
        put(UInt32(bytesPerToken))
        put(UInt64(documentCount))
        put(UInt64(tokenCount))
        put(UInt32(vocabularySize))
        put(eos.map { UInt32($0) } ?? UInt32.max)
        put(crc)
        header += [UInt8](repeating: 0, count: TokenShardFormat.headerBytes - header.count)
        let tmp = path + ".tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: Data(header + index)), let out = FileHandle(forWritingAtPath: tmp),
              let input = FileHandle(forReadingAtPath: bodyPath) else {
            throw DataError(.unreadable, "\(path): cannot write the shard")
        }
        try out.seekToEnd()
        while let chunk = try input.read(upToCount: 4 << 20), !chunk.isEmpty { try out.write(contentsOf: chunk) }
        try out.close()
        try input.close()
        try? FileManager.default.removeItem(atPath: bodyPath)
        guard rename(tmp, path) == 0 else { throw DataError(.unreadable, "\(path): cannot rename the shard into place") }
    }
}

/// A shard, memory-mapped read-only: header checked, checksum verified on open.
public final class TokenShard: @unchecked Sendable {  // Safe: the mapping is read-only and never changes.
    public let path: String
    public let documentCount: Int
    public let tokenCount: Int
    public let vocabularySize: Int
    public let eos: Int32?
    public let bytesPerToken: Int
    private let base: UnsafeRawPointer
    private let length: Int

    public init(path: String, verify: Bool = true) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw DataError(.unreadable, "\(path): cannot open the token shard") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw DataError(.unreadable, "\(path): cannot stat the token shard") }
        let len = Int(st.st_size)
        guard len >= TokenShardFormat.headerBytes else { throw DataError(.malformed, "\(path): not a token shard (too short)") }
        guard let p = mmap(nil, len, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw DataError(.unreadable, "\(path): cannot map the token shard")
        }
        let b = UnsafeRawPointer(p)
        func u32(_ at: Int) -> UInt32 { UInt32(littleEndian: b.loadUnaligned(fromByteOffset: at, as: UInt32.self)) }
        func u64(_ at: Int) -> UInt64 { UInt64(littleEndian: b.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
        func fail(_ why: String) -> DataError {
            munmap(p, len)
            return DataError(.malformed, "\(path): \(why)")
        }
        guard memcmp(b, TokenShardFormat.magic, 8) == 0 else { throw fail("not a token shard (bad magic)") }
        guard u32(8) == TokenShardFormat.version else { throw fail("token shard version \(u32(8)); this build reads version 1") }
        let width = Int(u32(12))
        guard width == 2 || width == 4 else { throw fail("bytes per token \(width); must be 2 or 4") }
        let docs = Int(u64(16)), toks = Int(u64(24))
        guard docs < len, toks < len else { throw fail("counts larger than the file (corrupt header)") }
        let expected = TokenShardFormat.headerBytes + 8 * (docs + 1) + toks * width
        guard expected == len else { throw fail("size \(len) bytes; the header promises \(expected) (truncated or corrupt)") }
        if verify {
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(start: b + TokenShardFormat.headerBytes, count: len - TokenShardFormat.headerBytes))
            guard crc == u32(40) else { throw fail("checksum mismatch (corrupt shard)") }
        }
        base = b
        length = len
        bytesPerToken = width
        documentCount = docs
        tokenCount = toks
        vocabularySize = Int(u32(32))
        eos = u32(36) == UInt32.max ? nil : Int32(u32(36))
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), length) }

    private var tokensStart: Int { TokenShardFormat.headerBytes + 8 * (documentCount + 1) }

    /// Token offset of document d's start (d ≤ documentCount).
    public func offset(document d: Int) -> Int {
        Int(UInt64(littleEndian: base.loadUnaligned(fromByteOffset: TokenShardFormat.headerBytes + 8 * d, as: UInt64.self)))
    }

    public func token(_ i: Int) -> Int32 {
        bytesPerToken == 2 ? Int32(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: tokensStart + 2 * i, as: UInt16.self)))
            : Int32(bitPattern: UInt32(littleEndian: base.loadUnaligned(fromByteOffset: tokensStart + 4 * i, as: UInt32.self)))
    }

    /// Tokens [range) widened to Int32.
    public func tokens(_ range: Range<Int>) -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(range.count)
        append(range, to: &out)
        return out
    }

    /// Tokens [range) widened to Int32, appended to `out`.
    public func append(_ range: Range<Int>, to out: inout [Int32]) {
        let start = base + tokensStart
        if bytesPerToken == 2 {
            let p = start.assumingMemoryBound(to: UInt16.self)
            for i in range { out.append(Int32(UInt16(littleEndian: p[i]))) }
        } else {
            let p = start.assumingMemoryBound(to: UInt32.self)
            for i in range { out.append(Int32(bitPattern: UInt32(littleEndian: p[i]))) }
        }
    }

    public func document(_ d: Int) -> [Int32] { tokens(offset(document: d)..<offset(document: d + 1)) }

    /// The shard files of a path: the file itself, or a directory's `<split>-*.zts`, sorted.
    public static func files(at path: String, split: String) throws -> [String] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { throw DataError(.unreadable, "\(path): no such token shard or directory") }
        if !isDir.boolValue { return [path] }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        let found = names.filter { $0.hasPrefix(split + "-") && $0.hasSuffix(".zts") }.sorted().map { (path as NSString).appendingPathComponent($0) }
        guard !found.isEmpty else { throw DataError(.empty, "\(path): no \(split)-*.zts token shards") }
        return found
    }
}
