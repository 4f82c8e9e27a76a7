/// A DeepSpeed-style hostfile: one host per line, `host slots=N` (N devices on that host; `slots`
/// may be left out for 1), `#` starts a comment, blank lines are skipped. A host listed twice is
/// an error naming both lines.
public struct Hostfile: Equatable, Sendable {
    public struct Host: Equatable, Sendable {
        public var name: String
        public var slots: Int
        /// 1-based line in the file.
        public var line: Int
    }

    public var hosts: [Host]

    public init(parsing text: String, path: String = "hostfile") throws {
        hosts = []
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let n = i + 1
            let content = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let fields = content.split(whereSeparator: \.isWhitespace)
            guard let name = fields.first else { continue }
            func fail(_ why: String) -> ClusterError { ClusterError(.badInput, "\(path):\(n): \(why): \(raw.trimmingCharacters(in: .whitespaces))") }
            guard name.allSatisfy({ $0.isLetter || $0.isNumber || "-._:@[]".contains($0) }), !name.contains("=") else {
                throw fail("not a host name")
            }
            var slots = 1
            for field in fields.dropFirst() {
                guard field.hasPrefix("slots="), let v = Int(field.dropFirst(6)) else {
                    throw fail("expected `host slots=N`")
                }
                guard v >= 1 else { throw fail("slots must be ≥ 1") }
                slots = v
            }
            guard fields.count <= 2 else { throw fail("expected `host slots=N`") }
            if let first = hosts.first(where: { $0.name == name }) {
                throw fail("host \(name) is listed twice (first on line \(first.line))")
            }
            hosts.append(Host(name: String(name), slots: slots, line: n))
        }
        guard !hosts.isEmpty else { throw ClusterError(.badInput, "\(path): no hosts (lines of `host slots=N`)") }
    }

    public var totalSlots: Int { hosts.reduce(0) { $0 + $1.slots } }
}
