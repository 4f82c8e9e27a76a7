import Foundation

/// What one rank's flight recorder held when one of its collectives failed: the file
/// `<forensics dir>/rank-<r>.json` (docs/protocol.md, "Forensics").
public struct FlightDump: Codable, Sendable, Equatable {
    /// One collective as the rank saw it.
    public struct Record: Codable, Sendable, Equatable {
        public enum State: String, Codable, Sendable { case started, completed, failed }

        public var epoch: UInt64
        public var sequence: UInt64
        public var operation: String
        public var bytes: Int
        /// The predecessor it receives from and the successor it sends to.
        public var from: Int
        public var to: Int
        /// Wall clock, unix seconds.
        public var startedAt: Double
        /// nil while it was still running.
        public var durationMs: Double?
        public var state: State
        /// "running", "ok" or the error code.
        public var outcome: String

        public init(epoch: UInt64, sequence: UInt64, operation: String, bytes: Int, from: Int, to: Int, startedAt: Double,
                    durationMs: Double?, state: State, outcome: String) {
            self.epoch = epoch
            self.sequence = sequence
            self.operation = operation
            self.bytes = bytes
            self.from = from
            self.to = to
            self.startedAt = startedAt
            self.durationMs = durationMs
            self.state = state
            self.outcome = outcome
        }

        /// From a recorder's record.
        public init(_ r: FlightRecord) {
            let state: State = r.outcome == "running" ? .started : r.outcome == "ok" ? .completed : .failed
            self.init(epoch: r.epoch, sequence: r.sequence, operation: r.operation, bytes: r.bytes, from: r.receivesFrom,
                      to: r.sendsTo, startedAt: r.startedAt, durationMs: r.duration.map { $0.milliseconds }, state: state,
                      outcome: r.outcome)
        }

        enum CodingKeys: String, CodingKey {
            case epoch, sequence, operation, bytes, from, to, startedAt = "started_at", durationMs = "duration_ms", state, outcome
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(epoch, forKey: .epoch)
            try c.encode(sequence, forKey: .sequence)
            try c.encode(operation, forKey: .operation)
            try c.encode(bytes, forKey: .bytes)
            try c.encode(from, forKey: .from)
            try c.encode(to, forKey: .to)
            try c.encode(startedAt, forKey: .startedAt)
            try c.encode(durationMs, forKey: .durationMs)  // null while running
            try c.encode(state, forKey: .state)
            try c.encode(outcome, forKey: .outcome)
        }
    }

    public var rank: Int
    public var worldSize: Int
    public var epoch: UInt64
    public var jobID: UInt64
    /// The failure, one line.
    public var error: String
    /// Unix seconds.
    public var writtenAt: Double
    /// Oldest first.
    public var records: [Record]

    public init(rank: Int, worldSize: Int, epoch: UInt64, jobID: UInt64, error: String, writtenAt: Double, records: [Record]) {
        self.rank = rank
        self.worldSize = worldSize
        self.epoch = epoch
        self.jobID = jobID
        self.error = error
        self.writtenAt = writtenAt
        self.records = records
    }

    enum CodingKeys: String, CodingKey {
        case rank, worldSize = "world_size", epoch, jobID = "job_id", error, writtenAt = "written_at", records
    }

    public static func fileName(rank: Int) -> String { "rank-\(rank).json" }

    /// Writes `directory/rank-<r>.json` atomically (a temporary file renamed into place).
    public func write(in directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try encoder.encode(self).write(to: directory.appendingPathComponent(Self.fileName(rank: rank)), options: .atomic)
    }

    /// Every `rank-*.json` of `directory`, by rank; a file that does not decode is an error naming it.
    public static func load(directory: URL) throws -> [FlightDump] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return try names.filter { $0.hasPrefix("rank-") && $0.hasSuffix(".json") }.sorted().map { name in
            let url = directory.appendingPathComponent(name)
            do {
                return try JSONDecoder().decode(FlightDump.self, from: Data(contentsOf: url))
            } catch {
                throw CommError(.invalidArgument, "\(url.path) is not a flight-recorder dump: \(error)")
            }
        }.sorted { $0.rank < $1.rank }
    }
}

/// Compares the ranks' flight-recorder dumps of a failed job, as PyTorch's flight-recorder
/// analyser does: per membership epoch, the first collective that not every rank completed, who
/// joined and who completed it, ranks that called different collectives at the same sequence, and
/// ranks that left no dump at all. Pure: no files, no clocks.
public enum FlightTrace {
    public enum Finding: Sendable, Equatable {
        /// `missing` never started collective `sequence` (ranks without a dump count as missing).
        case notAllJoined(epoch: UInt64, sequence: UInt64, operation: String, bytes: Int, missing: [Int], started: [Int], completed: [Int])
        /// Every rank started it, not every rank completed it.
        case notAllCompleted(epoch: UInt64, sequence: UInt64, operation: String, bytes: Int, started: [Int], completed: [Int])
        /// Ranks recorded different operations or sizes at the same sequence: (rank, operation, bytes).
        case mismatch(epoch: UInt64, sequence: UInt64, calls: [Call])
        case noDump(rank: Int)
        case allCompleted

        public struct Call: Sendable, Equatable {
            public var rank: Int, operation: String, bytes: Int
            public init(rank: Int, operation: String, bytes: Int) {
                self.rank = rank
                self.operation = operation
                self.bytes = bytes
            }
        }
    }

    /// The dumps of the job that wrote last (a run directory reused by another job keeps older files).
    public static func latestJob(_ dumps: [FlightDump]) -> (jobID: UInt64, dumps: [FlightDump]) {
        guard let newest = dumps.max(by: { $0.writtenAt < $1.writtenAt }) else { return (0, []) }
        return (newest.jobID, dumps.filter { $0.jobID == newest.jobID })
    }

    /// The findings of `dumps` (at most one per rank, of one job), mismatches first within an epoch.
    public static func analyze(_ dumps: [FlightDump]) -> [Finding] {
        guard !dumps.isEmpty else { return [] }
        let worldSize = dumps.map(\.worldSize).max() ?? 0
        var findings: [Finding] = []
        let epochs = Set(dumps.flatMap { $0.records.map(\.epoch) }).sorted()
        var incomplete = false
        for epoch in epochs {
            // Per rank with records in this epoch: its records by sequence and the window it covers.
            var byRank: [Int: [UInt64: FlightDump.Record]] = [:]
            for d in dumps {
                let records = d.records.filter { $0.epoch == epoch }
                guard !records.isEmpty else { continue }
                byRank[d.rank] = Dictionary(records.map { ($0.sequence, $0) }, uniquingKeysWith: { _, last in last })
            }
            let sequences = Set(byRank.values.flatMap(\.keys)).sorted()
            for s in sequences {
                let calls = byRank.keys.sorted().compactMap { r in byRank[r]![s].map { Finding.Call(rank: r, operation: $0.operation, bytes: $0.bytes) } }
                if Set(calls.map(\.operation)).count > 1 || Set(calls.map(\.bytes)).count > 1 {
                    findings.append(.mismatch(epoch: epoch, sequence: s, calls: calls))
                }
            }
            // The first sequence not completed by every rank that recorded this epoch; ranks
            // without records here are unknown, and count as missing from that collective.
            let known = Set(byRank.keys)
            for s in sequences {
                var started: [Int] = [], completed: [Int] = [], missing: [Int] = []
                for r in 0..<worldSize {
                    guard let records = byRank[r] else { missing.append(r); continue }
                    if let record = records[s] {
                        started.append(r)
                        if record.state == .completed { completed.append(r) }
                    } else if let oldest = records.keys.min(), s < oldest {
                        // Evicted from the ring buffer: the rank went past it.
                        started.append(r)
                        completed.append(r)
                    } else {
                        missing.append(r)
                    }
                }
                guard completed.count < known.count else { continue }
                let first = byRank.keys.sorted().compactMap { byRank[$0]![s] }.first!
                findings.append(missing.isEmpty
                    ? .notAllCompleted(epoch: epoch, sequence: s, operation: first.operation, bytes: first.bytes, started: started, completed: completed)
                    : .notAllJoined(epoch: epoch, sequence: s, operation: first.operation, bytes: first.bytes, missing: missing,
                                    started: started, completed: completed))
                incomplete = true
                break
            }
        }
        let dumped = Set(dumps.map(\.rank))
        for r in 0..<worldSize where !dumped.contains(r) { findings.append(.noDump(rank: r)) }
        if !incomplete && !findings.contains(where: { if case .mismatch = $0 { true } else { false } }) {
            findings.append(.allCompleted)
        }
        return findings
    }

    /// The report for a person, one line per finding (PyTorch's wording where it has one).
    public static func report(_ findings: [Finding]) -> [String] {
        func set(_ ranks: [Int]) -> String { "{" + ranks.map(String.init).joined(separator: ", ") + "}" }
        return findings.map { f in
            switch f {
            case let .notAllJoined(epoch, sequence, operation, bytes, missing, started, completed):
                return "epoch \(epoch), collective \(sequence) (\(operation), \(bytes) bytes): not all ranks joined; missing ranks: \(set(missing)); started by \(set(started)), completed by \(set(completed))"
            case let .notAllCompleted(epoch, sequence, operation, bytes, started, completed):
                return "epoch \(epoch), collective \(sequence) (\(operation), \(bytes) bytes): every rank joined, not all completed; started by \(set(started)), completed by \(set(completed))"
            case let .mismatch(epoch, sequence, calls):
                let list = calls.map { "rank \($0.rank) \($0.operation) \($0.bytes) bytes" }.joined(separator: ", ")
                return "epoch \(epoch), collective \(sequence): ranks called different collectives: \(list)"
            case let .noDump(rank):
                return "rank \(rank) wrote no dump: it died or was killed"
            case .allCompleted:
                return "all ranks completed every recorded collective"
            }
        }
    }
}

extension Duration {
    /// In milliseconds, fractional.
    var milliseconds: Double { Double(components.seconds) * 1e3 + Double(components.attoseconds) / 1e15 }
}
