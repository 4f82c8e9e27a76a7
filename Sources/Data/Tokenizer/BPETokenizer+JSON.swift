import Foundation

/// Hugging Face `tokenizer.json`: a BPE model with ByteLevel pre-tokenizer and decoder; the
/// special tokens are `added_tokens` with `special: true`. Merges are written as "left right"
/// strings (byte-level tokens never hold a space), and read in either that form or the
/// [left, right] pairs of newer files.
extension BPETokenizer {
    public func jsonObject() -> [String: Any] {
        let specialIds = Set(specials.map(\.id))
        var vocab: [String: Int] = [:]
        for (id, bytes) in tokenBytes.enumerated() where !specialIds.contains(Int32(id)) { vocab[ByteLevel.string(bytes)] = id }
        let added: [[String: Any]] = specials.sorted { $0.id < $1.id }.map {
            ["id": Int($0.id), "content": $0.content, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true]
        }
        for s in specials { vocab[s.content] = Int(s.id) }
        let mergeStrings = mergeList.map { ByteLevel.string(tokenBytes[Int($0.0)]) + " " + ByteLevel.string(tokenBytes[Int($0.1)]) }
        let byteLevel: [String: Any] = ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true]
        return [
            "version": "1.0",
            "truncation": NSNull(), "padding": NSNull(),
            "added_tokens": added,
            "normalizer": NSNull(),
            "pre_tokenizer": byteLevel,
            "post_processor": NSNull(),
            "decoder": byteLevel,
            "model": [
                "type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": NSNull(),
                "end_of_word_suffix": NSNull(), "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": vocab, "merges": mergeStrings,
            ] as [String: Any],
        ]
    }

    public func save(to path: String) throws {
        let data = try JSONSerialization.data(withJSONObject: jsonObject(), options: [.sortedKeys])
        do {
            try data.write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw DataError(.unreadable, "\(path): cannot write the tokenizer (\(error.localizedDescription))", cause: error)
        }
    }

    public static func load(path: String) throws -> BPETokenizer {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataError(.unreadable, "\(path): cannot read the tokenizer file")
        }
        guard let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw DataError(.malformed, "\(path): not a JSON object")
        }
        func bad(_ what: String) -> DataError { DataError(.malformed, "\(path): \(what)") }
        guard let model = root["model"] as? [String: Any], model["type"] as? String == "BPE" else {
            throw bad("model.type: must be BPE")
        }
        guard let pre = root["pre_tokenizer"] as? [String: Any], pre["type"] as? String == "ByteLevel" else {
            throw bad("pre_tokenizer: ZeroTrain reads byte-level BPE tokenizers (pre_tokenizer.type ByteLevel)")
        }
        if pre["add_prefix_space"] as? Bool == true { throw bad("pre_tokenizer.add_prefix_space: true is not supported") }
        guard let vocab = model["vocab"] as? [String: Int] else { throw bad("model.vocab: must map tokens to ids") }
        var specials: [(String, Int32)] = []
        for t in root["added_tokens"] as? [[String: Any]] ?? [] {
            guard let id = t["id"] as? Int, let content = t["content"] as? String else { throw bad("added_tokens: each needs id and content") }
            specials.append((content, Int32(id)))
        }
        let size = max(vocab.values.max() ?? -1, specials.map { Int($0.1) }.max() ?? -1) + 1
        var tokenBytes = [[UInt8]?](repeating: nil, count: size)
        for (content, id) in specials { tokenBytes[Int(id)] = Array(content.utf8) }
        for (token, id) in vocab where tokenBytes[id] == nil {
            guard id >= 0, let bytes = ByteLevel.bytes(token) else { throw bad("model.vocab: \"\(token)\" is not a byte-level token") }
            tokenBytes[id] = bytes
        }
        if let missing = tokenBytes.firstIndex(where: { $0 == nil }) { throw bad("model.vocab: no token has id \(missing)") }
        var merges: [(Int32, Int32)] = []
        for (n, m) in (model["merges"] as? [Any] ?? []).enumerated() {
            let parts: [String]
            if let s = m as? String { parts = s.split(separator: " ", omittingEmptySubsequences: false).map(String.init) } else { parts = m as? [String] ?? [] }
            guard parts.count == 2, let a = vocab[parts[0]], let b = vocab[parts[1]] else { throw bad("model.merges[\(n)]: not a pair of vocabulary tokens") }
            merges.append((Int32(a), Int32(b)))
        }
        return try BPETokenizer(tokenBytes: tokenBytes.map { $0! }, merges: merges, specials: specials)
    }
}
