import Foundation
import Testing
import ZeroTrainTestKit

#if canImport(Glibc)
import Glibc
#endif

/// `zerotrain sweep` end to end: real `zerotrain local` jobs per trial, the median rule
/// stopping trials, the results, SIGKILL of the sweep and its resumption, and bad input.
@Suite(.serialized) struct SweepCommandTests {
    static let base = """
        model: {num_layers: 1, hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 2, max_seq_len: 32}
        training: {lr: 0.003, warmup_steps: 2, total_steps: 60, micro_batch_size: 8, threads: 1, log_interval: 10, checkpoint_interval: 0}
        data: {seq_len: 32}
        cluster: {heartbeat_interval_ms: 200, heartbeat_timeout_ms: 5000}
        """

    /// 8 trials: 4 learning rates × 2 seeds; the tiny rates fall behind and meet the median rule.
    static let space = """
        sampler: grid
        parameters:
          training.lr: [0.02, 0.01, 0.00002, 0.00001]
          training.seed: [1, 2]
        early_stopping: {rule: median, grace: 10, interval: 10, min_trials: 2}
        """

    struct Trial { let id: String; let status: String; let starts: Int; let steps: Int; let rung: Int?; var note: String? = nil }

    static func trials(_ dir: URL) throws -> [Trial] {
        guard let data = FileManager.default.contents(atPath: dir.appendingPathComponent("sweep.json").path) else { return [] }
        let o = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        return (o["trials"] as! [[String: Any]]).map {
            Trial(id: $0["id"] as! String, status: $0["status"] as! String, starts: ($0["starts"] as! NSNumber).intValue, steps: ($0["steps"] as! NSNumber).intValue,
                  rung: ($0["rung"] as? NSNumber)?.intValue, note: $0["note"] as? String)
        }
    }

    @Test func sweepStopsLosersReportsAndResumesAfterSIGKILL() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let base = root.appendingPathComponent("base.yaml"), space = root.appendingPathComponent("space.yaml"), out = root.appendingPathComponent("out")
        try CLI.write(Self.base, to: base)
        try CLI.write(Self.space, to: space)
        let args = ["sweep", "--config", base.path, "--space", space.path, "--out", out.path, "--parallel", "2"]

        // First run: killed (SIGKILL, no chance to clean up) once some trials have ended.
        let first = try CLI.start(args)
        let deadline = Date().addingTimeInterval(90)
        var ended: [Trial] = []
        while Date() < deadline, first.isRunning {
            ended = ((try? Self.trials(out)) ?? []).filter { ["finished", "stopped", "failed"].contains($0.status) }
            if ended.count >= 3 { break }
            usleep(50_000)
        }
        try #require(ended.count >= 3 && first.isRunning, "the sweep ended or stalled before the kill: \(ended.map(\.id))")
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        let before = try Self.trials(out)
        let endedBefore = before.filter { ["finished", "stopped", "failed"].contains($0.status) }
        try #require(endedBefore.count < 8, "all trials had ended before the kill")
        // The trials' jobs die with the sweep.
        var left: [String] = []
        for _ in 0..<100 {
            left = ((try? CLI.runTool("/usr/bin/pgrep", ["-af", "zerotrain"])) ?? "").split(separator: "\n").map(String.init).filter { $0.contains(out.path) }
            if left.isEmpty { break }
            usleep(100_000)
        }
        #expect(left.isEmpty, "processes left after the sweep was killed: \(left)")
        let logsBefore = try endedBefore.map { try Data(contentsOf: out.appendingPathComponent("trials/\($0.id)/run/metrics.jsonl")) }

        // Second run with the same command: the ended trials are kept, the rest run.
        let r = try CLI.run(args, timeout: 120)
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains("resuming: \(endedBefore.count) of 8 trials ended before"), "\(r.stdout)")
        let after = try Self.trials(out)
        #expect(after.count == 8 && after.allSatisfy { $0.status == "finished" || $0.status == "stopped" }, "\(after)")
        for t in endedBefore {
            let now = try #require(after.first { $0.id == t.id })
            #expect(now.starts == 1 && now.status == t.status && now.steps == t.steps, "\(t.id) was run again")
            #expect(!r.stdout.contains("\(t.id) started"), "\(t.id) was started again")
        }
        let logsAfter = try endedBefore.map { try Data(contentsOf: out.appendingPathComponent("trials/\($0.id)/run/metrics.jsonl")) }
        #expect(logsBefore == logsAfter)

        // Early stopping worked: the tiny learning rates were stopped before the end, the good ones finished.
        #expect(after.contains { $0.status == "stopped" && $0.steps < 60 }, "\(after)")
        #expect(after.filter { $0.status == "finished" }.allSatisfy { $0.steps == 60 })
        #expect(after[0].status == "finished" && after[1].status == "finished")

        // The results.
        let md = try String(contentsOf: out.appendingPathComponent("results.md"), encoding: .utf8)
        #expect(md.hasPrefix("| trial | training.lr | training.seed | status | steps | final_loss | best_loss | validation_loss |"))
        #expect(md.split(separator: "\n").filter { $0.hasPrefix("| trial-") }.count == 8)
        let csv = try String(contentsOf: out.appendingPathComponent("results.csv"), encoding: .utf8)
        #expect(csv.split(separator: "\n").count == 9)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("results.json"))) as! [String: Any]
        #expect((json["trials"] as! [Any]).count == 8)
        let svg = try String(contentsOf: out.appendingPathComponent("curves.svg"), encoding: .utf8)
        #expect(svg.hasPrefix("<svg") && svg.contains("</svg>"))
        #expect(svg.components(separatedBy: "<polyline class=\"trial\"").count - 1 == 8)
        #expect(svg.contains("stroke-dasharray"))   // stopped trials are dashed
        let winner = try #require(json["winner"] as? String)
        #expect(["trial-000", "trial-001", "trial-002", "trial-003"].contains(winner))
        let best = try String(contentsOf: out.appendingPathComponent("best.yaml"), encoding: .utf8)
        #expect(best.contains("hidden_size: 32") && best.contains("total_steps: 60"))
        // best.yaml is a config the trainer loads.
        let check = try CLI.run(["plan", "--config", out.appendingPathComponent("best.yaml").path, "--devices", "1"], timeout: 30)
        #expect(check.status == 0, "\(check.stderr)")
    }

    /// Successive halving on 8 trials (η 2, rungs 10, 20, 40), killed (SIGKILL) after promotions
    /// began and started again: every job pauses exactly at its rung (`--stop-after-step`),
    /// the top half of a rung resumes from its checkpoint, the tiny rates are never promoted, a
    /// trial that ended before the kill is not run again, and a resumed trial's steps continue
    /// its log exactly (a step trained again after the kill has the same loss).
    /// The last lines of each failed trial's local.log, for the message of a failed expectation.
    static func failureLogs(_ trials: [Trial], _ out: URL) -> String {
        trials.filter { $0.status == "failed" }.map { t in
            let log = (try? String(contentsOf: out.appendingPathComponent("trials/\(t.id)/local.log"), encoding: .utf8)) ?? "(no local.log)"
            return "\(t.id) (\(t.note ?? "no note")) local.log:\n" + log.split(separator: "\n", omittingEmptySubsequences: false).suffix(30).joined(separator: "\n")
        }.joined(separator: "\n")
    }

    @Test func successiveHalvingPausesAtRungsAndResumesAfterSIGKILL() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let base = root.appendingPathComponent("base.yaml"), space = root.appendingPathComponent("space.yaml"), out = root.appendingPathComponent("out")
        try CLI.write(Self.base.replacingOccurrences(of: "total_steps: 60", with: "total_steps: 40"), to: base)
        try CLI.write("""
            sampler: grid
            parameters:
              training.lr: [0.02, 0.01, 0.00002, 0.00001]
              training.seed: [1, 2]
            early_stopping: {rule: asha, min_steps: 10, eta: 2}
            """, to: space)
        let args = ["sweep", "--config", base.path, "--space", space.path, "--out", out.path, "--parallel", "2"]

        // First run: killed once a trial was promoted and at least 3 trials ended (paused or finished).
        let first = try CLI.start(args)
        let deadline = Date().addingTimeInterval(90)
        var seen: [Trial] = []
        while Date() < deadline, first.isRunning {
            seen = (try? Self.trials(out)) ?? []
            if seen.contains(where: { ($0.rung ?? 0) >= 1 }) && seen.filter({ ["finished", "stopped"].contains($0.status) }).count >= 3 { break }
            usleep(50_000)
        }
        try #require(first.isRunning, "the sweep ended or stalled before the kill: \(seen)")
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        let before = try Self.trials(out)
        #expect(!before.contains { $0.status == "failed" }, "a trial failed before the kill:\n\(Self.failureLogs(before, out))")
        let pausedBefore = before.filter { $0.status == "stopped" }, finishedBefore = before.filter { $0.status == "finished" }
        let logsBefore = try finishedBefore.map { try Data(contentsOf: out.appendingPathComponent("trials/\($0.id)/run/metrics.jsonl")) }

        let r = try CLI.run(args, timeout: 150)
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains("resuming: \(pausedBefore.count + finishedBefore.count) of 8 trials ended before"), "\(r.stdout)")
        let after = try Self.trials(out)
        // Pauses are exact: a paused trial stopped at a rung, a finished one at the end.
        #expect(after.count == 8 && after.allSatisfy { ($0.status == "stopped" && [10, 20].contains($0.steps)) || ($0.status == "finished" && $0.steps == 40) },
                "\(after)\n\(Self.failureLogs(after, out))")
        // What ended before the kill is not started again: finished trials are untouched, paused
        // ones only ever resume from their checkpoints.
        for t in finishedBefore {
            let now = try #require(after.first { $0.id == t.id })
            #expect(now.starts == t.starts && now.steps == t.steps && now.status == "finished", "\(t.id) was run again")
        }
        let logsAfter = try finishedBefore.map { try Data(contentsOf: out.appendingPathComponent("trials/\($0.id)/run/metrics.jsonl")) }
        #expect(logsBefore == logsAfter)
        for t in pausedBefore + finishedBefore { #expect(!r.stdout.contains("\(t.id) started"), "\(t.id) was started again:\n\(r.stdout)") }
        // The tiny rates pause at the first rung and are never promoted.
        for t in after[4...] { #expect(t.status == "stopped" && t.steps == 10 && t.rung == 0, "\(t)") }
        // The top trials were promoted rung by rung to the end: the top half of rung 20, and
        // (asynchronous halving) perhaps one promoted while few trials had reached it.
        let finished = after.filter { $0.status == "finished" }
        #expect((2...3).contains(finished.count) && finished.allSatisfy { ["trial-000", "trial-001", "trial-002", "trial-003"].contains($0.id) && $0.rung == 2 && $0.starts >= 3 },
                "\(after)")
        // Resumed, not restarted: each finished trial's log holds steps 0..<40 in order; a step
        // trained again (the kill came after it, before the next checkpoint) has exactly the same loss.
        for t in finished {
            let log = try String(contentsOf: out.appendingPathComponent("trials/\(t.id)/run/metrics.jsonl"), encoding: .utf8)
            var losses: [Int: Double] = [:], order: [Int] = []
            for line in log.split(separator: "\n") {
                let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
                let step = o["step"] as! Int, loss = (o["loss"] as! NSNumber).doubleValue
                if let earlier = losses[step] { #expect(earlier == loss, "\(t.id): step \(step) trained again: loss \(loss), was \(earlier)") } else { order.append(step) }
                losses[step] = loss
            }
            #expect(order == Array(0..<40), "\(t.id): \(order)")
        }

        // The results.
        let md = try String(contentsOf: out.appendingPathComponent("results.md"), encoding: .utf8)
        #expect(md.split(separator: "\n").filter { $0.hasPrefix("| trial-") }.count == 8)
        #expect(try String(contentsOf: out.appendingPathComponent("results.csv"), encoding: .utf8).split(separator: "\n").count == 9)
        let svg = try String(contentsOf: out.appendingPathComponent("curves.svg"), encoding: .utf8)
        #expect(svg.components(separatedBy: "<polyline class=\"trial\"").count - 1 == 8 && svg.contains("stroke-dasharray"))
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("results.json"))) as! [String: Any]
        #expect(finished.map(\.id).contains(json["winner"] as? String ?? "none"), "\(json["winner"] ?? "none")")
    }

    func expectExit2(_ space: String, mentions text: String) throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        try CLI.write(Self.base, to: root.appendingPathComponent("base.yaml"))
        try CLI.write(space, to: root.appendingPathComponent("space.yaml"))
        let r = try CLI.run(["sweep", "--config", root.appendingPathComponent("base.yaml").path, "--space", root.appendingPathComponent("space.yaml").path,
                             "--out", root.appendingPathComponent("out").path], timeout: 30)
        #expect(r.status == 2, "exit \(r.status): \(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1 && r.stderr.hasPrefix("zerotrain: error: ") && r.stderr.contains(text), "stderr: \(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: root.appendingPathComponent("out/trials").path))
    }

    @Test func emptySearchSpace() throws { try expectExit2("sampler: grid\nparameters: {}\n", mentions: "the search space is empty") }

    @Test func unknownSampler() throws { try expectExit2("sampler: bayes\nparameters: {training.lr: [0.1]}\n", mentions: "unknown sampler \"bayes\"") }

    @Test func unknownConfigPath() throws {
        try expectExit2("sampler: grid\nparameters: {training.learning_rate: [0.1]}\n", mentions: "parameters.training.learning_rate: unknown config path")
    }

    @Test func nonNumericRange() throws {
        try expectExit2("sampler: random\ntrials: 3\nparameters: {training.lr: {min: small, max: 0.1}}\n", mentions: "parameters.training.lr.min: expected a number, got \"small\"")
    }
}
