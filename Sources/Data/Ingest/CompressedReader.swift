import CZlib
import CZstd
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// How an input file is compressed, from its name (and, for plain names, its first bytes).
public enum Compression: String, Sendable {
    case none, gzip, zstd

    /// Extensions of formats we recognise but do not read: an error, never a silent garbage read.
    static let unsupported = ["bz2", "xz", "lz4", "lzma", "br", "zip", "7z", "z", "lzo", "sz"]

    /// The compression of `path`: `.gz` is gzip, `.zst`/`.zstd` zstd, a known other format an error.
    /// A file with a plain name whose content starts with a gzip or zstd magic number is read as such.
    public static func of(path: String, head: [UInt8]) throws -> Compression {
        let ext = (path as NSString).pathExtension.lowercased()
        switch ext {
        case "gz", "gzip": return .gzip
        case "zst", "zstd": return .zstd
        default:
            if unsupported.contains(ext) {
                throw DataError(.malformed, "\(path): unknown compression format .\(ext) (ZeroTrain reads plain, .gz and .zst files)")
            }
            if head.count >= 2 && head[0] == 0x1F && head[1] == 0x8B { return .gzip }
            if head.count >= 4 && head[0] == 0x28 && head[1] == 0xB5 && head[2] == 0x2F && head[3] == 0xFD { return .zstd }
            if head.count >= 6 && head[0] == 0xFD && head[1] == 0x37 && head[2] == 0x7A && head[3] == 0x58 {
                throw DataError(.malformed, "\(path): unknown compression format (xz content; ZeroTrain reads plain, .gz and .zst files)")
            }
            if head.count >= 3 && head[0] == 0x42 && head[1] == 0x5A && head[2] == 0x68 {
                throw DataError(.malformed, "\(path): unknown compression format (bzip2 content; ZeroTrain reads plain, .gz and .zst files)")
            }
            return .none
        }
    }
}

/// Reads a file's decompressed bytes in chunks, in bounded memory (one input and one output
/// buffer). Owns the descriptor and the decompressor state, hence a class; one thread at a time.
public final class CompressedReader {
    public let path: String
    public let compression: Compression
    private let fd: Int32
    private var input: UnsafeMutableRawBufferPointer
    private var inputStart = 0, inputEnd = 0, eof = false, finished = false
    private var zstream = z_stream()
    private var zstd: OpaquePointer?
    /// Compressed bytes read from the file so far.
    public private(set) var bytesRead = 0

    static let chunk = 1 << 20

    public init(path: String) throws {
        self.path = path
        fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw DataError(.unreadable, "\(path): cannot open (\(String(cString: strerror(errno))))") }
        input = .allocate(byteCount: Self.chunk, alignment: 64)
        var head = [UInt8](repeating: 0, count: 8)
        let n = pread(fd, &head, 8, 0)
        do {
            compression = try Compression.of(path: path, head: Array(head.prefix(max(0, n))))
        } catch {
            close(fd)
            input.deallocate()
            throw error
        }
        switch compression {
        case .gzip:
            // 15 + 32: a gzip or zlib header, detected automatically.
            guard zt_inflate_init(&zstream, 15 + 32) == Z_OK else {
                close(fd); input.deallocate()
                throw DataError(.unreadable, "\(path): zlib failed to initialise")
            }
        case .zstd:
            zstd = ZSTD_createDStream()
            ZSTD_initDStream(zstd)
        case .none: break
        }
    }

    deinit {
        if compression == .gzip { inflateEnd(&zstream) }
        if let zstd { ZSTD_freeDStream(zstd) }
        close(fd)
        input.deallocate()
    }

    private func fill() throws {
        if inputStart < inputEnd || eof { return }
        let n = Glibc.read(fd, input.baseAddress, Self.chunk)
        guard n >= 0 else { throw DataError(.unreadable, "\(path): read failed (\(String(cString: strerror(errno))))") }
        inputStart = 0
        inputEnd = n
        bytesRead += n
        if n == 0 { eof = true }
    }

    /// Decompressed bytes into `out`; 0 at the end of the file.
    public func read(into out: UnsafeMutableRawBufferPointer) throws -> Int {
        if finished { return 0 }
        switch compression {
        case .none:
            if inputStart < inputEnd {
                let n = min(out.count, inputEnd - inputStart)
                out.baseAddress!.copyMemory(from: input.baseAddress! + inputStart, byteCount: n)
                inputStart += n
                return n
            }
            let n = Glibc.read(fd, out.baseAddress, out.count)
            guard n >= 0 else { throw DataError(.unreadable, "\(path): read failed (\(String(cString: strerror(errno))))") }
            bytesRead += n
            if n == 0 { finished = true }
            return n
        case .gzip:
            while true {
                try fill()
                if eof && inputStart == inputEnd {
                    throw DataError(.malformed, "\(path): truncated gzip stream")
                }
                zstream.next_in = input.baseAddress!.assumingMemoryBound(to: Bytef.self) + inputStart
                zstream.avail_in = UInt32(inputEnd - inputStart)
                zstream.next_out = out.baseAddress!.assumingMemoryBound(to: Bytef.self)
                zstream.avail_out = UInt32(out.count)
                let rc = inflate(&zstream, Z_NO_FLUSH)
                inputStart = inputEnd - Int(zstream.avail_in)
                let produced = out.count - Int(zstream.avail_out)
                if rc == Z_STREAM_END {
                    // Concatenated gzip members (as `cat a.gz b.gz` makes) continue the stream.
                    try fill()
                    if eof && inputStart == inputEnd { finished = true } else { inflateReset(&zstream) }
                    if produced > 0 || finished { return produced }
                    continue
                }
                guard rc == Z_OK || rc == Z_BUF_ERROR else {
                    throw DataError(.malformed, "\(path): corrupt gzip data (zlib error \(rc))")
                }
                if produced > 0 { return produced }
            }
        case .zstd:
            while true {
                try fill()
                if eof && inputStart == inputEnd {
                    finished = true
                    return 0
                }
                var inBuf = ZSTD_inBuffer(src: input.baseAddress! + inputStart, size: inputEnd - inputStart, pos: 0)
                var outBuf = ZSTD_outBuffer(dst: out.baseAddress, size: out.count, pos: 0)
                let rc = ZSTD_decompressStream(zstd, &outBuf, &inBuf)
                if ZSTD_isError(rc) != 0 {
                    throw DataError(.malformed, "\(path): corrupt zstd data (\(String(cString: ZSTD_getErrorName(rc))))")
                }
                inputStart += inBuf.pos
                if outBuf.pos > 0 { return outBuf.pos }
            }
        }
    }
}

/// Lines of a `CompressedReader`, each with its 1-based number, in bounded memory: a line longer
/// than `maxLineBytes` is an error naming the line.
public final class LineReader {
    public let reader: CompressedReader
    public let maxLineBytes: Int
    private var buffer: UnsafeMutableRawBufferPointer
    private var start = 0, end = 0, done = false
    public private(set) var lineNumber = 0

    public init(_ reader: CompressedReader, maxLineBytes: Int = 64 << 20) {
        self.reader = reader
        self.maxLineBytes = maxLineBytes
        buffer = .allocate(byteCount: 4 << 20, alignment: 64)
    }

    deinit { buffer.deallocate() }

    /// Calls `body` with the next line (without its newline, nor a trailing CR) and returns true,
    /// or returns false at the end. The bytes are valid only during the call.
    public func next(_ body: (UnsafeRawBufferPointer) throws -> Void) throws -> Bool {
        while true {
            if start < end, let nl = memchr(buffer.baseAddress! + start, 0x0A, end - start) {
                let stop = buffer.baseAddress!.distance(to: nl)
                lineNumber += 1
                var lineEnd = stop
                if lineEnd > start && buffer[lineEnd - 1] == 0x0D { lineEnd -= 1 }
                try body(UnsafeRawBufferPointer(rebasing: buffer[start..<lineEnd]))
                start = stop + 1
                return true
            }
            if done {
                guard start < end else { return false }
                lineNumber += 1
                var lineEnd = end
                if buffer[lineEnd - 1] == 0x0D { lineEnd -= 1 }
                try body(UnsafeRawBufferPointer(rebasing: buffer[start..<lineEnd]))
                start = end
                return true
            }
            // Move the partial line to the front, growing the buffer for a long line.
            if start > 0 {
                if end > start { memmove(buffer.baseAddress!, buffer.baseAddress! + start, end - start) }
                end -= start
                start = 0
            }
            if end == buffer.count {
                guard buffer.count < maxLineBytes else {
                    throw DataError(.malformed, "\(reader.path):\(lineNumber + 1): line longer than \(maxLineBytes) bytes")
                }
                let bigger = UnsafeMutableRawBufferPointer.allocate(byteCount: min(buffer.count * 2, maxLineBytes), alignment: 64)
                bigger.baseAddress!.copyMemory(from: buffer.baseAddress!, byteCount: end)
                buffer.deallocate()
                buffer = bigger
            }
            let n = try reader.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[end...]))
            if n == 0 { done = true } else { end += n }
        }
    }
}

extension Compression {
    /// `bytes` compressed in this format (gzip: one member, level 6; zstd: level 3) — for writing
    /// compressed outputs and fixtures.
    public func compress(_ bytes: [UInt8]) throws -> [UInt8] {
        switch self {
        case .none:
            return bytes
        case .zstd:
            var out = [UInt8](repeating: 0, count: ZSTD_compressBound(bytes.count))
            let n = out.withUnsafeMutableBytes { o in bytes.withUnsafeBytes { i in ZSTD_compress(o.baseAddress, o.count, i.baseAddress, i.count, 3) } }
            guard ZSTD_isError(n) == 0 else { throw DataError(.malformed, "zstd compression failed: \(String(cString: ZSTD_getErrorName(n)))") }
            return Array(out.prefix(n))
        case .gzip:
            var s = z_stream()
            // 15 + 16: a gzip header and trailer.
            guard zt_deflate_init(&s, 6, 15 + 16) == Z_OK else { throw DataError(.malformed, "zlib failed to initialise") }
            defer { deflateEnd(&s) }
            var out = [UInt8](repeating: 0, count: Int(deflateBound(&s, UInt(bytes.count))) + 64)
            var input = bytes
            let rc = input.withUnsafeMutableBufferPointer { i in
                out.withUnsafeMutableBufferPointer { o in
                    s.next_in = i.baseAddress
                    s.avail_in = UInt32(i.count)
                    s.next_out = o.baseAddress
                    s.avail_out = UInt32(o.count)
                    return deflate(&s, Z_FINISH)
                }
            }
            guard rc == Z_STREAM_END else { throw DataError(.malformed, "gzip compression failed (zlib error \(rc))") }
            return Array(out.prefix(Int(s.total_out)))
        }
    }
}
