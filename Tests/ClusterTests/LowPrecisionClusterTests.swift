import Foundation
import Testing
import ZeroTrainTestKit

/// fp16 (dynamic loss scaling) and simulated fp8 in real local clusters. fp16: N workers at ZeRO
/// stages 0 and 3 equal one worker with the same global batch within 1e-5 relative (as bf16),
/// its loss curve follows fp32's within 0.2 % per step over 20 steps of tiny, and a gradient
/// overflow on one rank skips that step on every rank and halves the scale. fp8: N workers equal
/// one worker bit for bit, and fp8 stays within 2 % of bf16's loss per step over the
/// same 20 steps (docs/precision.md has the measured figures).
@Suite(.serialized) struct LowPrecisionClusterTests {
    let cluster = MixedPrecisionClusterTests()

    static func records(_ root: URL, _ label: String) throws -> [[String: Any]] {
        try LocalClusterTests.records(root.appendingPathComponent(label))
    }

    @Test func fp16WorkersEqualOneWorkerAndFollowFP32() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let one = try cluster.run(root, "fp16-w1", MixedPrecisionClusterTests.config("tiny.yaml", precision: "fp16", accumulation: 2, stage: 0), workers: 1)
        let fp32 = try cluster.run(root, "fp32-w1", MixedPrecisionClusterTests.config("tiny.yaml", precision: "fp32", accumulation: 2, stage: 0), workers: 1)
        #expect(one.count == 20 && fp32.count == 20)
        let worst = MixedPrecisionClusterTests.worstRelativeDifference(one, fp32)
        #expect(worst <= 2e-3, "fp16 loss curve departs from fp32's by \(worst) (relative)")
        #expect(worst > 0, "fp16 losses equal fp32's bit for bit; fp16 not in use")
        for record in try Self.records(root, "fp16-w1") {
            #expect((record["loss_scale"] as? NSNumber)?.floatValue == 65536)
            #expect(((record["scalars"] as? [String: Any])?["train/loss_scale"] as? NSNumber)?.doubleValue == 65536)
        }
        for stage in [0, 3] {
            let two = try cluster.run(root, "fp16-w2-s\(stage)", MixedPrecisionClusterTests.config("tiny.yaml", precision: "fp16", accumulation: 1, stage: stage),
                                      workers: 2)
            #expect(two.count == one.count)
            for (x, y) in zip(two, one) { #expect(abs(x - y) <= 1e-5 * abs(y), "stage \(stage): loss \(x) vs \(y)") }
        }
        print("fp16 vs fp32 (tiny): worst relative loss difference \(worst)")
    }

    /// fp8's amaxes are reduced over the ranks each step and the output gradients' taken without
    /// the 1 / accumulation factor, so 2 workers × 1 micro-batch equal 1 worker × 2 micro-batches
    /// bit for bit (the same scales and roundings; the power-of-two factor is exact), at ZeRO
    /// stages 0 and 3; and fp8 trains close to bf16.
    @Test func fp8WorkersEqualOneWorkerAndTrainCloseToBF16() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let fp8 = try cluster.run(root, "fp8", MixedPrecisionClusterTests.config("tiny.yaml", precision: "fp8", accumulation: 1, stage: 0), workers: 2)
        let bf16 = try cluster.run(root, "bf16", MixedPrecisionClusterTests.config("tiny.yaml", precision: "bf16", accumulation: 1, stage: 0), workers: 2)
        #expect(fp8.count == 20 && bf16.count == 20)
        let worst = MixedPrecisionClusterTests.worstRelativeDifference(fp8, bf16)
        #expect(worst <= 2e-2 && worst > 0, "fp8 loss curve departs from bf16's by \(worst) (relative)")
        #expect(fp8.last! < fp8.first! * 0.8, "fp8 did not train: \(fp8.first!) → \(fp8.last!)")
        print("fp8 vs bf16 (tiny): worst relative loss difference \(worst)")
        let one = try cluster.run(root, "fp8-w1", MixedPrecisionClusterTests.config("tiny.yaml", precision: "fp8", accumulation: 2, stage: 0), workers: 1)
        let stage3 = try cluster.run(root, "fp8-w2-s3", MixedPrecisionClusterTests.config("tiny.yaml", precision: "fp8", accumulation: 1, stage: 3),
                                     workers: 2)
        #expect(one.count == 20 && stage3.count == 20)
        var apart: Float = 0
        for (two, label) in [(fp8, "stage 0"), (stage3, "stage 3")] {
            for (x, y) in zip(two, one) {
                apart = max(apart, abs(x - y) / abs(y))
                #expect(x.bitPattern == y.bitPattern, "fp8 \(label): 2 workers' loss \(x) vs 1 worker's \(y)")
            }
        }
        print("fp8, 2 workers vs 1 worker (tiny): worst relative loss difference \(apart)")
    }

    /// Rank 1 (of two worker processes) puts an inf into its gradients at step 4 (0-based 3): the
    /// all-reduced norm is non-finite on both ranks, both skip the update and halve the scale, the
    /// job goes on (an overflow is no divergence) and the divergence check at step 5 finds the
    /// ranks' parameters still equal.
    @Test func anOverflowOnOneRankSkipsTheStepEverywhereAndHalvesTheScale() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let file = root.appendingPathComponent("c.yaml")
        try CLI.write(MixedPrecisionClusterTests.config("tiny.yaml", precision: "fp16", accumulation: 1, stage: 0)
                      + "fault_tolerance: {max_skipped_steps: 1}\n", to: file)
        let run = root.appendingPathComponent("run"), out = root.appendingPathComponent("coordinator.out")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        let c = try CLI.start(["coordinator", "--config", file.path, "--listen", "tcp://127.0.0.1:*", "--run-dir", run.path, "--workers", "2"],
                              stdout: try FileHandle(forWritingTo: out))
        defer { if c.isRunning { kill(c.processIdentifier, SIGKILL) } }
        let endpoint = try LocalClusterTests.coordinatorEndpoint(run)
        let testWorker: URL = try #require(TestWorker.executable())
        let workers = try (0..<2).map { _ in try CLI.start(["--coordinator", endpoint, "--inject-overflow-at", "3"], executable: testWorker) }
        defer { for w in workers where w.isRunning { kill(w.processIdentifier, SIGKILL) } }
        let deadline = Date().addingTimeInterval(120)
        while c.isRunning && Date() < deadline { usleep(50_000) }
        let log = (try? String(contentsOf: out, encoding: .utf8)) ?? ""
        try #require(!c.isRunning && c.terminationStatus == 0, "coordinator: \(log)")
        let records = try LocalClusterTests.records(run)
        #expect(records.count == 20)
        for r in records {
            let step = (r["step"] as! NSNumber).intValue, scale = (r["loss_scale"] as? NSNumber)?.floatValue
            #expect(scale == (step <= 3 ? 65536 : 32768), "step \(step): loss scale \(String(describing: scale))")
            #expect((r["skipped"] as? Bool ?? false) == (step == 3) && (r["overflow"] as? Bool ?? false) == (step == 3), "step \(step): \(r)")
        }
        // The final checkpoint, committed by the coordinator from the ranks' records, holds the scale
        // and the 16 clean updates since the overflow (what a resumed run continues from).
        let latest = try String(contentsOf: run.appendingPathComponent("checkpoints/latest"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let manifest = try JSONSerialization.jsonObject(
            with: Data(contentsOf: run.appendingPathComponent("checkpoints/\(latest)/manifest.json"))) as? [String: Any]
        let state = manifest?["loss_scale"] as? [String: Any]
        #expect((state?["scale"] as? NSNumber)?.floatValue == 32768 && (state?["clean_steps"] as? NSNumber)?.intValue == 16,
                "manifest loss_scale: \(String(describing: state))")
        for w in workers { w.waitUntilExit() }
    }
}
