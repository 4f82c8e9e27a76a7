import Foundation
import Testing
import ZeroTrainTestKit

/// Activation recomputation under the cluster, where ZeRO stage 3 gathers each block's parameters:
/// a group's regions are gathered for its recomputed forward and held through its backward, and
/// the run's losses are those of a run without recomputation, bit for bit.
@Suite(.serialized) struct RecomputationClusterTests {
    @Test(arguments: [0, 3])
    func recomputationKeepsTheLosses(stage: Int) throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let base = try MixedPrecisionClusterTests.config("tiny-moe.yaml", precision: "fp32", accumulation: 1, stage: stage)
        var losses: [[Float]] = []
        for (label, mode) in [("none", "none"), ("every-layer", "every_layer"), ("every-2", "{every_k: 2}")] {
            let config = base.replacingOccurrences(of: "training:\n", with: "training:\n  activation_checkpointing: \(mode)\n")
            let file = root.appendingPathComponent("\(label).yaml")
            try CLI.write(config, to: file)
            let dir = root.appendingPathComponent(label)
            let r = try CLI.run(["local", "--config", file.path, "--workers", "2", "--run-dir", dir.path])
            try #require(r.status == 0, "\(label): \(r.stderr)")
            losses.append(try LocalClusterTests.losses(dir))
        }
        #expect(losses[0].count == 20)
        #expect(losses[1].map(\.bitPattern) == losses[0].map(\.bitPattern), "every_layer at stage \(stage)")
        #expect(losses[2].map(\.bitPattern) == losses[0].map(\.bitPattern), "every_k 2 at stage \(stage)")
    }
}
