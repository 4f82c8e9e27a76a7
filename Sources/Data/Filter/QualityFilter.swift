/// The quality stage: C4 line rules (which edit the document), then C4 document rules, Gopher
/// repetition and Gopher quality (which drop it). Works on UTF-8 bytes; "characters" are Unicode
/// scalars, "words" are runs of non-whitespace.
public struct QualityFilter: Sendable {
    public let config: FilterConfig

    public init(config: FilterConfig) { self.config = config }

    /// What the filter did to one document.
    public struct Outcome: Sendable {
        /// The text to keep (lines removed by C4), or nil when the document is dropped.
        public var text: String?
        /// The rule that dropped the document (`gopher_quality.stop_words` …).
        public var droppedBy: String?
        /// Lines removed by each C4 line rule.
        public var linesRemoved: [String: Int] = [:]
    }

    static let stopWords: [[UInt8]] = ["the", "be", "to", "of", "and", "that", "have", "with"].map { Array($0.utf8) }

    /// Whether a word is a stop word, ignoring ASCII case (no allocation).
    static func isStopWord(_ w: ArraySlice<UInt8>) -> Bool {
        guard w.count >= 2 && w.count <= 4 else { return false }
        return stopWords.contains { s in s.count == w.count && zip(s, w).allSatisfy { $0 == ($1 >= 0x41 && $1 <= 0x5A ? $1 | 0x20 : $1) } }
    }
    static let policyPhrases = ["terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies"]
    static let bullets: [[UInt8]] = ["•", "-", "*", "‣", "▪", "●", "◦", "⁃", "○"].map { Array($0.utf8) }

    public func apply(_ text: String) -> Outcome {
        var out = Outcome()
        var bytes = Array(text.utf8)
        if config.c4.enabled {
            if let rule = c4(&bytes, &out.linesRemoved) { out.droppedBy = rule; return out }
        }
        if scalarCount(bytes[...]) < config.minChars { out.droppedBy = "min_chars"; return out }
        if config.gopherRepetition.enabled, let rule = repetition(bytes) { out.droppedBy = rule; return out }
        if config.gopherQuality.enabled, let rule = quality(bytes) { out.droppedBy = rule; return out }
        out.text = String(decoding: bytes, as: UTF8.self)
        return out
    }

    // MARK: - helpers

    @inline(__always) static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || (b >= 0x09 && b <= 0x0D) }

    func scalarCount(_ s: ArraySlice<UInt8>) -> Int {
        var n = 0
        for b in s where b & 0xC0 != 0x80 { n += 1 }
        return n
    }

    static func words(_ s: ArraySlice<UInt8>) -> [ArraySlice<UInt8>] {
        var out: [ArraySlice<UInt8>] = []
        var i = s.startIndex
        while i < s.endIndex {
            while i < s.endIndex && isSpace(s[i]) { i += 1 }
            let start = i
            while i < s.endIndex && !isSpace(s[i]) { i += 1 }
            if i > start { out.append(s[start..<i]) }
        }
        return out
    }

    static func lines(_ s: [UInt8]) -> [ArraySlice<UInt8>] {
        s.split(separator: 0x0A, omittingEmptySubsequences: false)
    }

    static func hasPrefix(_ s: ArraySlice<UInt8>, _ p: [UInt8]) -> Bool {
        s.count >= p.count && s.prefix(p.count).elementsEqual(p)
    }

    static func hasSuffix(_ s: ArraySlice<UInt8>, _ p: [UInt8]) -> Bool {
        s.count >= p.count && s.suffix(p.count).elementsEqual(p)
    }

    static func trimmed(_ s: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var a = s.startIndex, b = s.endIndex
        while a < b && isSpace(s[a]) { a += 1 }
        while b > a && isSpace(s[b - 1]) { b -= 1 }
        return s[a..<b]
    }

    static func lowercased(_ s: ArraySlice<UInt8>) -> [UInt8] {
        s.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }
    }

    static func contains(_ hay: [UInt8], _ needle: [UInt8]) -> Bool {
        guard needle.count <= hay.count, let first = needle.first else { return needle.isEmpty }
        var i = 0
        while i <= hay.count - needle.count {
            if hay[i] == first && hay[i..<(i + needle.count)].elementsEqual(needle) { return true }
            i += 1
        }
        return false
    }

    /// Strips ASCII punctuation from both ends of a word.
    static func stripPunctuation(_ w: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        func punct(_ b: UInt8) -> Bool { (b >= 0x21 && b <= 0x2F) || (b >= 0x3A && b <= 0x40) || (b >= 0x5B && b <= 0x60) || (b >= 0x7B && b <= 0x7E) }
        var a = w.startIndex, b = w.endIndex
        while a < b && punct(w[a]) { a += 1 }
        while b > a && punct(w[b - 1]) { b -= 1 }
        return w[a..<b]
    }

    // MARK: - C4

    /// Applies the line rules to `bytes` (removing lines), then the document rules.
    func c4(_ bytes: inout [UInt8], _ removed: inout [String: Int]) -> String? {
        let c = config.c4
        let lower = Self.lowercased(bytes[...])
        if c.dropLoremIpsum && Self.contains(lower, Array("lorem ipsum".utf8)) { return "c4.lorem_ipsum" }
        if c.dropCurlyBrace && bytes.contains(UInt8(ascii: "{")) { return "c4.curly_brace" }
        if !c.badWords.isEmpty {
            let bad = Set(c.badWords.map { Array($0.lowercased().utf8) })
            for w in Self.words(lower[...]) where bad.contains(Array(Self.stripPunctuation(w))) { return "c4.bad_words" }
        }
        var kept: [UInt8] = []
        kept.reserveCapacity(bytes.count)
        var sentences = 0
        let ellipsis = Array("...".utf8), ellipsisChar = Array("…".utf8)
        let policy = Self.policyPhrases.map { Array($0.utf8) }
        // Blank lines between kept lines stay (one), so paragraphs survive for the repetition rules.
        var blank = false
        for raw in Self.lines(bytes) {
            let line = Self.trimmed(raw)
            if line.isEmpty { blank = true; continue }
            if c.requireTerminalPunctuation {
                let last = line.last!
                let terminal = last == UInt8(ascii: ".") || last == UInt8(ascii: "?") || last == UInt8(ascii: "!") || last == UInt8(ascii: "\"")
                if !terminal || Self.hasSuffix(line, ellipsis) || Self.hasSuffix(line, ellipsisChar) {
                    removed["c4.line.terminal_punctuation", default: 0] += 1
                    continue
                }
            }
            let words = Self.words(line)
            if words.count < c.minWordsPerLine { removed["c4.line.min_words", default: 0] += 1; continue }
            if words.contains(where: { scalarCount($0) > c.maxWordLength }) { removed["c4.line.long_word", default: 0] += 1; continue }
            let lowerLine = Self.lowercased(line)
            if c.dropJavascriptLines && Self.contains(lowerLine, Array("javascript".utf8)) {
                removed["c4.line.javascript", default: 0] += 1
                continue
            }
            if c.dropPolicyLines && policy.contains(where: { Self.contains(lowerLine, $0) }) {
                removed["c4.line.policy", default: 0] += 1
                continue
            }
            // Sentences: terminal punctuation followed by a space or the line's end.
            for (k, b) in line.enumerated() where b == UInt8(ascii: ".") || b == UInt8(ascii: "?") || b == UInt8(ascii: "!") {
                let next = line.index(line.startIndex, offsetBy: k + 1)
                if next == line.endIndex || Self.isSpace(line[next]) { sentences += 1 }
            }
            if !kept.isEmpty { kept.append(0x0A); if blank { kept.append(0x0A) } }
            blank = false
            kept.append(contentsOf: line)
        }
        bytes = kept
        if sentences < c.minSentences { return "c4.min_sentences" }
        return nil
    }

    // MARK: - Gopher repetition

    func repetition(_ bytes: [UInt8]) -> String? {
        let c = config.gopherRepetition
        let total = Double(max(1, scalarCount(bytes[...])))
        func duplicates(_ parts: [ArraySlice<UInt8>]) -> (elements: Int, chars: Int) {
            // 64-bit hashes of the parts stand for them (a collision in 2⁶⁴ is not a concern here).
            var seen = Set<UInt64>(minimumCapacity: parts.count)
            var elements = 0, chars = 0
            for p in parts {
                let h = p.withUnsafeBufferPointer { TextHash.hash($0) }
                if !seen.insert(h).inserted { elements += 1; chars += scalarCount(p) }
            }
            return (elements, chars)
        }
        // Paragraphs split on blank lines, lines on newlines (empty ones ignored).
        var paragraphs: [ArraySlice<UInt8>] = []
        var lines: [ArraySlice<UInt8>] = []
        var paraStart = 0
        var i = 0
        var lineStart = 0
        while i <= bytes.count {
            if i == bytes.count || bytes[i] == 0x0A {
                let line = Self.trimmed(bytes[lineStart..<i])
                if !line.isEmpty { lines.append(line) }
                if line.isEmpty || i == bytes.count {
                    let p = Self.trimmed(bytes[paraStart..<i])
                    if !p.isEmpty { paragraphs.append(p) }
                    paraStart = i
                }
                lineStart = i + 1
            }
            i += 1
        }
        let (dupParas, dupParaChars) = duplicates(paragraphs)
        if c.maxDuplicateParagraphFraction > 0, !paragraphs.isEmpty,
           Double(dupParas) / Double(paragraphs.count) > c.maxDuplicateParagraphFraction { return "gopher_repetition.duplicate_paragraphs" }
        if c.maxDuplicateParagraphCharFraction > 0, Double(dupParaChars) / total > c.maxDuplicateParagraphCharFraction {
            return "gopher_repetition.duplicate_paragraph_chars"
        }
        let (dupLines, dupLineChars) = duplicates(lines)
        if c.maxDuplicateLineFraction > 0, !lines.isEmpty,
           Double(dupLines) / Double(lines.count) > c.maxDuplicateLineFraction { return "gopher_repetition.duplicate_lines" }
        if c.maxDuplicateLineCharFraction > 0, Double(dupLineChars) / total > c.maxDuplicateLineCharFraction {
            return "gopher_repetition.duplicate_line_chars"
        }
        let words = Self.words(bytes[...])
        let wordHash = words.map { w in w.withUnsafeBufferPointer { TextHash.hash($0) } }
        let wordChars = words.map { scalarCount($0) }
        func ngramKey(_ at: Int, _ n: Int) -> UInt64 {
            var h: UInt64 = UInt64(n)
            for k in at..<(at + n) { h = (h &* 0x9E37_79B9_7F4A_7C15) ^ wordHash[k]; h ^= h >> 29 }
            return h
        }
        func ngramChars(_ at: Int, _ n: Int) -> Int { wordChars[at..<(at + n)].reduce(0, +) }
        for (k, limit) in c.maxTopNgramCharFraction.enumerated() where limit > 0 {
            let n = k + 2
            guard words.count >= n else { continue }
            var counts: [UInt64: (count: Int, at: Int)] = Dictionary(minimumCapacity: words.count)
            for at in 0...(words.count - n) {
                let key = ngramKey(at, n)
                counts[key, default: (0, at)].count += 1
            }
            if let top = counts.values.max(by: { $0.count < $1.count || ($0.count == $1.count && $0.at > $1.at) }), top.count > 1,
               Double(ngramChars(top.at, n) * top.count) / total > limit { return "gopher_repetition.top_\(n)gram" }
        }
        for (k, limit) in c.maxDuplicateNgramCharFraction.enumerated() where limit > 0 {
            let n = k + 5
            guard words.count >= n else { continue }
            var seen = Set<UInt64>(minimumCapacity: words.count)
            var repeated = 0
            var at = 0
            while at + n <= words.count {
                if !seen.insert(ngramKey(at, n)).inserted {
                    repeated += ngramChars(at, n)
                    at += n
                } else { at += 1 }
            }
            if Double(repeated) / total > limit { return "gopher_repetition.duplicate_\(n)grams" }
        }
        return nil
    }

    // MARK: - Gopher quality

    func quality(_ bytes: [UInt8]) -> String? {
        let c = config.gopherQuality
        let words = Self.words(bytes[...])
        if words.count < c.minWords || words.count > c.maxWords { return "gopher_quality.word_count" }
        let stripped = words.map(Self.stripPunctuation).filter { !$0.isEmpty }
        let meanLength = stripped.isEmpty ? 0 : Double(stripped.reduce(0) { $0 + scalarCount($1) }) / Double(stripped.count)
        if meanLength < c.minMeanWordLength || meanLength > c.maxMeanWordLength { return "gopher_quality.mean_word_length" }
        var symbols = 0
        let dots = Array("...".utf8), ellipsisChar = Array("…".utf8)
        for w in words {
            for b in w where b == UInt8(ascii: "#") { symbols += 1 }
            var i = w.startIndex
            while i < w.endIndex {
                if Self.hasPrefix(w[i...], dots) { symbols += 1; i += 3 } else if Self.hasPrefix(w[i...], ellipsisChar) { symbols += 1; i += 3 } else { i += 1 }
            }
        }
        if Double(symbols) / Double(words.count) > c.maxSymbolWordRatio { return "gopher_quality.symbol_word_ratio" }
        let lines = Self.lines(bytes).map(Self.trimmed).filter { !$0.isEmpty }
        if !lines.isEmpty {
            let bulleted = lines.filter { l in Self.bullets.contains { Self.hasPrefix(l, $0) } }.count
            if Double(bulleted) / Double(lines.count) > c.maxBulletLinesRatio { return "gopher_quality.bullet_lines" }
            let ellipsisLines = lines.filter { Self.hasSuffix($0, dots) || Self.hasSuffix($0, ellipsisChar) }.count
            if Double(ellipsisLines) / Double(lines.count) > c.maxEllipsisLinesRatio { return "gopher_quality.ellipsis_lines" }
        }
        // A letter: ASCII letter or any non-ASCII scalar (a coarse test that keeps non-Latin scripts).
        let alpha = words.filter { w in w.contains { ($0 | 0x20) >= 0x61 && ($0 | 0x20) <= 0x7A || $0 >= 0x80 } }.count
        if Double(alpha) / Double(words.count) < c.minAlphaWordsRatio { return "gopher_quality.alpha_words" }
        // Occurrences of stop words, as datatrove counts them.
        let occurrences = stripped.reduce(0) { $0 + (Self.isStopWord($1) ? 1 : 0) }
        if occurrences < c.minStopWords { return "gopher_quality.stop_words" }
        return nil
    }
}
