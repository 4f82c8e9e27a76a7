import Foundation
import Testing
import ZeroTrainTestKit

/// bf16 mixed precision in real local clusters: it must not make the cluster nondeterministic (N
/// workers, at ZeRO stages 0 and 3, equal one worker with the same global batch within 1e-5
/// relative), and its loss curve follows fp32's (within 0.2 % per step over 20 steps of the tiny
/// configs; measured: under 0.03 %).
@Suite(.serialized) struct MixedPrecisionClusterTests {
    static func config(_ name: String, precision: String, accumulation: Int, stage: Int) throws -> String {
        try LocalClusterTests.shipped(name, accumulation: accumulation)
            .replacingOccurrences(of: "training:\n", with: "training:\n  precision: \(precision)\n")
            + "zero: {stage: \(stage)}\n"
    }

    func run(_ root: URL, _ label: String, _ config: String, workers: Int) throws -> [Float] {
        let file = root.appendingPathComponent("\(label).yaml")
        try CLI.write(config, to: file)
        let dir = root.appendingPathComponent(label)
        let r = try CLI.run(["local", "--config", file.path, "--workers", String(workers), "--run-dir", dir.path])
        try #require(r.status == 0, "\(label): \(r.stderr)")
        return try LocalClusterTests.losses(dir)
    }

    /// The largest |x − y| / |y| over two loss curves.
    static func worstRelativeDifference(_ xs: [Float], _ ys: [Float]) -> Float {
        zip(xs, ys).reduce(0) { max($0, abs($1.0 - $1.1) / abs($1.1)) }
    }

    @Test(arguments: ["tiny.yaml", "tiny-moe.yaml"])
    func bf16WorkersEqualOneWorkerAndFollowFP32(config name: String) throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let one = try run(root, "bf16-w1", Self.config(name, precision: "bf16", accumulation: 2, stage: 0), workers: 1)
        let fp32 = try run(root, "fp32-w1", Self.config(name, precision: "fp32", accumulation: 2, stage: 0), workers: 1)
        #expect(one.count == 20 && fp32.count == 20)
        let worst = Self.worstRelativeDifference(one, fp32)
        #expect(worst <= 2e-3, "\(name): bf16 loss curve departs from fp32's by \(worst) (relative)")
        #expect(worst > 0, "\(name): bf16 losses equal fp32's bit for bit; bf16 not in use")
        for stage in [0, 3] {
            let two = try run(root, "bf16-w2-s\(stage)", Self.config(name, precision: "bf16", accumulation: 1, stage: stage), workers: 2)
            #expect(two.count == one.count)
            for (x, y) in zip(two, one) { #expect(abs(x - y) <= 1e-5 * abs(y), "\(name) stage \(stage): loss \(x) vs \(y)") }
        }
        print("bf16 vs fp32 (\(name)): worst relative loss difference \(worst)")
    }

    /// `zero.reduce_dtype: bf16` halves the gradient all-reduce's bytes and trains as fp32 reduction does.
    @Test func bf16GradientReductionHalvesTheBytes() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let base = try Self.config("tiny.yaml", precision: "bf16", accumulation: 1, stage: 0)
        let fp32 = try run(root, "reduce-fp32", base, workers: 2)
        let bf16 = try run(root, "reduce-bf16", base.replacingOccurrences(of: "zero: {stage: 0}", with: "zero: {stage: 0, reduce_dtype: bf16}"),
                           workers: 2)
        for (x, y) in zip(bf16, fp32) { #expect(abs(x - y) <= 2e-3 * abs(y), "loss \(x) vs \(y)") }
        func allReduceBytes(_ label: String) throws -> Double {
            let last = try #require(try LocalClusterTests.records(root.appendingPathComponent(label)).last)
            let perRank = try #require(last["bytes_sent_per_rank"] as? [[String: Any]])
            return perRank.map { ($0["allReduce"] as? NSNumber)?.doubleValue ?? 0 }.reduce(0, +)
        }
        let (wide, narrow) = (try allReduceBytes("reduce-fp32"), try allReduceBytes("reduce-bf16"))
        #expect(wide > 0 && abs(narrow / wide - 0.5) < 0.01, "all-reduce bytes \(narrow) (bf16) vs \(wide) (fp32)")
    }
}
