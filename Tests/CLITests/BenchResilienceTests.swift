import Foundation
import Testing
import ZeroTrainTestKit

/// `zerotrain bench resilience` runs its four variants on a local cluster and reports each one;
/// the replicas of local workers go through shared memory, and over the ring when asked.
@Suite struct BenchResilienceTests {
    @Test func reportsEveryVariantAndUsesSharedMemoryForLocalReplicas() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("c.yaml")
        try CLI.write("""
            model: {num_layers: 1, hidden_size: 32, num_attention_heads: 2, vocab_size: 256, max_seq_len: 64}
            training: {lr: 0.003, warmup_steps: 2, total_steps: 6, micro_batch_size: 2, threads: 1}
            data: {seq_len: 32}
            """, to: file)
        let runs = dir.appendingPathComponent("runs")
        let r = try CLI.run(["bench", "resilience", "--config", file.path, "--workers", "2", "--steps", "6", "--warmup", "2",
                             "--every", "2", "--repeats", "1", "--run-dir", runs.path, "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stdout)")
        let steps = try #require(json["step_seconds"] as? [String: Double])
        #expect(Set(steps.keys) == ["neither", "checkpoints", "replicas", "replicas-network"])
        #expect(steps.values.allSatisfy { $0 > 0 })
        for key in ["checkpoint_cost", "replica_cost", "network_replica_cost"] { #expect(json[key] is Double, "\(key)") }
        func workerLogs(_ variant: String) -> String {
            let run = runs.appendingPathComponent("\(variant)-0")
            return ((try? FileManager.default.contentsOfDirectory(atPath: run.path)) ?? []).filter { $0.hasPrefix("worker-") }
                .map { (try? String(contentsOf: run.appendingPathComponent($0), encoding: .utf8)) ?? "" }.joined()
        }
        #expect(workerLogs("replicas").components(separatedBy: "through shared memory").count == 3, "\(workerLogs("replicas"))")
        #expect(!workerLogs("replicas-network").contains("through shared memory"))
    }
}
