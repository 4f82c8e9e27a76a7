import Foundation

/// A small JSON scanner for the JSONL hot path: finds one string field of a top-level object and
/// validates the rest of the line, several times faster than `JSONSerialization` because it
/// builds no dictionary. Errors are phrases that follow "file:line: ".
public enum JSONLine {
    public struct Failure: Error, Sendable { public let reason: String }

    /// The value of string field `field` in the JSON object `line`; nil when the field is missing
    /// or not a string (a non-object or invalid JSON throws).
    public static func stringField(_ field: String, in line: UnsafeRawBufferPointer) throws(Failure) -> String? {
        try fields(field, number: nil, in: line).string
    }

    /// String field `field` and, when `numberField` is given, number field `numberField` (nil when
    /// missing or not a number) of the JSON object `line`, in one scan.
    public static func fields(_ field: String, number numberField: String?, in line: UnsafeRawBufferPointer) throws(Failure) -> (string: String?, number: Double?) {
        var p = Parser(bytes: line.bindMemory(to: UInt8.self))
        let key = Array(field.utf8)
        let numberKey = numberField.map { Array($0.utf8) }
        var number: Double?
        p.skipSpace()
        guard p.peek == UInt8(ascii: "{") else { throw Failure(reason: "not a JSON object") }
        p.i += 1
        var found: String?
        p.skipSpace()
        if p.peek == UInt8(ascii: "}") {
            p.i += 1
        } else {
            while true {
                p.skipSpace()
                guard p.peek == UInt8(ascii: "\"") else { throw Failure(reason: "not a JSON object (expected a key)") }
                let k = try p.string()
                p.skipSpace()
                guard p.peek == UInt8(ascii: ":") else { throw Failure(reason: "not a JSON object (expected ':')") }
                p.i += 1
                p.skipSpace()
                if k == key && p.peek == UInt8(ascii: "\"") {
                    found = String(decoding: try p.string(), as: UTF8.self)
                } else if k == numberKey, p.peek == UInt8(ascii: "-") || (p.peek >= 0x30 && p.peek <= 0x39) {
                    let begin = p.i
                    try p.skipValue(depth: 0)
                    number = Double(String(decoding: UnsafeBufferPointer(rebasing: p.bytes[begin..<p.i]), as: UTF8.self))
                } else {
                    try p.skipValue(depth: 0)
                }
                p.skipSpace()
                if p.peek == UInt8(ascii: ",") { p.i += 1; continue }
                if p.peek == UInt8(ascii: "}") { p.i += 1; break }
                throw Failure(reason: "not a JSON object (expected ',' or '}')")
            }
        }
        p.skipSpace()
        guard p.i == p.bytes.count else { throw Failure(reason: "not a JSON object (text after the closing brace)") }
        return (found, number)
    }

    struct Parser {
        let bytes: UnsafeBufferPointer<UInt8>
        var i = 0
        var peek: UInt8 { i < bytes.count ? bytes[i] : 0 }

        mutating func skipSpace() {
            while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x09 || bytes[i] == 0x0A || bytes[i] == 0x0D { i += 1 }
        }

        /// A string's decoded UTF-8 bytes; `i` at its opening quote.
        mutating func string() throws(Failure) -> [UInt8] {
            i += 1
            let begin = i
            // Fast path: no escapes.
            while i < bytes.count {
                let c = bytes[i]
                if c == UInt8(ascii: "\"") {
                    let out = Array(UnsafeBufferPointer(rebasing: bytes[begin..<i]))
                    i += 1
                    return out
                }
                if c == UInt8(ascii: "\\") || c < 0x20 { break }
                i += 1
            }
            var out = Array(UnsafeBufferPointer(rebasing: bytes[begin..<i]))
            while i < bytes.count {
                let c = bytes[i]
                if c == UInt8(ascii: "\"") { i += 1; return out }
                if c < 0x20 { throw Failure(reason: "invalid JSON (control character in a string)") }
                if c != UInt8(ascii: "\\") { out.append(c); i += 1; continue }
                i += 1
                guard i < bytes.count else { break }
                let e = bytes[i]
                i += 1
                switch e {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "/"): out.append(0x2F)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if scalar >= 0xD800 && scalar < 0xDC00 {
                        // A surrogate pair; a lone surrogate becomes U+FFFD.
                        if i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") {
                            i += 2
                            let low = try hex4()
                            scalar = (low >= 0xDC00 && low < 0xE000) ? 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00) : 0xFFFD
                        } else { scalar = 0xFFFD }
                    } else if scalar >= 0xDC00 && scalar < 0xE000 { scalar = 0xFFFD }
                    out.append(contentsOf: Array(String(Character(Unicode.Scalar(scalar) ?? "\u{FFFD}")).utf8))
                default: throw Failure(reason: "invalid JSON (bad escape \\\(Character(Unicode.Scalar(e))))")
                }
            }
            throw Failure(reason: "invalid JSON (unterminated string)")
        }

        mutating func hex4() throws(Failure) -> UInt32 {
            guard i + 4 <= bytes.count else { throw Failure(reason: "invalid JSON (bad \\u escape)") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = bytes[i]
                let d: UInt32
                switch c {
                case 0x30...0x39: d = UInt32(c - 0x30)
                case 0x41...0x46: d = UInt32(c - 0x41 + 10)
                case 0x61...0x66: d = UInt32(c - 0x61 + 10)
                default: throw Failure(reason: "invalid JSON (bad \\u escape)")
                }
                v = v << 4 | d
                i += 1
            }
            return v
        }

        mutating func skipValue(depth: Int) throws(Failure) {
            guard depth < 512 else { throw Failure(reason: "invalid JSON (nested too deeply)") }
            skipSpace()
            switch peek {
            case UInt8(ascii: "\""): _ = try string()
            case UInt8(ascii: "{"):
                i += 1; skipSpace()
                if peek == UInt8(ascii: "}") { i += 1; return }
                while true {
                    skipSpace()
                    guard peek == UInt8(ascii: "\"") else { throw Failure(reason: "invalid JSON (expected a key)") }
                    _ = try string(); skipSpace()
                    guard peek == UInt8(ascii: ":") else { throw Failure(reason: "invalid JSON (expected ':')") }
                    i += 1
                    try skipValue(depth: depth + 1); skipSpace()
                    if peek == UInt8(ascii: ",") { i += 1; continue }
                    if peek == UInt8(ascii: "}") { i += 1; return }
                    throw Failure(reason: "invalid JSON (expected ',' or '}')")
                }
            case UInt8(ascii: "["):
                i += 1; skipSpace()
                if peek == UInt8(ascii: "]") { i += 1; return }
                while true {
                    try skipValue(depth: depth + 1); skipSpace()
                    if peek == UInt8(ascii: ",") { i += 1; continue }
                    if peek == UInt8(ascii: "]") { i += 1; return }
                    throw Failure(reason: "invalid JSON (expected ',' or ']')")
                }
            case UInt8(ascii: "t"): try literal("true")
            case UInt8(ascii: "f"): try literal("false")
            case UInt8(ascii: "n"): try literal("null")
            default:
                let begin = i
                while i < bytes.count, (bytes[i] >= 0x30 && bytes[i] <= 0x39) || bytes[i] == 0x2D || bytes[i] == 0x2B
                        || bytes[i] == 0x2E || bytes[i] == 0x65 || bytes[i] == 0x45 { i += 1 }
                guard i > begin else { throw Failure(reason: "invalid JSON (unexpected character)") }
            }
        }

        mutating func literal(_ word: StaticString) throws(Failure) {
            let n = word.utf8CodeUnitCount
            guard i + n <= bytes.count, memcmp(bytes.baseAddress! + i, word.utf8Start, n) == 0 else {
                throw Failure(reason: "invalid JSON (unexpected character)")
            }
            i += n
        }
    }

    /// Whether any of the 8 bytes of `w` needs escaping (< 0x20, `"` or `\\`): the "has less"
    /// and "has zero byte" bit tricks, exact for the question "any?".
    @inline(__always) static func needsEscape(_ w: UInt64) -> Bool {
        let lo: UInt64 = 0x0101_0101_0101_0101, hi: UInt64 = 0x8080_8080_8080_8080
        let control = (w &- lo &* 0x20) & ~w & hi
        let q = w ^ (lo &* 0x22), b = w ^ (lo &* 0x5C)
        return (control | ((q &- lo) & ~q & hi) | ((b &- lo) & ~b & hi)) != 0
    }

    /// `s` as a JSON string literal (quotes included), appended to `out`.
    public static func appendQuoted(_ s: String, to out: inout [UInt8]) {
        out.append(0x22)
        var s = s
        s.withUTF8 { u in
            var runStart = 0
            var j = 0
            let raw = UnsafeRawPointer(u.baseAddress)
            while j < u.count {
                // Clean 8-byte words go by at once.
                if j + 8 <= u.count, !needsEscape(raw!.loadUnaligned(fromByteOffset: j, as: UInt64.self)) {
                    j += 8
                    continue
                }
                let c = u[j]
                if c >= 0x20 && c != 0x22 && c != 0x5C { j += 1; continue }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: u[runStart..<j]))
                switch c {
                case 0x22: out.append(contentsOf: [0x5C, 0x22])
                case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
                case 0x0A: out.append(contentsOf: [0x5C, 0x6E])
                case 0x0D: out.append(contentsOf: [0x5C, 0x72])
                case 0x09: out.append(contentsOf: [0x5C, 0x74])
                default:
                    let hex = Array("0123456789abcdef".utf8)
                    out.append(contentsOf: [0x5C, 0x75, 0x30, 0x30, hex[Int(c >> 4)], hex[Int(c & 15)]])
                }
                j += 1
                runStart = j
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: u[runStart..<u.count]))
        }
        out.append(0x22)
    }
}
