import Foundation

/// A job's progress for a person: one line per logged step, or, when stdout is a terminal, one
/// line rewritten in place with the ETA. Other lines (`log`) are printed between.
public final class ProgressLine {
    public let totalSteps: Int
    public let interactive: Bool
    private let output: (String) -> Void
    private var started: Date?
    private var firstStep = 0
    private var open = false

    public init(totalSteps: Int, interactive: Bool, output: @escaping (String) -> Void) {
        self.totalSteps = totalSteps
        self.interactive = interactive
        self.output = output
    }

    /// A line of its own (closes the rewritten progress line first).
    public func log(_ line: String) {
        finish()
        output(line)
    }

    /// Step `step` (0-based) is done; `text` describes it. Appends the ETA from the rate so far.
    public func step(_ step: Int, _ text: String) {
        if started == nil { started = Date(); firstStep = step }
        let done = step + 1
        let elapsed = Date().timeIntervalSince(started!)
        let rate = Double(max(1, done - firstStep)) / max(elapsed, 1e-9)
        let line = text + " | eta \(Self.format(Double(totalSteps - done) / rate))"
        if interactive {
            FileHandle.standardOutput.write(Data(("\r\u{1B}[K" + line).utf8))
            open = true
        } else {
            output(line)
        }
    }

    /// Ends the rewritten line, if one is open.
    public func finish() {
        if open {
            FileHandle.standardOutput.write(Data("\n".utf8))
            open = false
        }
    }

    /// "42s", "3m5s", "2h10m".
    public static func format(_ s: Double) -> String {
        guard s.isFinite else { return "?" }
        let t = Int(s.rounded())
        return t >= 3600 ? "\(t / 3600)h\(t % 3600 / 60)m" : t >= 60 ? "\(t / 60)m\(t % 60)s" : "\(t)s"
    }
}
