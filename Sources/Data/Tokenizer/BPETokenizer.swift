import Foundation
import Tensor

/// A byte-level BPE tokenizer in Hugging Face's `tokenizer.json` form (BPE model, ByteLevel
/// pre-tokenizer and decoder, special tokens as added tokens). Encoding splits out special tokens,
/// pre-tokenizes by the GPT-2 pattern, then applies merges by rank inside each piece — the same ids
/// as the `tokenizers` library for the same file. Every byte is a token, so any byte sequence
/// round-trips.
public struct BPETokenizer: Sendable {
    /// Token id → its bytes (a special token: its content's bytes).
    public let tokenBytes: [[UInt8]]
    /// Byte → the id of its one-byte token.
    public let byteIds: [Int32]
    /// (left id, right id) packed as left << 32 | right → (rank, merged id).
    let merges: [UInt64: (rank: Int32, id: Int32)]
    /// Merges in rank order.
    public let mergeList: [(Int32, Int32)]
    /// Special tokens (content, id), matched in the text before pre-tokenization.
    public let specials: [(content: String, id: Int32)]
    /// Bytes that begin a special token's content.
    let specialFirst: [Bool]

    public var vocabularySize: Int { tokenBytes.count }

    public func specialId(_ content: String) -> Int32? { specials.first { $0.content == content }?.id }

    public init(tokenBytes: [[UInt8]], merges: [(Int32, Int32)], specials: [(String, Int32)]) throws {
        self.tokenBytes = tokenBytes
        var byteIds = [Int32](repeating: -1, count: 256)
        let specialIds = Set(specials.map(\.1))
        for (id, bytes) in tokenBytes.enumerated() where bytes.count == 1 && !specialIds.contains(Int32(id)) && byteIds[Int(bytes[0])] < 0 {
            byteIds[Int(bytes[0])] = Int32(id)
        }
        guard !byteIds.contains(-1) else {
            throw DataError(.malformed, "tokenizer: the vocabulary lacks a token for byte \(byteIds.firstIndex(of: -1)!) (not a byte-level BPE)")
        }
        self.byteIds = byteIds
        var index: [[UInt8]: Int32] = [:]
        for (id, bytes) in tokenBytes.enumerated() where !specialIds.contains(Int32(id)) { index[bytes] = index[bytes] ?? Int32(id) }
        var table: [UInt64: (Int32, Int32)] = [:]
        for (rank, (a, b)) in merges.enumerated() {
            guard let merged = index[tokenBytes[Int(a)] + tokenBytes[Int(b)]] else {
                throw DataError(.malformed, "tokenizer: merge \(rank) has no token for its result")
            }
            let key = UInt64(UInt32(a)) << 32 | UInt64(UInt32(b))
            if table[key] == nil { table[key] = (Int32(rank), merged) }
        }
        self.merges = table.mapValues { (rank: $0.0, id: $0.1) }
        mergeList = merges
        self.specials = specials.map { (content: $0.0, id: $0.1) }.sorted { $0.content.utf8.count > $1.content.utf8.count }
        var first = [Bool](repeating: false, count: 256)
        for s in specials { if let b = s.0.utf8.first { first[Int(b)] = true } }
        specialFirst = first
    }

    // MARK: - encode

    /// BPE inside one pre-token, through a per-thread cache.
    @inline(__always)
    func encodePiece(_ piece: UnsafeBufferPointer<UInt8>, cache: inout [ByteKey: [Int32]], into out: inout [Int32]) {
        if piece.count == 1 { out.append(byteIds[Int(piece[0])]); return }
        let key = ByteKey(piece)
        if let hit = cache[key] { out.append(contentsOf: hit); return }
        var symbols = piece.map { byteIds[Int($0)] }
        while symbols.count > 1 {
            var bestRank = Int32.max, bestId: Int32 = -1, bestPair: UInt64 = 0
            for i in 0..<(symbols.count - 1) {
                let k = UInt64(UInt32(symbols[i])) << 32 | UInt64(UInt32(symbols[i + 1]))
                if let m = merges[k], m.rank < bestRank { bestRank = m.rank; bestId = m.id; bestPair = k }
            }
            if bestId < 0 { break }
            let a = Int32(truncatingIfNeeded: bestPair >> 32), b = Int32(truncatingIfNeeded: bestPair & 0xFFFF_FFFF)
            var merged: [Int32] = []
            merged.reserveCapacity(symbols.count)
            var i = 0
            while i < symbols.count {
                if i + 1 < symbols.count && symbols[i] == a && symbols[i + 1] == b {
                    merged.append(bestId)
                    i += 2
                } else {
                    merged.append(symbols[i])
                    i += 1
                }
            }
            symbols = merged
        }
        if cache.count < 1 << 20 { cache[key] = symbols }
        out.append(contentsOf: symbols)
    }

    func encode(_ text: String, cache: inout [ByteKey: [Int32]]) -> [Int32] {
        var out: [Int32] = []
        var text = text
        text.withUTF8 { u in
            out.reserveCapacity(u.count / 3)
            var pos = 0
            // Special tokens first (longest content first), then the pieces between them.
            while pos < u.count {
                var next = u.count, which = -1
                if !specials.isEmpty {
                    var i = pos
                    scan: while i < u.count {
                        if specialFirst[Int(u[i])] {
                            for (k, s) in specials.enumerated() {
                                let c = s.content.utf8
                                if i + c.count <= u.count && c.elementsEqual(UnsafeBufferPointer(rebasing: u[i..<(i + c.count)])) {
                                    next = i; which = k
                                    break scan
                                }
                            }
                        }
                        i += 1
                    }
                }
                let segment = UnsafeBufferPointer(rebasing: u[pos..<next])
                ByteLevel.split(segment) { r in
                    encodePiece(UnsafeBufferPointer(rebasing: segment[r]), cache: &cache, into: &out)
                }
                if which >= 0 {
                    out.append(specials[which].id)
                    pos = next + specials[which].content.utf8.count
                } else { pos = next }
            }
        }
        return out
    }

    /// The ids of `text`.
    public func encode(_ text: String) -> [Int32] {
        var cache: [ByteKey: [Int32]] = [:]
        return encode(text, cache: &cache)
    }

    /// The ids of every text, on all the pool's threads (each with its own merge cache).
    public func encode(batch texts: [String], pool: ThreadPool) -> [[Int32]] {
        var results = [[Int32]](repeating: [], count: texts.count)
        let chunk = 64
        results.withUnsafeMutableBufferPointer { out in
            let slots = out
            pool.runOnAll { t in
                var cache: [ByteKey: [Int32]] = [:]
                var c = t
                while c * chunk < texts.count {
                    for i in (c * chunk)..<min(texts.count, (c + 1) * chunk) { slots[i] = encode(texts[i], cache: &cache) }
                    c += pool.size
                }
            }
        }
        return results
    }

    /// The text of `ids` (special tokens as their content; invalid UTF-8 becomes U+FFFD).
    public func decode(_ ids: [Int32]) -> String {
        String(decoding: decodeBytes(ids), as: UTF8.self)
    }

    public func decodeBytes(_ ids: [Int32]) -> [UInt8] {
        var out: [UInt8] = []
        for id in ids where id >= 0 && Int(id) < tokenBytes.count { out += tokenBytes[Int(id)] }
        return out
    }

    /// The byte sequence's ids, bypassing the UTF-8 view (for any bytes, valid UTF-8 or not):
    /// pre-tokenization sees invalid sequences as "other" characters.
    public func encode(bytes: [UInt8]) -> [Int32] {
        var cache: [ByteKey: [Int32]] = [:]
        var out: [Int32] = []
        bytes.withUnsafeBufferPointer { u in
            ByteLevel.split(u) { r in encodePiece(UnsafeBufferPointer(rebasing: u[r]), cache: &cache, into: &out) }
        }
        return out
    }
}
