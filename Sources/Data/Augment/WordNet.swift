import Foundation

/// Synonyms from the Princeton WordNet 3.0 database files, read directly (Debian's `wordnet-base`
/// puts them in /usr/share/wordnet): `index.<pos>` maps a lemma to its synset offsets, and the
/// line at that byte offset of `data.<pos>` lists the synset's words. A word's synonyms are the
/// other words of all its synsets, nouns, verbs, adjectives and adverbs, in file order. Lemmas
/// are looked up as written (lower case; no morphological reduction: "dogs" finds nothing).
public final class WordNet: Sendable {
    public static let defaultDirectory = "/usr/share/wordnet"
    static let parts = ["noun", "verb", "adj", "adv"]

    /// lemma → synonyms (multi-word lemmas with spaces), built once when the files are opened.
    private let synonymsByLemma: [String: [String]]

    /// Loads the database; a missing directory or file is an error that says how to get it.
    public init(directory: String = WordNet.defaultDirectory) throws {
        var table: [String: [String]] = [:]
        for pos in Self.parts {
            let indexPath = (directory as NSString).appendingPathComponent("index.\(pos)")
            let dataPath = (directory as NSString).appendingPathComponent("data.\(pos)")
            guard let index = FileManager.default.contents(atPath: indexPath), let data = FileManager.default.contents(atPath: dataPath) else {
                throw DataError(.unreadable, "WordNet: cannot read \(indexPath) and \(dataPath) (install Debian's wordnet-base, or set augment.wordnet_dir)")
            }
            let bytes = [UInt8](data)
            var synset: [Int: [String]] = [:]
            func words(at offset: Int) -> [String] {
                if let w = synset[offset] { return w }
                // "offset lex_filenum ss_type w_cnt(hex) word lex_id word lex_id … p_cnt …"
                var end = offset
                while end < bytes.count, bytes[end] != 0x0A { end += 1 }
                guard offset < end else { return [] }
                let fields = bytes[offset..<end].split(separator: 0x20, maxSplits: 260, omittingEmptySubsequences: true)
                guard fields.count > 4, let n = Int(String(decoding: fields[3], as: UTF8.self), radix: 16) else { return [] }
                var out: [String] = []
                for k in 0..<n where 4 + 2 * k < fields.count {
                    var w = String(decoding: fields[4 + 2 * k], as: UTF8.self)
                    if let paren = w.firstIndex(of: "(") { w = String(w[..<paren]) }  // adjective markers "(a)", "(p)"
                    out.append(w.replacingOccurrences(of: "_", with: " ").lowercased())
                }
                synset[offset] = out
                return out
            }
            for line in index.split(separator: 0x0A) where line.first != 0x20 {
                // "lemma pos synset_cnt p_cnt [ptr…] sense_cnt tagsense_cnt offset…"
                let f = line.split(separator: 0x20)
                guard f.count >= 4, let synsets = Int(String(decoding: f[2], as: UTF8.self)), let pointers = Int(String(decoding: f[3], as: UTF8.self)) else { continue }
                let first = 4 + pointers + 2
                guard f.count >= first + synsets else { continue }
                let lemma = String(decoding: f[0], as: UTF8.self).replacingOccurrences(of: "_", with: " ")
                var list = table[lemma] ?? []
                for s in 0..<synsets {
                    guard let offset = Int(String(decoding: f[first + s], as: UTF8.self)) else { continue }
                    for w in words(at: offset) where w != lemma && !list.contains(w) { list.append(w) }
                }
                if !list.isEmpty { table[lemma] = list }
            }
        }
        synonymsByLemma = table
    }

    /// The synonyms of a word (lower-cased), nearest senses first; empty when WordNet has none.
    public func synonyms(of word: String) -> [String] { synonymsByLemma[word.lowercased()] ?? [] }

    public var lemmaCount: Int { synonymsByLemma.count }
}
