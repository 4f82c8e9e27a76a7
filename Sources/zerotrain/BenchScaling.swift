import ArgumentParser
import Cluster
import Foundation
import Training
import Zero

struct BenchScaling: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scaling",
        abstract: "Data-parallel scaling: run the config on 1, 2, … local workers and compare tokens/s.",
        discussion: "Weak scaling: every rank keeps the config's micro-batch and accumulation, so the global batch grows with the workers. Reports the median over the timed steps of tokens/s and of the per-step time split (compute, exposed communication, idle) from the coordinator's metrics, and the mean and 90th percentile of the per-step overhead (seconds − compute − exposed communication).")

    @Option(name: .long, help: "Config file.")
    var config: String

    @Option(name: .long, help: "Comma-separated worker counts.")
    var workers: String = "1,2"

    @Option(name: .long, help: "Compute threads per worker.")
    var threads: Int = 1

    @Option(name: .long, help: "ZeRO stage (0–3; default: the config's zero.stage).")
    var stage: ZeroStage?

    @Option(name: .long, help: "Steps per run; the first two are warm-up and not counted.")
    var steps: Int = 8

    @Option(name: .long, help: "Run directory root.")
    var runDir: String = "runs/bench-scaling"

    @Flag(name: .long, help: "JSON lines instead of the table.")
    var json = false

    struct Row: Codable {
        var workers: Int
        var tokensPerSecond: Double
        var speedup: Double
        var stepSeconds: Double
        var computeSeconds: Double
        var exposedCommunicationSeconds: Double
        var idleSeconds: Double
        /// Per step, seconds − compute − exposed communication (the orchestration's cost): mean and 90th percentile.
        var overheadMeanSeconds: Double
        var overheadP90Seconds: Double
        enum CodingKeys: String, CodingKey {
            case workers, speedup, tokensPerSecond = "tokens_per_second", stepSeconds = "step_seconds"
            case computeSeconds = "compute_seconds", exposedCommunicationSeconds = "exposed_communication_seconds", idleSeconds = "idle_seconds"
            case overheadMeanSeconds = "overhead_mean_seconds", overheadP90Seconds = "overhead_p90_seconds"
        }
    }

    func run() throws {
        try runReportingErrors {
            let counts = workers.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !counts.isEmpty, counts.allSatisfy({ $0 >= 1 }), steps >= 3 else {
                throw ClusterError(.badInput, "--workers needs positive counts and --steps ≥ 3")
            }
            var cfg = try TrainConfig.load(path: config)
            cfg.training.totalSteps = steps
            cfg.training.optim.warmupSteps = min(cfg.training.optim.warmupSteps, steps)
            cfg.training.checkpointDir = nil
            cfg.training.checkpointInterval = 0
            cfg.training.threads = threads
            cfg.cluster.divergenceCheckInterval = 0
            if let stage { cfg.zero.stage = stage }
            try cfg.validate()
            let root = URL(fileURLWithPath: runDir)
            var rows: [Row] = []
            for n in counts {
                let records = try LocalBenchRun.records(cfg, workers: n, threads: threads, directory: root.appendingPathComponent("workers-\(n)"),
                                                        label: "\(n)-worker")
                let timed = records.dropFirst(2)
                func median(_ key: String) -> Double {
                    let v = timed.map { ($0[key] as! NSNumber).doubleValue }.sorted()
                    return v[v.count / 2]
                }
                let tps = median("tokens_per_second")
                let overhead = timed.map { r in
                    ["seconds", "compute_seconds", "exposed_communication_seconds"].map { (r[$0] as! NSNumber).doubleValue }
                }.map { $0[0] - $0[1] - $0[2] }.sorted()
                rows.append(Row(workers: n, tokensPerSecond: tps, speedup: tps / (rows.first?.tokensPerSecond ?? tps),
                                stepSeconds: median("seconds"), computeSeconds: median("compute_seconds"),
                                exposedCommunicationSeconds: median("exposed_communication_seconds"), idleSeconds: median("idle_seconds"),
                                overheadMeanSeconds: overhead.reduce(0, +) / Double(overhead.count),
                                overheadP90Seconds: overhead[Int((0.9 * Double(overhead.count - 1)).rounded(.down))]))
            }
            if json {
                let e = JSONEncoder()
                e.outputFormatting = [.sortedKeys]
                for r in rows { Console.out(String(decoding: try e.encode(r), as: UTF8.self)) }
            } else {
                Console.out("config \(config), ZeRO \(cfg.zero.stage), \(threads) thread(s) per worker, median of steps 3…\(steps)")
                Console.out("workers  tokens/s  speedup  step (s)  compute (s)  exposed comm (s)  idle (s)  overhead mean/p90 (ms)")
                for r in rows {
                    Console.out(String(format: "%7d  %8.0f  %6.2fx  %8.4f  %11.4f  %16.4f  %8.4f  %10.2f / %.2f", r.workers, r.tokensPerSecond,
                                       r.speedup, r.stepSeconds, r.computeSeconds, r.exposedCommunicationSeconds, r.idleSeconds,
                                       1000 * r.overheadMeanSeconds, 1000 * r.overheadP90Seconds))
                }
            }
        }
    }
}

extension ZeroStage: ExpressibleByArgument {
    public init?(argument: String) {
        guard let number = Int(argument), let stage = ZeroStage(rawValue: number) else { return nil }
        self = stage
    }
}
