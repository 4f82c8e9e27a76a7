import Foundation

/// sacreBLEU's default tokenisation, `13a` (mteval-v13a.pl's, as WMT uses it): drop `<skipped>`,
/// join lines hyphenated across a newline, unescape `&quot; &amp; &lt; &gt;`, then split off
/// punctuation and symbols (ASCII ranges `{-~`, `[-\``, space-`&`, `(-+`, `:-@`, `/`), periods
/// and commas except between digits, and a dash after a digit; whitespace collapses to one space.
/// The four rules are regular-expression substitutions applied in order, each left to right
/// over non-overlapping matches, exactly as sacreBLEU's `TokenizerRegexp` does.
public struct Tokenizer13a: Sendable {
    private static let rules: [(NSRegularExpression, String)] = [
        (#"([\{-\~\[-\` -\&\(-\+\:-\@\/])"#, " $1 "),
        (#"([^0-9])([\.,])"#, "$1 $2 "),
        (#"([\.,])([^0-9])"#, " $1 $2"),
        (#"([0-9])(-)"#, "$1 $2 "),
    ].map { (try! NSRegularExpression(pattern: $0.0), $0.1) }

    public init() {}

    /// The tokens of `line`, joined by single spaces.
    public func callAsFunction(_ line: String) -> String {
        var s = line.replacingOccurrences(of: "<skipped>", with: "")
            .replacingOccurrences(of: "-\n", with: "")
            .replacingOccurrences(of: "\n", with: " ")
        if s.contains("&") {
            s = s.replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&amp;", with: "&")
                .replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
        }
        s = " " + s + " "
        for (pattern, template) in Self.rules {
            s = pattern.stringByReplacingMatches(in: s, range: NSRange(s.startIndex..., in: s), withTemplate: template)
        }
        return s.split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }
}
