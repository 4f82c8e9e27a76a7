import Foundation
import Yams

/// A sweep's results: the table as Markdown, CSV and JSON, the loss curves as SVG, and the
/// winner's full config as YAML.
public enum SweepReport {
    /// Writes results.md, results.csv, results.json and curves.svg into `directory`, and
    /// best.yaml from `winnerConfig` when there is a winner.
    public static func write(_ state: SweepState, winnerConfig: TrainConfig?, to directory: URL) throws {
        try markdown(state).write(to: directory.appendingPathComponent("results.md"), atomically: true, encoding: .utf8)
        try csv(state).write(to: directory.appendingPathComponent("results.csv"), atomically: true, encoding: .utf8)
        try json(state).write(to: directory.appendingPathComponent("results.json"), options: .atomic)
        try svg(state).write(to: directory.appendingPathComponent("curves.svg"), atomically: true, encoding: .utf8)
        if let winnerConfig, let winner = state.winner {
            let yaml = "# The winner of the sweep: \(winner.id)\n" + (try YAMLEncoder().encode(winnerConfig))
            try yaml.write(to: directory.appendingPathComponent("best.yaml"), atomically: true, encoding: .utf8)
        }
    }

    static func number(_ x: Double?) -> String { x.map { String(format: "%.4f", $0) } ?? "" }

    static func columns(_ state: SweepState) -> [String] {
        ["trial"] + state.parameterPaths + ["status", "steps", "final_loss", "best_loss", "validation_loss"]
    }

    static func row(_ t: SweepState.Trial, _ state: SweepState) -> [String] {
        [t.id] + state.parameterPaths.map { t.parameters[$0] ?? "" }
            + [t.status.rawValue, "\(t.steps)", number(t.finalLoss), number(t.bestLoss), number(t.validationLoss)]
    }

    public static func markdown(_ state: SweepState) -> String {
        let cols = columns(state)
        var lines = ["| " + cols.joined(separator: " | ") + " |", "|" + cols.map { _ in "---" }.joined(separator: "|") + "|"]
        for t in state.trials {
            lines.append("| " + row(t, state).map { $0.replacingOccurrences(of: "|", with: "\\|") }.joined(separator: " | ") + " |")
        }
        if let w = state.winner { lines += ["", "Winner: \(w.id) (best.yaml)."] }
        return lines.joined(separator: "\n") + "\n"
    }

    public static func csv(_ state: SweepState) -> String {
        func field(_ s: String) -> String {
            s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
        }
        return ([columns(state)] + state.trials.map { row($0, state) }).map { $0.map(field).joined(separator: ",") }.joined(separator: "\n") + "\n"
    }

    public static func json(_ state: SweepState) throws -> Data {
        let trials: [[String: Any]] = state.trials.map { t in
            var o: [String: Any] = ["trial": t.id, "parameters": t.parameters, "status": t.status.rawValue, "steps": t.steps]
            o["final_loss"] = t.finalLoss ?? NSNull()
            o["best_loss"] = t.bestLoss ?? NSNull()
            o["validation_loss"] = t.validationLoss ?? NSNull()
            if let note = t.note { o["note"] = note }
            return o
        }
        var top: [String: Any] = ["trials": trials]
        if let w = state.winner { top["winner"] = w.id }
        return try JSONSerialization.data(withJSONObject: top, options: [.prettyPrinted, .sortedKeys])
    }

    /// Loss against step for every trial: one polyline each, stopped trials dashed, a legend.
    public static func svg(_ state: SweepState) -> String {
        let width = 760.0, height = 420.0, left = 60.0, right = 180.0, top = 20.0, bottom = 40.0
        let points = state.trials.flatMap(\.curve)
        let maxStep = Double(max(1, points.map(\.step).max() ?? 1))
        var lo = points.map(\.loss).min() ?? 0, hi = points.map(\.loss).max() ?? 1
        if hi - lo < 1e-9 { lo -= 0.5; hi += 0.5 }
        let plotW = width - left - right, plotH = height - top - bottom
        func x(_ s: Int) -> Double { left + Double(s) / maxStep * plotW }
        func y(_ l: Double) -> Double { top + (hi - l) / (hi - lo) * plotH }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
        var s = ["<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" font-family=\"sans-serif\" font-size=\"11\">",
                 "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>",
                 "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotW))\" height=\"\(f(plotH))\" fill=\"none\" stroke=\"#444\"/>"]
        for k in 0...4 {
            let l = lo + (hi - lo) * Double(k) / 4, st = Int((maxStep * Double(k) / 4).rounded())
            s.append("<text x=\"\(f(left - 6))\" y=\"\(f(y(l) + 4))\" text-anchor=\"end\">\(String(format: "%.3f", l))</text>")
            s.append("<text x=\"\(f(x(st)))\" y=\"\(f(height - bottom + 16))\" text-anchor=\"middle\">\(st)</text>")
        }
        s.append("<text x=\"\(f(left + plotW / 2))\" y=\"\(f(height - 6))\" text-anchor=\"middle\">step</text>")
        s.append("<text x=\"14\" y=\"\(f(top + plotH / 2))\" text-anchor=\"middle\" transform=\"rotate(-90 14 \(f(top + plotH / 2)))\">loss</text>")
        for (i, t) in state.trials.enumerated() {
            let color = palette[i % palette.count]
            if !t.curve.isEmpty {
                let path = t.curve.map { "\(f(x($0.step))),\(f(y($0.loss)))" }.joined(separator: " ")
                let dash = t.status == .stopped ? " stroke-dasharray=\"4 3\"" : ""
                s.append("<polyline class=\"trial\" data-trial=\"\(t.id)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.5\"\(dash) points=\"\(path)\"/>")
            }
            let ly = top + 14 * Double(i) + 8
            s.append("<line x1=\"\(f(width - right + 12))\" y1=\"\(f(ly))\" x2=\"\(f(width - right + 32))\" y2=\"\(f(ly))\" stroke=\"\(color)\" stroke-width=\"2\"/>")
            s.append("<text x=\"\(f(width - right + 36))\" y=\"\(f(ly + 4))\">\(t.id) (\(t.status.rawValue))</text>")
        }
        s.append("</svg>")
        return s.joined(separator: "\n") + "\n"
    }
}
