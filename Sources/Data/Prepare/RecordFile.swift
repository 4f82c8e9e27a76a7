import Foundation

/// The pipeline's intermediate file between passes: documents as length-prefixed binary records
/// (id, source, line, difficulty, text), read back in batches — cheaper than JSON and never held whole.
final class RecordFileWriter {
    private let handle: FileHandle
    private var buffer: [UInt8] = []
    let path: String

    init(path: String) throws {
        self.path = path
        guard FileManager.default.createFile(atPath: path, contents: nil), let h = FileHandle(forWritingAtPath: path) else {
            throw DataError(.unreadable, "\(path): cannot create")
        }
        handle = h
    }

    private func put(_ s: String) {
        var s = s
        s.withUTF8 { u in
            withUnsafeBytes(of: UInt32(u.count).littleEndian) { buffer += $0 }
            buffer += u
        }
    }

    func write(_ d: Document) throws {
        put(d.id)
        put(d.source)
        withUnsafeBytes(of: UInt64(d.line).littleEndian) { buffer += $0 }
        // The difficulty, NaN when there is none.
        withUnsafeBytes(of: (d.difficulty ?? .nan).bitPattern.littleEndian) { buffer += $0 }
        put(d.text)
        if buffer.count >= 4 << 20 { try flush() }
    }

    private func flush() throws {
        try handle.write(contentsOf: buffer)
        buffer.removeAll(keepingCapacity: true)
    }

    func close() throws {
        try flush()
        try handle.close()
    }
}

final class RecordFileReader {
    private let handle: FileHandle
    private var buffer: [UInt8] = []
    private var pos = 0
    private var eof = false
    let path: String

    init(path: String) throws {
        self.path = path
        guard let h = FileHandle(forReadingAtPath: path) else { throw DataError(.unreadable, "\(path): cannot open") }
        handle = h
    }

    deinit { try? handle.close() }

    private func need(_ n: Int) throws -> Bool {
        while buffer.count - pos < n {
            if eof { return false }
            if pos > 0 { buffer.removeFirst(pos); pos = 0 }
            if let chunk = try handle.read(upToCount: max(4 << 20, n)), !chunk.isEmpty { buffer += chunk } else { eof = true }
        }
        return true
    }

    private func u32() throws -> Int {
        guard try need(4) else { throw DataError(.malformed, "\(path): truncated record") }
        let v = buffer[pos..<(pos + 4)].withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) }
        pos += 4
        return Int(v)
    }

    private func string() throws -> String {
        let n = try u32()
        guard try need(n) else { throw DataError(.malformed, "\(path): truncated record") }
        let s = String(decoding: buffer[pos..<(pos + n)], as: UTF8.self)
        pos += n
        return s
    }

    func next() throws -> Document? {
        guard try need(1) else { return nil }
        let id = try string(), source = try string()
        guard try need(8) else { throw DataError(.malformed, "\(path): truncated record") }
        let line = buffer[pos..<(pos + 8)].withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        pos += 8
        guard try need(8) else { throw DataError(.malformed, "\(path): truncated record") }
        let difficulty = Double(bitPattern: buffer[pos..<(pos + 8)].withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })
        pos += 8
        return Document(id: id, text: try string(), source: source, line: Int(line), difficulty: difficulty.isNaN ? nil : difficulty)
    }

    func nextBatch(bytes limit: Int = 4 << 20) throws -> [Document] {
        var out: [Document] = []
        var bytes = 0
        while bytes < limit, let d = try next() {
            bytes += d.text.utf8.count + 64
            out.append(d)
        }
        return out
    }
}
