/// The GPT-2 byte-level scheme that Hugging Face's `ByteLevel` pre-tokenizer and decoder use:
/// every byte has a printable stand-in character, and text is split by the GPT-2 pattern
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
/// before BPE runs inside each piece.
public enum ByteLevel {
    /// Byte → its stand-in scalar (GPT-2's `bytes_to_unicode`).
    public static let byteToScalar: [Unicode.Scalar] = {
        var printable = Array(33...126) + Array(161...172) + Array(174...255)
        var chars = printable
        var n = 0
        for b in 0..<256 where !printable.contains(b) {
            printable.append(b)
            chars.append(256 + n)
            n += 1
        }
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        for (b, c) in zip(printable, chars) { table[b] = Unicode.Scalar(UInt32(c))! }
        return table
    }()

    public static let scalarToByte: [UInt32: UInt8] = {
        var m: [UInt32: UInt8] = [:]
        for (b, s) in byteToScalar.enumerated() { m[s.value] = UInt8(b) }
        return m
    }()

    /// The token string of a byte sequence (its bytes' stand-ins).
    public static func string(_ bytes: some Sequence<UInt8>) -> String {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(byteToScalar[Int(b)]) }
        return String(s)
    }

    /// The bytes of a token string; nil when a character is not a byte stand-in.
    public static func bytes(_ token: String) -> [UInt8]? {
        var out: [UInt8] = []
        for s in token.unicodeScalars {
            guard let b = scalarToByte[s.value] else { return nil }
            out.append(b)
        }
        return out
    }

    enum Class: UInt8 { case letter, number, space, other }

    /// ASCII classes by byte.
    static let asciiClass: [Class] = (0..<128).map { b -> Class in
        let c = UInt8(b)
        if (c | 0x20) >= 0x61 && (c | 0x20) <= 0x7A { return .letter }
        if c >= 0x30 && c <= 0x39 { return .number }
        if c == 0x20 || (c >= 0x09 && c <= 0x0D) { return .space }
        return .other
    }

    @inline(__always) static func classify(_ s: Unicode.Scalar) -> Class {
        if s.value < 128 { return asciiClass[Int(s.value)] }
        if s.properties.isWhitespace { return .space }
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return .other
        }
    }

    /// Calls `body` with the byte range of every GPT-2 pre-token of `utf8` (valid UTF-8).
    public static func split(_ utf8: UnsafeBufferPointer<UInt8>, _ body: (Range<Int>) -> Void) {
        let n = utf8.count
        // Scalar starts and classes (one pass; ASCII fast).
        var starts: [Int32] = []
        var classes: [Class] = []
        starts.reserveCapacity(n + 1)
        classes.reserveCapacity(n)
        var values: [UInt32] = []
        values.reserveCapacity(n)
        var i = 0
        while i < n {
            let b = utf8[i]
            starts.append(Int32(i))
            if b < 0x80 {
                classes.append(asciiClass[Int(b)])
                values.append(UInt32(b))
                i += 1
                continue
            }
            var len = 1
            var v: UInt32
            if b >= 0xF0 { len = 4; v = UInt32(b & 0x07) } else if b >= 0xE0 { len = 3; v = UInt32(b & 0x0F) } else { len = 2; v = UInt32(b & 0x1F) }
            for k in 1..<len where i + k < n { v = v << 6 | UInt32(utf8[i + k] & 0x3F) }
            i = min(n, i + len)
            let scalar = Unicode.Scalar(v) ?? "\u{FFFD}"
            classes.append(classify(scalar))
            values.append(v)
        }
        let m = classes.count
        starts.append(Int32(n))
        var p = 0
        @inline(__always) func isApostropheSuffix(_ at: Int) -> Int {
            // 's 't 'm 'd (2 scalars) or 're 've 'll (3); 0 when none.
            guard at + 1 < m, values[at] == 0x27 else { return 0 }
            let c1 = values[at + 1]
            if c1 == 0x73 || c1 == 0x74 || c1 == 0x6D || c1 == 0x64 { return 2 }
            if at + 2 < m {
                let c2 = values[at + 2]
                if (c1 == 0x72 && c2 == 0x65) || (c1 == 0x76 && c2 == 0x65) || (c1 == 0x6C && c2 == 0x6C) { return 3 }
            }
            return 0
        }
        while p < m {
            let start = p
            let a = isApostropheSuffix(p)
            if a > 0 {
                p += a
            } else {
                var q = p
                if values[q] == 0x20 && q + 1 < m && classes[q + 1] != .space { q += 1 }
                let c = classes[q]
                if c != .space {
                    // ` ?\p{L}+`, ` ?\p{N}+` or ` ?[^\s\p{L}\p{N}]+`.
                    q += 1
                    while q < m && classes[q] == c { q += 1 }
                    p = q
                } else {
                    // Whitespace: `\s+(?!\S)` leaves the last space to the next token, else `\s+`.
                    var r = p
                    while r < m && classes[r] == .space { r += 1 }
                    if r == m || r - p == 1 { p = r } else { p = r - 1 }
                }
            }
            body(Int(starts[start])..<Int(starts[p]))
        }
    }
}
