import Cluster
import Foundation
import Training

/// What the cluster benchmarks share: run a config on a local cluster and read its metrics.
enum LocalBenchRun {
    /// Runs `config` (written to `directory`/config.json) on `workers` local workers with
    /// `threads` each, in a fresh `directory`, and returns the metrics.jsonl records in order.
    static func records(_ config: TrainConfig, workers: Int, threads: Int, directory: URL, label: String) throws -> [[String: Any]] {
        try? FileManager.default.removeItem(at: directory)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent("config.json")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try encoder.encode(config).write(to: file)
        var options = LocalCluster.Options(configPath: file.path, workers: workers, runDirectory: directory)
        options.threads = threads
        options.coordinatorLog = directory.appendingPathComponent("coordinator.log")
        let code = try LocalCluster(options: options).run()
        guard code == 0 else { throw ClusterError(.runtime, "the \(label) run failed (exit \(code)); see \(directory.path)") }
        let text = try String(contentsOf: directory.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    }
}
