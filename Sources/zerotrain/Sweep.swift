import ArgumentParser
import Cluster
import Common
import Foundation
import Training

#if canImport(Glibc)
import Glibc
#endif

struct Sweep: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Search hyperparameters: run trials of a base config on the local cluster, stop losing ones early, report the results.",
        discussion: "The space file (docs/evaluation.md, Sweeps) gives the sampler (grid, random, lhs), the trials, the seed, the parameters (dotted config paths) and early_stopping. Results go to DIR: results.md, results.csv, results.json, curves.svg, best.yaml; DIR/sweep.json lets the same command resume an interrupted sweep.")

    @Option(name: .long, help: "Base config file (YAML).")
    var config: String

    @Option(name: .long, help: "Search space file (YAML).")
    var space: String

    @Option(name: .long, help: "Output directory (default: runs/sweep-<space name>).")
    var out: String?

    @Option(name: .long, help: "Trials run at once, each its own local job (default 1: one after another).")
    var parallel: Int = 1

    @Option(name: .long, help: "Worker processes of each trial's job (default 1).")
    var workers: Int = 1

    @Option(name: .long, help: "Compute threads per device of each trial (default: training.threads).")
    var threads: Int?

    func run() async throws {
        try await runReportingErrors {
            guard parallel >= 1, workers >= 1 else { throw ValidationError("--parallel and --workers must be ≥ 1") }
            if let threads, threads < 1 { throw ValidationError("--threads must be ≥ 1") }
            func read(_ path: String, _ what: String) throws -> String {
                guard let bytes = FileManager.default.contents(atPath: path), let text = String(data: bytes, encoding: .utf8) else {
                    throw ConfigError("\(path): cannot read the \(what) file")
                }
                return text
            }
            let output = URL(fileURLWithPath: out ?? "runs/sweep-" + URL(fileURLWithPath: space).deletingPathExtension().lastPathComponent)
            let plan = try SweepPlan(baseText: try read(config, "config"), baseSource: config,
                                     spaceText: try read(space, "search space"), spaceSource: space, output: output)
            try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
            let state = try SweepState.resume(in: output, fingerprint: plan.fingerprint, fresh: plan.initialState)
            let driver = try SweepDriver(plan: plan, state: state, output: output, parallel: parallel, workers: workers, threads: threads)
            let code = try await runAsService("sweep", body: { try driver.run() }, stop: { driver.requestStop() })
            if code != 0 { throw ExitCode(code) }
        }
    }
}

/// Runs a sweep's trials as `zerotrain local` child processes, at most `parallel` at once;
/// follows each trial's metrics.jsonl and feeds the early stopping rule. The median rule's
/// losers are stopped (SIGTERM: the job checkpoints and shuts down). Successive halving runs
/// each segment of a trial with `--stop-after-step <its rung>`, so the job itself pauses exactly
/// there (checkpoint, exit 0), and resumes the trials it promotes from those checkpoints
/// (`zerotrain local --resume auto`). Writes sweep.json after every event and the results at the
/// end. Each child dies with the sweep (ZEROTRAIN_EXIT_WITH_PARENT).
final class SweepDriver: @unchecked Sendable {
    private struct Running {
        let index: Int
        let process: Process
        let lifeline: Pipe
        let log: FileHandle
        /// Successive halving: the rung step the job pauses at by itself (`--stop-after-step`);
        /// nil: it runs to its end.
        let pauseStep: Int?
        var offset: UInt64 = 0
        var partial = Data()
        /// The median rule stopped it (SIGTERM sent).
        var stopping = false
    }

    private struct Events: Sendable {
        var exited: [Int: Int32] = [:]
        var stop = false
        /// A trial's run directory changed (median rule: its metrics.jsonl may hold new steps).
        var changed = false
    }

    private let plan: SweepPlan
    private var state: SweepState
    private let output: URL
    private let parallel: Int
    private let workers: Int
    private let threads: Int?
    private let executable: URL
    private let events = Monitor(Events())
    private var median: MedianStoppingRule?
    private var halving: SuccessiveHalving?
    /// With the median rule: wakes the loop when a running trial writes its metrics.
    private var watch: DirectoryWatch?

    init(plan: SweepPlan, state: SweepState, output: URL, parallel: Int, workers: Int, threads: Int?) throws {
        self.plan = plan
        self.state = state
        self.output = output
        self.parallel = parallel
        self.workers = workers
        self.threads = threads
        executable = URL(fileURLWithPath: try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
        switch plan.space.earlyStopping {
        case .none: break
        case let .median(grace, interval, minTrials):
            var rule = MedianStoppingRule(grace: grace, interval: interval, minTrials: minTrials)
            for t in state.trials where t.status.ended { rule.replay(trial: t.id, curve: t.curve.map { ($0.step, $0.loss) }) }
            median = rule
            let events = self.events
            watch = try DirectoryWatch { events.withLock { $0.changed = true } }
        case let .asha(minSteps, eta):
            // The rungs end at the shortest trial's total_steps.
            var rule = SuccessiveHalving(minSteps: minSteps, eta: eta, maxSteps: plan.trials.map(\.config.training.totalSteps).min()!)
            for t in state.trials where !t.curve.isEmpty || t.rung != nil {
                rule.replay(trial: t.id, curve: t.curve.map { ($0.step, $0.loss) }, level: t.rung ?? 0)
            }
            halving = rule
        }
    }

    func requestStop() { events.withLock { $0.stop = true } }

    /// 0 when every trial ended (finished, stopped or failed); 1 when the sweep was stopped first.
    func run() throws -> Int32 {
        let done = state.trials.filter(\.status.ended).count
        if done > 0 {
            Console.out("sweep: resuming: \(done) of \(state.trials.count) trials ended before, not run again"
                        + (halving != nil ? " (a paused one resumes from its checkpoint if promoted)" : ""))
        }
        var running: [Int: Running] = [:]
        var stopped = false
        defer { watch?.close() }
        while true {
            if !stopped, events.withLock({ $0.stop }) {
                stopped = true
                for r in running.values { kill(r.process.processIdentifier, SIGTERM) }
            }
            while !stopped, running.count < parallel, let n = next(running) {
                running[n.index] = try start(n.index, resume: n.resume)
                try state.save(in: output)
            }
            if running.isEmpty { break }
            // Woken by an exit, a stop request or (only the median rule judges trials while they
            // run) a write into a running trial's run directory; otherwise a trial's curve is read
            // when it exits (successive halving's jobs pause at their rungs by themselves).
            func taken(_ e: inout Events) -> [Int: Int32]? {
                guard !e.exited.isEmpty || (e.stop && !stopped) || e.changed else { return nil }
                defer { e.exited = [:]; e.changed = false }
                return e.exited
            }
            let exits = events.wait(taken)
            var changed = false
            for i in running.keys.sorted() { changed = follow(&running[i]!) || changed }
            for (i, code) in exits.sorted(by: { $0.key < $1.key }) {
                guard var r = running.removeValue(forKey: i) else { continue }
                _ = follow(&r)
                try? r.log.close()
                finish(i, code: code, running: r, interrupted: stopped)
                changed = true
            }
            if changed { try state.save(in: output) }
        }
        try state.save(in: output)
        let winner = state.winner.flatMap { w in plan.trials.first { $0.assignment.id == w.id }?.config }
        try SweepReport.write(state, winnerConfig: winner, to: output)
        let counts = [SweepState.Status.finished, .stopped, .failed, .pending].map { s in "\(state.trials.filter { $0.status == s }.count) \(s.rawValue)" }
        Console.out("sweep: \(counts.joined(separator: ", ")); results in \(output.path)/results.md" + (state.winner.map { ", winner \($0.id) (best.yaml)" } ?? ""))
        return stopped ? 1 : 0
    }

    /// The trial to run next and whether it resumes: a promoted trial killed with an earlier
    /// sweep, then (successive halving) a promotion, then a pending trial; nil when none.
    private func next(_ running: [Int: Running]) -> (index: Int, resume: Bool)? {
        if let i = state.trials.indices.first(where: { state.trials[$0].status == .running && running[$0] == nil }) { return (i, true) }
        let busy = Set(running.keys.map { state.trials[$0].id })
        if let p = halving?.promotion(excluding: busy), let i = state.trials.firstIndex(where: { $0.id == p.trial }) {
            state.trials[i].rung = halving!.level(of: p.trial)
            Console.out("sweep: \(p.trial) promoted to rung \(p.rung)")
            return (i, true)
        }
        return state.trials.indices.first { state.trials[$0].status == .pending }.map { ($0, false) }
    }

    /// Starts trial `i` afresh (a trial that was running when an earlier sweep died runs again
    /// from the start), or resumes it from its newest checkpoint (`--resume auto`). Under
    /// successive halving the job pauses by itself at the rung it runs to, unless that is the last.
    private func start(_ i: Int, resume: Bool) throws -> Running {
        let trial = plan.trials[i]
        if halving != nil, state.trials[i].rung == nil { state.trials[i].rung = 0 }
        let pauseStep = halving.flatMap { h in state.trials[i].rung.flatMap { $0 < h.rungs.count - 1 ? h.rungs[$0] : nil } }
        let fm = FileManager.default
        let logURL = trial.directory.appendingPathComponent("local.log")
        if !resume {
            try? fm.removeItem(at: trial.directory)
            try fm.createDirectory(at: trial.runDirectory, withIntermediateDirectories: true)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            try encoder.encode(trial.config).write(to: trial.configFile)
            _ = fm.createFile(atPath: logURL.path, contents: nil)
        }
        let log = try FileHandle(forWritingTo: logURL)
        _ = try log.seekToEnd()
        // Watched before the job starts, so that no write of its metrics goes unnoticed.
        try fm.createDirectory(at: trial.runDirectory, withIntermediateDirectories: true)
        try watch?.watch(trial.runDirectory)
        let p = Process()
        p.executableURL = executable
        var arguments = ["local", "--config", trial.configFile.path, "--workers", String(workers), "--run-dir", trial.runDirectory.path]
        if let threads { arguments += ["--threads", String(threads)] }
        if resume { arguments += ["--resume", "auto"] }
        if let pauseStep { arguments += ["--stop-after-step", String(pauseStep)] }
        p.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env[LocalCluster.watchParentVariable] = "1"
        p.environment = env
        let lifeline = Pipe()
        p.standardInput = lifeline
        p.standardOutput = log
        p.standardError = log
        let events = self.events
        p.terminationHandler = { proc in events.withLock { $0.exited[i] = proc.terminationStatus } }
        try p.run()
        state.trials[i].status = .running
        state.trials[i].starts += 1
        state.trials[i].note = nil
        let values = trial.assignment.values.map { "\($0.path)=\($0.value.scalarText)" }.joined(separator: " ")
        Console.out("sweep: \(trial.assignment.id) " + (resume ? "resumed from its checkpoint" : "started") + " (\(values))")
        return Running(index: i, process: p, lifeline: lifeline, log: log, pauseStep: pauseStep)
    }

    /// Reads the trial's new metrics.jsonl lines into its curve and the rule; true if any came.
    private func follow(_ r: inout Running) -> Bool {
        let id = state.trials[r.index].id
        let file = plan.trials[r.index].runDirectory.appendingPathComponent("metrics.jsonl")
        guard let handle = try? FileHandle(forReadingFrom: file) else { return false }
        defer { try? handle.close() }
        guard (try? handle.seek(toOffset: r.offset)) != nil, let data = try? handle.readToEnd(), !data.isEmpty else { return false }
        r.offset += UInt64(data.count)
        r.partial.append(data)
        var any = false
        while let nl = r.partial.firstIndex(of: UInt8(ascii: "\n")) {
            let line = r.partial[r.partial.startIndex..<nl]
            r.partial = Data(r.partial[(nl + 1)...])
            guard let o = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
                  let index = (o["step"] as? NSNumber)?.intValue, let loss = (o["loss"] as? NSNumber)?.doubleValue, loss.isFinite,
                  index + 1 > state.trials[r.index].steps else { continue }   // a resumed trial's log holds its earlier steps
            let step = index + 1   // metrics.jsonl counts from 0; the sweep counts updates done
            state.trials[r.index].record(step: step, loss: loss, validationLoss: (o["validation_loss"] as? NSNumber)?.doubleValue)
            any = true
            guard !r.stopping else { continue }
            if case let .stop(rung, best, m)? = median?.report(trial: id, step: step, loss: loss) {
                let note = String(format: "median rule at step %d: best loss %.4f > median %.4f", rung, best, m)
                r.stopping = true
                state.trials[r.index].note = note
                Console.out("sweep: \(id) stopped early (\(note))")
                kill(r.process.processIdentifier, SIGTERM)
            }
            // The job pauses at the rung by itself (`--stop-after-step`): its report of the rung is its last.
            if case let .pause(rung, best)? = halving?.report(trial: id, step: step, loss: loss) {
                let note = String(format: "successive halving: paused at rung %d, best loss %.4f", rung, best)
                state.trials[r.index].note = note
                Console.out("sweep: \(id) paused (\(note))")
            }
        }
        return any
    }

    private func finish(_ i: Int, code: Int32, running r: Running, interrupted: Bool) {
        let id = state.trials[i].id
        if code == 0, let pauseStep = r.pauseStep, state.trials[i].steps == pauseStep {
            // Paused at its rung (a checkpoint of that step): ended unless successive halving promotes it.
            state.trials[i].status = .stopped
        } else if code == 0, let pauseStep = r.pauseStep {
            state.trials[i].status = .failed
            state.trials[i].note = "its job paused at step \(pauseStep) (--stop-after-step) but its metrics.jsonl ends at step \(state.trials[i].steps)"
            Console.out("sweep: \(id) failed (\(state.trials[i].note!))")
        } else if code == 0 {
            // A job can end its last steps before the median rule's stop reaches it: it finished.
            state.trials[i].status = .finished
            if r.stopping { state.trials[i].note! += "; it had finished before the stop took effect" }
            Console.out("sweep: \(id) finished: \(state.trials[i].steps) steps, " + String(format: "best loss %.4f", state.trials[i].bestLoss ?? .nan))
        } else if r.stopping {
            state.trials[i].status = .stopped
        } else if interrupted {
            // Stopped with the sweep: it runs again when the sweep resumes (from the start, or
            // from its checkpoint when successive halving had promoted it).
            if (state.trials[i].rung ?? 0) == 0 {
                let starts = state.trials[i].starts
                state.trials[i] = plan.initialState.trials[i]
                state.trials[i].starts = starts
            }
        } else {
            state.trials[i].status = .failed
            state.trials[i].note = "exit \(code); see \(plan.trials[i].directory.appendingPathComponent("local.log").path)"
            Console.out("sweep: \(id) failed (\(state.trials[i].note!))")
        }
        // Trials that ended feed the median rule with their whole curve.
        if state.trials[i].status.ended { median?.replay(trial: id, curve: state.trials[i].curve.map { ($0.step, $0.loss) }) }
    }
}
