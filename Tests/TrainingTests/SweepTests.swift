import Common
import Foundation
import Testing
@testable import Training

/// The sweep's pure parts: the search space file, the samplers, the config paths and the
/// median stopping rule on synthetic loss curves.
@Suite struct SweepTests {
    static let base = """
        model: {num_layers: 1, hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 2, max_seq_len: 32}
        training: {lr: 0.003, total_steps: 20, micro_batch_size: 2, threads: 1}
        data: {seq_len: 16}
        """

    // MARK: samplers

    @Test func gridEnumeratesEveryCombination() throws {
        let space = try SearchSpace.parse(text: "sampler: grid\nparameters: {training.lr: [0.1, 0.01, 0.001], training.seed: [1, 2], model.num_layers: [1, 2]}\n")
        let trials = space.assignments()
        #expect(space.trials == 12 && trials.count == 12)
        let combos = Set(trials.map { $0.values.map(\.value.scalarText).joined(separator: "/") })
        #expect(combos.count == 12)
        #expect(trials[0].values.map(\.value) == [.double(0.1), .int(1), .int(1)])
        #expect(trials[1].values.map(\.value) == [.double(0.1), .int(1), .int(2)])
        #expect(trials[11].values.map(\.value) == [.double(0.001), .int(2), .int(2)])
    }

    @Test func latinHypercubeUsesEveryStratumOnce() throws {
        let n = 16
        let space = try SearchSpace.parse(text: "sampler: lhs\ntrials: \(n)\nseed: 7\nparameters: {training.lr: {min: 0.0, max: 1.0}, training.weight_decay: {min: 0.0, max: 0.5}, training.warmup_steps: {min: 0, max: 15}}\n")
        let trials = space.assignments()
        #expect(trials.count == n)
        let lr = trials.map { v -> Double in guard case .double(let d) = v.values[0].value else { return -1 }; return d }
        let wd = trials.map { v -> Double in guard case .double(let d) = v.values[1].value else { return -1 }; return d }
        #expect(Set(lr.map { Int($0 * Double(n)) }) == Set(0..<n))
        #expect(Set(wd.map { Int($0 / 0.5 * Double(n)) }) == Set(0..<n))
        // Integer bounds give integers, and 16 strata over 0...15 give each integer once.
        let warm = trials.map { v -> Int in guard case .int(let i) = v.values[2].value else { return -1 }; return i }
        #expect(Set(warm) == Set(0..<16))
        // The strata are shuffled independently: the two columns are not in the same order.
        #expect(lr.map { Int($0 * Double(n)) } != wd.map { Int($0 / 0.5 * Double(n)) })
    }

    @Test func samplesAreDeterministicInTheSeed() throws {
        func draw(_ sampler: String, seed: Int) throws -> [TrialAssignment] {
            try SearchSpace.parse(text: "sampler: \(sampler)\ntrials: 10\nseed: \(seed)\nparameters: {training.lr: {min: 1.0e-5, max: 1.0e-1, log: true}, training.micro_batch_size: [1, 2, 4]}\n").assignments()
        }
        for sampler in ["random", "lhs"] {
            #expect(try draw(sampler, seed: 3) == draw(sampler, seed: 3))
            #expect(try draw(sampler, seed: 3) != draw(sampler, seed: 4))
            for t in try draw(sampler, seed: 3) {
                guard case .double(let lr) = t.values[0].value else { Issue.record("lr not a double"); continue }
                #expect(lr >= 1e-5 && lr <= 1e-1)
                #expect([ConfigValue.int(1), .int(2), .int(4)].contains(t.values[1].value))
            }
        }
        // Log-uniform: about half of the draws below the geometric middle 1e-3.
        let many = try SearchSpace.parse(text: "sampler: random\ntrials: 400\nseed: 1\nparameters: {training.lr: {min: 1.0e-5, max: 1.0e-1, log: true}}\n").assignments()
        let below = many.filter { if case .double(let d) = $0.values[0].value { d < 1e-3 } else { false } }.count
        #expect(below > 160 && below < 240, "\(below) of 400 below 1e-3")
    }

    // MARK: bad spaces and paths

    @Test(arguments: [
        ("sampler: grid\nparameters: {}\n", "the search space is empty"),
        ("sampler: grid\n", "the search space is empty"),
        ("sampler: bayes\nparameters: {training.lr: [0.1]}\n", "unknown sampler \"bayes\""),
        ("sampler: random\ntrials: 4\nparameters: {training.lr: {min: low, max: 0.1}}\n", "parameters.training.lr.min: expected a number"),
        ("sampler: random\nparameters: {training.lr: {min: 0.1, max: 0.2}}\n", "needs the number of trials"),
        ("sampler: grid\nparameters: {training.lr: {min: 0.1, max: 0.2}}\n", "needs a list of values"),
        ("sampler: random\ntrials: 2\nparameters: {training.lr: {min: 0.3, max: 0.2}}\n", "must be ≤ max"),
        ("sampler: grid\nparameters: {training.lr: [0.1]}\nearly_stopping: {rule: hyperband}\n", "unknown rule \"hyperband\""),
    ])
    func badSpaces(_ text: String, _ message: String) {
        #expect { try SearchSpace.parse(text: text, source: "s.yaml") } throws: { e in
            (e as? ConfigError).map { $0.message.hasPrefix("s.yaml: ") && $0.message.contains(message) } ?? false
        }
    }

    @Test func unknownConfigPathIsNamed() {
        for path in ["training.lrr", "optimizer.lr", "data.seq_length"] {
            #expect { try SweepPlan(baseText: Self.base, baseSource: "b.yaml", spaceText: "sampler: grid\nparameters: {\(path): [1, 2]}\n",
                                    spaceSource: "s.yaml", output: URL(fileURLWithPath: "/tmp/x")) } throws: { e in
                (e as? ConfigError)?.message == "s.yaml: parameters.\(path): unknown config path"
            }
        }
    }

    @Test func planSetsValuesAndTrialDirectories() throws {
        let plan = try SweepPlan(baseText: Self.base, baseSource: "b.yaml",
                                 spaceText: "sampler: grid\nparameters: {training.lr: [0.01, 0.001], data.seq_len: [8]}\n",
                                 spaceSource: "s.yaml", output: URL(fileURLWithPath: "/tmp/sw"))
        #expect(plan.trials.map(\.config.training.optim.lr) == [0.01, 0.001])
        #expect(plan.trials.allSatisfy { $0.config.data.seqLen == 8 })
        #expect(plan.trials[1].config.training.checkpointDir == "/tmp/sw/trials/trial-001/checkpoints")
        #expect(plan.trials[1].config.training.metricsFile == "/tmp/sw/trials/trial-001/run/metrics.jsonl")
        // A value the config rejects names the trial and the field.
        #expect { try SweepPlan(baseText: Self.base, baseSource: "b.yaml", spaceText: "sampler: grid\nparameters: {training.lr: [-1.0]}\n",
                                spaceSource: "s.yaml", output: URL(fileURLWithPath: "/tmp/x")) } throws: { e in
            (e as? ConfigError).map { $0.message.hasPrefix("s.yaml: trial-000 (training.lr=-1.0): training.lr") } ?? false
        }
    }

    // MARK: median stopping rule

    /// Feeds interleaved synthetic curves (trial id, losses at steps 1, 2, ...) and returns each
    /// trial's stop step, or nil if it ran to the end.
    func run(_ rule: inout MedianStoppingRule, _ curves: [(String, (Int) -> Double)], steps: Int) -> [String: Int] {
        var stoppedAt: [String: Int] = [:]
        for step in 1...steps {
            for (id, loss) in curves where stoppedAt[id] == nil {
                if case .stop = rule.report(trial: id, step: step, loss: loss(step)) { stoppedAt[id] = step }
            }
        }
        return stoppedAt
    }

    @Test func medianStopsTheWorseHalfAtRungs() {
        var rule = MedianStoppingRule(grace: 4, interval: 4, minTrials: 2)
        // Four trials converging to different levels; the two slow ones are above the median at step 4.
        let curves: [(String, (Int) -> Double)] = [
            ("good", { 1 + 4 / Double($0) }), ("ok", { 1.5 + 4 / Double($0) }),
            ("bad", { 3 + 4 / Double($0) }), ("worse", { 4 + 4 / Double($0) }),
        ]
        let stops = run(&rule, curves, steps: 20)
        // "bad" at step 4: best 4.0 vs the median of good 2.0 and ok 2.5 (worse has not reported step 4 yet) → stop.
        // "worse" at 4: median(2.0, 2.5, 4.0) = 2.5 → stop. "good" and "ok" run on.
        #expect(stops == ["bad": 4, "worse": 4])
    }

    @Test func medianWaitsForGraceAndEnoughOthers() {
        var rule = MedianStoppingRule(grace: 10, interval: 5, minTrials: 2)
        // Only before the grace period is "late" much worse; afterwards it catches up.
        let curves: [(String, (Int) -> Double)] = [
            ("a", { _ in 2 }), ("b", { _ in 2.2 }), ("late", { $0 < 10 ? 9 : 1.9 }),
        ]
        #expect(run(&rule, curves, steps: 30).isEmpty)
        // With one other trial and min_trials 2 nothing is judged, however bad.
        var alone = MedianStoppingRule(grace: 0, interval: 2, minTrials: 2)
        #expect(run(&alone, [("a", { _ in 1 }), ("b", { _ in 100 })], steps: 10).isEmpty)
    }

    @Test func medianComparesWithOthersAtTheSameStepAndUsesBestSoFar() {
        var rule = MedianStoppingRule(grace: 0, interval: 10, minTrials: 1)
        // A finished trial's curve: loss 5 at step 10, then 1 at 20.
        rule.replay(trial: "done", curve: [(10, 5), (20, 1)])
        // The new trial reports 3 at step 10: better than the other's 5 at step 10 → continue,
        // though worse than its final 1.
        #expect(rule.report(trial: "new", step: 10, loss: 3) == .continue)
        // A noisy rise to 4 at 20 is judged by its best so far (3) against 1 → stop.
        #expect(rule.report(trial: "new", step: 20, loss: 4) == .stop(rung: 20, best: 3, median: 1))
        // Reports between rungs and jumps over several rungs: judged once, at the latest rung.
        var r2 = MedianStoppingRule(grace: 0, interval: 10, minTrials: 1)
        r2.replay(trial: "done", curve: [(10, 5), (20, 4), (30, 3)])
        #expect(r2.report(trial: "x", step: 5, loss: 1) == .continue)
        #expect(r2.report(trial: "x", step: 30, loss: 3.5) == .continue)   // best 1 < 3
        #expect(r2.report(trial: "x", step: 35, loss: 0.5) == .continue)   // no rung between 31 and 35
    }

    @Test func earlyStoppingConfig() throws {
        let s = try SearchSpace.parse(text: "sampler: grid\nparameters: {training.lr: [0.1]}\nearly_stopping: {rule: median, grace: 5, interval: 3, min_trials: 1}\n")
        #expect(s.earlyStopping == .median(grace: 5, interval: 3, minTrials: 1))
        #expect(try SearchSpace.parse(text: "sampler: grid\nparameters: {training.lr: [0.1]}\n").earlyStopping == EarlyStopping.none)
        let a = try SearchSpace.parse(text: "sampler: grid\nparameters: {training.lr: [0.1]}\nearly_stopping: {rule: asha, min_steps: 4, eta: 3}\n")
        #expect(a.earlyStopping == .asha(minSteps: 4, eta: 3))
        #expect(throws: ConfigError.self) { try SearchSpace.parse(text: "sampler: grid\nparameters: {training.lr: [0.1]}\nearly_stopping: {rule: asha, grace: 4}\n") }
        #expect(throws: ConfigError.self) { try SearchSpace.parse(text: "sampler: grid\nparameters: {training.lr: [0.1]}\nearly_stopping: {rule: asha, eta: 1}\n") }
    }

    // MARK: successive halving

    @Test func halvingRungsAndPromotions() {
        var h = SuccessiveHalving(minSteps: 4, eta: 2, maxSteps: 20)
        #expect(h.rungs == [4, 8, 16, 20])
        // Four trials reach rung 4 with losses 4, 1, 3, 2 (a: 4, b: 1, c: 3, d: 2).
        #expect(h.report(trial: "a", step: 2, loss: 5) == .continue)
        #expect(h.report(trial: "a", step: 4, loss: 4) == .pause(rung: 4, loss: 4))
        #expect(h.report(trial: "a", step: 5, loss: 0.1) == .continue)   // late reports change nothing
        #expect(h.promotion() == nil)                                      // 1 at the rung: top half is empty
        #expect(h.report(trial: "b", step: 4, loss: 1) == .pause(rung: 4, loss: 1))
        let first = h.promotion()
        #expect(first?.trial == "b" && first?.rung == 8)                   // top 1 of {a 4, b 1}
        #expect(h.level(of: "b") == 1)
        #expect(h.report(trial: "c", step: 4, loss: 3) == .pause(rung: 4, loss: 3))
        #expect(h.promotion() == nil)                                      // top 1 of 3 is b, promoted already
        #expect(h.report(trial: "d", step: 4, loss: 2) == .pause(rung: 4, loss: 2))
        let second = h.promotion()
        #expect(second?.trial == "d" && second?.rung == 8)                 // top 2 of 4: b, d
        #expect(h.promotion() == nil)
        // b reaches 8, then d: the better of the two goes on to 16, then 20 completes.
        #expect(h.report(trial: "b", step: 8, loss: 0.9) == .pause(rung: 8, loss: 0.9))
        #expect(h.report(trial: "d", step: 8, loss: 0.5) == .pause(rung: 8, loss: 0.5))
        let third = h.promotion()
        #expect(third?.trial == "d" && third?.rung == 16)
        #expect(h.report(trial: "d", step: 16, loss: 0.4) == .pause(rung: 16, loss: 0.4))
        #expect(h.promotion() == nil)                                      // 1 at rung 16: no top half
        var h3 = SuccessiveHalving(minSteps: 2, eta: 3, maxSteps: 18)
        #expect(h3.rungs == [2, 6, 18])
        for (i, loss) in [5.0, 4, 3, 2, 1, 6].enumerated() { _ = h3.report(trial: "t\(i)", step: 2, loss: loss) }
        let p1 = h3.promotion(), p2 = h3.promotion(), p3 = h3.promotion()
        #expect(p1?.trial == "t4" && p1?.rung == 6 && p2?.trial == "t3" && p3 == nil)   // top 6/3 = 2
        // A single rung is the end of training: reaching it completes the trial.
        var one = SuccessiveHalving(minSteps: 10, eta: 2, maxSteps: 8)
        #expect(one.rungs == [8])
        #expect(one.report(trial: "x", step: 8, loss: 1) == .complete)
    }

    /// A trial whose report of the rung came in while its job still runs (checkpointing, exiting)
    /// is not promoted until it has exited: two jobs of one trial must never run side by side.
    @Test func aRunningTrialIsPromotedOnlyOnceItsJobHasExited() {
        var h = SuccessiveHalving(minSteps: 4, eta: 2, maxSteps: 16)
        for (id, loss) in [("a", 3.0), ("b", 1.0)] { _ = h.report(trial: id, step: 4, loss: loss) }
        #expect(h.promotion(excluding: ["b"]) == nil)       // b is the top half, but still running
        #expect(h.level(of: "b") == 0)
        let p = h.promotion(excluding: ["a"])
        #expect(p?.trial == "b" && p?.rung == 8 && h.level(of: "b") == 1)
    }

    @Test func halvingReplayRebuildsTheRungs() {
        var live = SuccessiveHalving(minSteps: 4, eta: 2, maxSteps: 16)
        for (id, loss) in [("a", 3.0), ("b", 1.0)] { _ = live.report(trial: id, step: 4, loss: loss) }
        #expect(live.promotion()?.trial == "b")
        _ = live.report(trial: "b", step: 6, loss: 0.8)
        // The same history from curves: b was promoted (level 1), a paused at rung 0.
        var back = SuccessiveHalving(minSteps: 4, eta: 2, maxSteps: 16)
        back.replay(trial: "a", curve: [(2, 4), (4, 3), (5, 2.9)], level: 0)
        back.replay(trial: "b", curve: [(2, 2), (4, 1), (6, 0.8)], level: 1)
        #expect(back.results == live.results && back.promoted == live.promoted)
        #expect(back.level(of: "b") == 1 && back.level(of: "a") == 0)
        #expect(back.promotion() == nil)
        #expect(back.report(trial: "b", step: 8, loss: 0.7) == .pause(rung: 8, loss: 0.7))
    }

    // MARK: state

    @Test func stateResumesEndedTrialsAndRerunsRunningOnes() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sweep-state-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let fresh = SweepState(fingerprint: "f", parameterPaths: ["training.lr"],
                               trials: ["trial-000", "trial-001"].map { SweepState.Trial(id: $0, parameters: ["training.lr": "0.1"]) })
        var s = fresh
        s.trials[0].status = .finished
        s.trials[0].record(step: 5, loss: 2, validationLoss: nil)
        s.trials[0].starts = 1
        s.trials[1].status = .running
        s.trials[1].record(step: 3, loss: 4, validationLoss: nil)
        s.trials[1].starts = 1
        try s.save(in: dir)
        let back = try SweepState.resume(in: dir, fingerprint: "f", fresh: fresh)
        #expect(back.trials[0] == s.trials[0])
        #expect(back.trials[1].status == .pending && back.trials[1].curve.isEmpty && back.trials[1].starts == 1)
        #expect(throws: ConfigError.self) { try SweepState.resume(in: dir, fingerprint: "other", fresh: fresh) }
    }
}
