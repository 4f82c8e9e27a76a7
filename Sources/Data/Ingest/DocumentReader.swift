import Foundation

/// One document and where it came from.
public struct Document: Sendable {
    /// Stable id: 16 hex digits of a hash of (source path, starting line): the same on every run.
    public var id: String
    public var text: String
    /// The input file.
    public var source: String
    /// The 1-based line where the document starts.
    public var line: Int
    /// The JSONL record's `ingest.difficulty_field`, when configured (curriculum learning).
    public var difficulty: Double?

    public init(id: String, text: String, source: String, line: Int, difficulty: Double? = nil) {
        self.id = id
        self.text = text
        self.source = source
        self.line = line
        self.difficulty = difficulty
    }

    public static func stableId(source: String, line: Int) -> String {
        stableId(sourceHash: TextHash.hash(source), line: line)
    }

    /// The id from the hash of the source path (computed once per file) and the line.
    static func stableId(sourceHash: UInt64, line: Int) -> String {
        let h = TextHash.mix(sourceHash ^ TextHash.mix(UInt64(line) &+ 0x9E37_79B9_7F4A_7C15))
        return String(unsafeUninitializedCapacity: 16) { buf in
            for k in 0..<16 {
                let d = UInt8((h >> (60 - 4 * UInt64(k))) & 15)
                buf[k] = d < 10 ? 0x30 + d : 0x57 + d
            }
            return 16
        }
    }

    /// The JSONL line `{"id":…,"source":…,"line":…,"text":…}` (with its newline) appended to `out`.
    public func appendJSONL(to out: inout [UInt8], extra: [(String, String)] = []) {
        out.append(contentsOf: "{\"id\":\"".utf8)
        out.append(contentsOf: id.utf8)
        out.append(contentsOf: "\",\"source\":".utf8)
        JSONLine.appendQuoted(source, to: &out)
        out.append(contentsOf: ",\"line\":".utf8)
        out.append(contentsOf: String(line).utf8)
        for (k, v) in extra {
            out.append(0x2C)
            JSONLine.appendQuoted(k, to: &out)
            out.append(0x3A)
            JSONLine.appendQuoted(v, to: &out)
        }
        out.append(contentsOf: ",\"text\":".utf8)
        JSONLine.appendQuoted(text, to: &out)
        out.append(contentsOf: [0x7D, 0x0A])
    }
}

/// Counters of the ingest stage.
public struct IngestStats: Sendable, Codable, Equatable {
    public var files = 0
    public var documents = 0
    /// Malformed JSONL lines skipped (with `skip_bad`), and records without the text field.
    public var badLines = 0
    public var missingField = 0
    /// Decoded bytes and bytes read from disk (compressed).
    public var bytes = 0
    public var compressedBytes = 0
    public init() {}
}

/// Streams documents from files and directories (walked in sorted order), plain, gzip or zstd,
/// as text or JSONL, in batches of about `batchBytes` — memory stays one batch (plus the
/// decompressor's buffers) whatever the corpus size.
public final class DocumentReader {
    public let config: IngestConfig
    public let files: [String]
    public private(set) var stats = IngestStats()
    private var fileIndex = 0
    private var lines: LineReader?
    private var current: String = ""
    private var currentHash: UInt64 = 0
    private var currentIsJSONL = false
    /// A paragraph being assembled: its text and first line.
    private var paragraph: [UInt8] = []
    private var paragraphLine = 0

    /// Expands `inputs` (files or directories) to the files to read; a missing input is an error.
    public static func expand(_ inputs: [String]) throws -> [String] {
        var out: [String] = []
        let fm = FileManager.default
        for input in inputs {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: input, isDirectory: &isDir) else { throw DataError(.unreadable, "\(input): no such file or directory") }
            if isDir.boolValue {
                guard let e = fm.enumerator(atPath: input) else { throw DataError(.unreadable, "\(input): cannot list the directory") }
                var found: [String] = []
                while let rel = e.nextObject() as? String {
                    let full = (input as NSString).appendingPathComponent(rel)
                    var d: ObjCBool = false
                    if fm.fileExists(atPath: full, isDirectory: &d), !d.boolValue, !(rel as NSString).lastPathComponent.hasPrefix(".") { found.append(full) }
                }
                out += found.sorted()
            } else {
                out.append(input)
            }
        }
        return out
    }

    /// Bytes of all input files on disk (compressed sizes), for the ETA.
    public let totalBytes: Int

    public init(inputs: [String], config: IngestConfig) throws {
        try config.validate()
        self.config = config
        files = try Self.expand(inputs)
        totalBytes = files.reduce(0) { $0 + ((try? FileManager.default.attributesOfItem(atPath: $1)[.size] as? Int) ?? 0) }
    }

    /// Bytes of the input files read from disk so far (the current file included).
    public var bytesDone: Int { stats.compressedBytes + (lines?.reader.bytesRead ?? 0) }

    func isJSONL(_ path: String) -> Bool {
        switch config.format {
        case "jsonl": return true
        case "text": return false
        default:
            var name = (path as NSString).lastPathComponent.lowercased()
            for ext in [".gz", ".gzip", ".zst", ".zstd"] where name.hasSuffix(ext) { name.removeLast(ext.count) }
            return name.hasSuffix(".jsonl") || name.hasSuffix(".json") || name.hasSuffix(".ndjson")
        }
    }

    /// The next batch of documents; empty at the end of the input.
    public func nextBatch() throws -> [Document] {
        var batch: [Document] = []
        var bytes = 0
        while bytes < config.batchBytes {
            guard let doc = try nextDocument() else { break }
            bytes += doc.text.utf8.count + 64
            batch.append(doc)
        }
        return batch
    }

    /// Ends the current file, counting its bytes on disk.
    private func closeFile() {
        if let l = lines { stats.compressedBytes += l.reader.bytesRead }
        lines = nil
    }

    private func openNext() throws -> Bool {
        closeFile()
        guard fileIndex < files.count else { return false }
        current = files[fileIndex]
        currentHash = TextHash.hash(current)
        fileIndex += 1
        stats.files += 1
        currentIsJSONL = isJSONL(current)
        lines = LineReader(try CompressedReader(path: current), maxLineBytes: config.maxDocumentBytes)
        return true
    }

    public func nextDocument() throws -> Document? {
        while true {
            if lines == nil { guard try openNext() else { return nil } }
            let reader = lines!
            if currentIsJSONL {
                var doc: Document?
                var failure: String?
                let more = try reader.next { line in
                    stats.bytes += line.count + 1
                    var blank = true
                    for b in line where !(b == 0x20 || b == 0x09 || b == 0x0D) { blank = false; break }
                    if blank { return }
                    do {
                        let (text, difficulty) = try JSONLine.fields(config.textField, number: config.difficultyField, in: line)
                        if let text {
                            if let field = config.difficultyField, difficulty == nil {
                                failure = "no number field \"\(field)\" (ingest.difficulty_field)"
                            } else {
                                doc = Document(id: Document.stableId(sourceHash: currentHash, line: reader.lineNumber), text: text,
                                               source: current, line: reader.lineNumber, difficulty: difficulty)
                            }
                        } else {
                            failure = "no string field \"\(config.textField)\""
                        }
                    } catch let e as JSONLine.Failure {
                        failure = e.reason
                    }
                }
                if !more { closeFile(); continue }
                if let failure {
                    if !config.skipBad {
                        throw DataError(.malformed, "\(current):\(reader.lineNumber): \(failure) (or pass --skip-bad to skip and count such lines)")
                    }
                    if failure.hasPrefix("no string field") || failure.hasPrefix("no number field") { stats.missingField += 1 } else { stats.badLines += 1 }
                    continue
                }
                if let doc { stats.documents += 1; return doc }
                continue
            }
            switch config.textUnit {
            case "line":
                var doc: Document?
                let more = try reader.next { line in
                    stats.bytes += line.count + 1
                    let text = String(decoding: line, as: UTF8.self)
                    if !text.allSatisfy(\.isWhitespace) {
                        doc = Document(id: Document.stableId(sourceHash: currentHash, line: reader.lineNumber), text: text, source: current, line: reader.lineNumber)
                    }
                }
                if !more { closeFile(); continue }
                if let doc { stats.documents += 1; return doc }
            case "paragraph":
                var doc: Document?
                let more = try reader.next { line in
                    stats.bytes += line.count + 1
                    var blank = true
                    for b in line where !QualityFilter.isSpace(b) { blank = false; break }
                    if blank {
                        if !paragraph.isEmpty { doc = takeParagraph() }
                    } else {
                        if paragraph.isEmpty { paragraphLine = reader.lineNumber } else { paragraph.append(0x0A) }
                        guard paragraph.count + line.count <= config.maxDocumentBytes else {
                            throw DataError(.malformed, "\(current):\(paragraphLine): paragraph longer than ingest.max_document_bytes (\(config.maxDocumentBytes))")
                        }
                        paragraph.append(contentsOf: line)
                    }
                }
                if !more {
                    closeFile()
                    if !paragraph.isEmpty { stats.documents += 1; return takeParagraph() }
                    continue
                }
                if let doc { stats.documents += 1; return doc }
            default:
                // The whole file is one document.
                var text: [UInt8] = []
                while try reader.next({ line in
                    stats.bytes += line.count + 1
                    guard text.count + line.count < config.maxDocumentBytes else {
                        throw DataError(.malformed, "\(current):1: file longer than ingest.max_document_bytes (\(config.maxDocumentBytes)); use text_unit paragraph or line")
                    }
                    if !text.isEmpty { text.append(0x0A) }
                    text.append(contentsOf: line)
                }) {}
                closeFile()
                var blank = true
                for b in text where !QualityFilter.isSpace(b) { blank = false; break }
                if blank { continue }
                stats.documents += 1
                return Document(id: Document.stableId(sourceHash: currentHash, line: 1), text: String(decoding: text, as: UTF8.self), source: current, line: 1)
            }
        }
    }

    private func takeParagraph() -> Document {
        let d = Document(id: Document.stableId(sourceHash: currentHash, line: paragraphLine), text: String(decoding: paragraph, as: UTF8.self),
                         source: current, line: paragraphLine)
        paragraph.removeAll(keepingCapacity: true)
        return d
    }
}

/// Batches from a `DocumentReader` on a thread of their own, at most `depth` ahead of the
/// consumer: reading and decompression overlap the processing while memory stays bounded.
public final class PrefetchingReader: @unchecked Sendable {  // Safe: shared fields are touched only with `condition` locked.
    private let condition = NSCondition()
    private var queue: [Result<[Document], any Error>] = []
    private var finished = false
    private var cancelled = false
    private let depth: Int
    private let reader: DocumentReader
    private var thread: Thread?
    private var progressState = (bytes: 0, documents: 0)
    /// Input bytes on disk in all files.
    public let totalBytes: Int

    public init(_ reader: DocumentReader, depth: Int = 2) {
        self.reader = reader
        self.depth = depth
        totalBytes = reader.totalBytes
        let t = Thread { [self] in self.produce() }
        t.name = "zerotrain-ingest"
        t.stackSize = 4 << 20
        thread = t
        t.start()
    }

    private func produce() {
        while true {
            let item: Result<[Document], any Error>
            do { item = .success(try reader.nextBatch()) } catch { item = .failure(error) }
            let done = reader.bytesDone, documents = reader.stats.documents
            condition.lock()
            progressState = (done, documents)
            while queue.count >= depth && !cancelled { condition.wait() }
            if cancelled { condition.unlock(); return }
            queue.append(item)
            var last = false
            if case .success(let b) = item, b.isEmpty { last = true }
            if case .failure = item { last = true }
            if last { finished = true }
            condition.broadcast()
            condition.unlock()
            if last { return }
        }
    }

    /// The next batch; empty at the end. Rethrows the reader's error.
    public func next() throws -> [Document] {
        condition.lock()
        defer { condition.unlock() }
        while queue.isEmpty { condition.wait() }
        let item = queue.removeFirst()
        condition.broadcast()
        // The end (or the error) stays at the front for any later call.
        if case .success(let b) = item, b.isEmpty { queue.insert(item, at: 0) }
        if case .failure = item { queue.insert(item, at: 0) }
        return try item.get()
    }

    /// Input bytes read from disk and documents read, as of the last batch read ahead.
    public var progress: (bytes: Int, documents: Int) {
        condition.lock()
        defer { condition.unlock() }
        return progressState
    }

    /// "N records, X MB/s, ETA m:ss" after `elapsed` seconds (MB/s of input bytes on disk).
    public func progressLine(elapsed: Double) -> String {
        let p = progress
        let rate = Double(p.bytes) / max(1e-9, elapsed)
        var line = String(format: "%d records, %.1f MB/s read from disk", p.documents, rate / 1e6)
        if totalBytes > 0 && p.bytes > 0 {
            let left = max(0, Double(totalBytes - p.bytes) / rate)
            line += String(format: ", %3.0f %%, ETA %d:%02d", 100 * Double(p.bytes) / Double(totalBytes), Int(left) / 60, Int(left) % 60)
        }
        return line
    }

    /// The reader's counters (read after the last batch).
    public var stats: IngestStats {
        condition.lock()
        defer { condition.unlock() }
        return reader.stats
    }

    /// Stops the reading thread (after an error downstream).
    public func cancel() {
        condition.lock()
        cancelled = true
        condition.broadcast()
        condition.unlock()
    }

    deinit { cancel() }
}
