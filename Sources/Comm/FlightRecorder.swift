import Foundation
import Synchronization

/// Where the communication layer writes diagnostics: one call per (multi-line) message.
public typealias CommLog = @Sendable (String) -> Void

/// Writes to stderr; the default `CommLog`.
public let standardErrorCommLog: CommLog = { message in
    let text = message.hasSuffix("\n") ? message : message + "\n"
    FileHandle.standardError.write(Data(text.utf8))
}

/// One collective as seen by one rank.
public struct FlightRecord: Sendable {
    public var operation: String
    public var epoch: UInt64
    public var sequence: UInt64
    /// Buffer size in bytes (fp32 elements × 4; scalars × 8).
    public var bytes: Int
    /// Predecessor (receives from) and successor (sends to).
    public var receivesFrom: Int
    public var sendsTo: Int
    public var start: ContinuousClock.Instant
    /// The same moment on the wall clock, unix seconds (for dumps compared across hosts).
    public var startedAt: Double = Date().timeIntervalSince1970
    /// nil while running.
    public var duration: Duration?
    /// "running", "ok" or an error code.
    public var outcome: String
}

/// The last `capacity` collectives of a group, kept in memory and dumped to the log when one fails
/// (and to `<forensics dir>/rank-<r>.json`, `FlightDump`), so a hang or crash report shows what
/// every rank was doing.
public final class FlightRecorder: Sendable {
    private struct State {
        var records: [FlightRecord] = []
        var next = 0
        var total = 0
    }

    public let capacity: Int
    private let state = Mutex(State())

    public init(capacity: Int = 64) {
        self.capacity = max(1, capacity)
    }

    /// Starts a record; returns its handle for `finish`.
    func begin(_ record: FlightRecord) -> Int {
        state.withLock { s in
            let handle = s.total
            if s.records.count < capacity { s.records.append(record) } else { s.records[s.next] = record }
            s.next = (s.next + 1) % capacity
            s.total += 1
            return handle
        }
    }

    func finish(_ handle: Int, outcome: String) {
        state.withLock { s in
            guard s.total - handle <= s.records.count else { return }
            let slot = handle % capacity
            s.records[slot].duration = s.records[slot].start.duration(to: .now)
            s.records[slot].outcome = outcome
        }
    }

    /// The records, oldest first.
    public var records: [FlightRecord] {
        state.withLock { s in
            s.records.count < capacity ? s.records : Array(s.records[s.next...] + s.records[..<s.next])
        }
    }

    /// A table of the records, oldest first, for the log.
    public func dump(rank: Int) -> String {
        let now = ContinuousClock.now
        let snapshot = records
        func ms(_ d: Duration) -> String {
            String(format: "%.3f", Double(d.components.seconds) * 1e3 + Double(d.components.attoseconds) / 1e15)
        }
        func row(_ fields: [String]) -> String {
            let widths = [6, 6, 17, 12, 5, 5, 15, 11]
            var line = " "
            for (i, f) in fields.enumerated() {
                let w = i < widths.count ? widths[i] : 0
                line += String(repeating: " ", count: max(0, w - f.count)) + f + " "
            }
            return line
        }
        var lines = ["flight recorder of rank \(rank) (last \(snapshot.count) collectives, oldest first):",
                     row(["epoch", "seq", "operation", "bytes", "from", "to", "started ms ago", "took ms", "outcome"])]
        for r in snapshot {
            lines.append(row(["\(r.epoch)", "\(r.sequence)", r.operation, "\(r.bytes)", "\(r.receivesFrom)", "\(r.sendsTo)",
                              ms(r.start.duration(to: now)), r.duration.map(ms) ?? "-", r.outcome]))
        }
        return lines.joined(separator: "\n")
    }
}
