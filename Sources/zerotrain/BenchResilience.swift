import ArgumentParser
import Cluster
import Foundation
import Training

/// `zerotrain bench resilience`: what asynchronous checkpoints and in-memory replicas cost a
/// training step, measured as the local cluster runs them.
struct BenchResilience: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resilience",
        abstract: "The step-time cost of asynchronous checkpoints and of in-memory replica refreshes on a local cluster.",
        discussion: """
            Runs the config on --workers local workers four ways, interleaved --repeats times: with neither \
            (checkpoint_interval 0, replica_interval 0), with a checkpoint every --every steps, with a replica \
            refresh every --every steps (replica_transport auto: the local workers share one host, so through \
            shared memory), and with the same refreshes sent over the ring (replica_transport network). For each run, the mean step time over the steps after --warmup; the \
            cost of one save (or refresh) is (mean with − mean without) × every / mean without, as a fraction of a \
            step. Medians over the repeats. Also the median snapshot time the ranks spent on the training thread \
            (checkpoint_seconds, replica_seconds in metrics.jsonl).
            """)

    @Option(name: .long, help: "Config file.")
    var config: String

    @Option(name: .long, help: "Local workers.")
    var workers: Int = 2

    @Option(name: .long, help: "Compute threads per worker.")
    var threads: Int = 1

    @Option(name: .long, help: "Steps per run.")
    var steps: Int = 14

    @Option(name: .long, help: "Warm-up steps, not counted (start-up, snapshot buffers faulted in).")
    var warmup: Int = 4

    @Option(name: .long, help: "A checkpoint (or a replica refresh) every N steps.")
    var every: Int = 4

    @Option(name: .long, help: "Runs of each variant (interleaved).")
    var repeats: Int = 3

    @Option(name: .long, help: "Run directory root.")
    var runDir: String = "runs/bench-resilience"

    @Flag(name: .long, help: "One JSON object instead of the table.")
    var json = false

    enum Variant: String, CaseIterable { case neither, checkpoints, replicas, replicasNetwork = "replicas-network" }

    struct Report: Codable {
        var workers: Int
        var every: Int
        var stepSeconds: [String: Double]
        /// Per save / refresh, as a fraction of a step without either.
        var checkpointCost: Double
        var replicaCost: Double
        var networkReplicaCost: Double
        var checkpointSnapshotSeconds: Double
        var replicaSnapshotSeconds: Double
        var networkReplicaSnapshotSeconds: Double
        enum CodingKeys: String, CodingKey {
            case workers, every, stepSeconds = "step_seconds", checkpointCost = "checkpoint_cost", replicaCost = "replica_cost"
            case networkReplicaCost = "network_replica_cost", networkReplicaSnapshotSeconds = "network_replica_snapshot_seconds"
            case checkpointSnapshotSeconds = "checkpoint_snapshot_seconds", replicaSnapshotSeconds = "replica_snapshot_seconds"
        }
    }

    func run() throws {
        try runReportingErrors {
            guard workers >= 1, warmup >= 0, steps >= warmup + 2, every >= 1, every < steps, repeats >= 1 else {
                throw ClusterError(.badInput, "--workers ≥ 1, --warmup ≥ 0, --steps ≥ warmup + 2, 1 ≤ --every < --steps and --repeats ≥ 1")
            }
            let base = try TrainConfig.load(path: config)
            let root = URL(fileURLWithPath: runDir)
            try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
            var means: [Variant: [Double]] = [:], snapshots: [Variant: [Double]] = [:]
            for r in 0..<repeats {
                for variant in Variant.allCases {
                    var cfg = base
                    cfg.training.totalSteps = steps
                    cfg.training.optim.warmupSteps = min(cfg.training.optim.warmupSteps, steps)
                    cfg.training.threads = threads
                    cfg.training.checkpointDir = nil
                    cfg.training.checkpointInterval = variant == .checkpoints ? every : 0
                    cfg.faultTolerance.replicaInterval = variant == .replicas || variant == .replicasNetwork ? every : 0
                    cfg.faultTolerance.replicaTransport = variant == .replicasNetwork ? .network : .auto
                    cfg.cluster.divergenceCheckInterval = 0
                    try cfg.validate()
                    let records = try LocalBenchRun.records(cfg, workers: workers, threads: threads,
                                                            directory: root.appendingPathComponent("\(variant.rawValue)-\(r)"), label: variant.rawValue)
                    let timed = records.dropFirst(warmup)
                    func values(_ key: String) -> [Double] { timed.map { (($0[key] as? NSNumber) ?? 0).doubleValue } }
                    let seconds = values("seconds")
                    means[variant, default: []].append(seconds.reduce(0, +) / Double(seconds.count))
                    let snap = values(variant == .checkpoints ? "checkpoint_seconds" : "replica_seconds").filter { $0 > 0 }
                    if !snap.isEmpty { snapshots[variant, default: []].append(Self.median(snap)) }
                }
            }
            let step = means.mapValues(Self.median)
            let without = step[.neither]!
            func cost(_ v: Variant) -> Double { (step[v]! - without) * Double(every) / without }
            let report = Report(workers: workers, every: every,
                                stepSeconds: Dictionary(uniqueKeysWithValues: step.map { ($0.key.rawValue, $0.value) }),
                                checkpointCost: cost(.checkpoints), replicaCost: cost(.replicas), networkReplicaCost: cost(.replicasNetwork),
                                checkpointSnapshotSeconds: snapshots[.checkpoints].map(Self.median) ?? 0,
                                replicaSnapshotSeconds: snapshots[.replicas].map(Self.median) ?? 0,
                                networkReplicaSnapshotSeconds: snapshots[.replicasNetwork].map(Self.median) ?? 0)
            if json {
                let e = JSONEncoder()
                e.outputFormatting = [.sortedKeys]
                Console.out(String(decoding: try e.encode(report), as: UTF8.self))
                return
            }
            Console.out("config \(config), \(workers) worker(s) × \(threads) thread(s), a save or refresh every \(every) steps, medians of \(repeats) runs")
            Console.out("variant           mean step (s)  cost per event (fraction of a step)  snapshot on the training thread (s)")
            Console.out(String(format: "neither           %13.4f", without))
            Console.out(String(format: "checkpoints       %13.4f  %35.4f  %35.4f", step[.checkpoints]!, report.checkpointCost, report.checkpointSnapshotSeconds))
            Console.out(String(format: "replicas          %13.4f  %35.4f  %35.4f", step[.replicas]!, report.replicaCost, report.replicaSnapshotSeconds))
            Console.out(String(format: "replicas-network  %13.4f  %35.4f  %35.4f", step[.replicasNetwork]!, report.networkReplicaCost,
                               report.networkReplicaSnapshotSeconds))
        }
    }

    static func median(_ v: [Double]) -> Double {
        let s = v.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
}
