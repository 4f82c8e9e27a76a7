import Checkpoint
import Common
import Foundation
import Model
import Tensor
import Testing
import Training
import ZeroTrainTestKit

/// Bit-for-bit guard for refactors that do not change the math (DESIGN decision 6): fixed runs of
/// the shipped tiny configs — dense and MoE, on 1, 2 and 3 workers, at ZeRO stages 0–3, 20 steps —
/// must reproduce the losses, aux losses, grad norms and learning rates recorded in
/// Tests/Fixtures/golden/<backend>/ exactly (same bits), and the final weights and AdamW
/// moments must hash the same. Bits depend on the GEMM library and what it dispatches: OpenBLAS's
/// kernel family (`GEMM.kernelName`; `OPENBLAS_CORETYPE=Haswell` on the project's machines) and
/// oneDNN's ISA (`OneDNN.effectiveISA`), so fixtures are kept per family (`haswell`,
/// `onednn-avx512_core_bf16`, …); on a family without fixtures the test is skipped, saying so.
///
/// Re-record only when a change is meant to change the numbers (and say so in the commit), or to
/// add a kernel family — then with the binary built *before* the change:
/// `ZEROTRAIN_BIN=/path/to/old/zerotrain ZEROTRAIN_RECORD_GOLDEN=1 swift test -c release -Xswiftc -enable-testing --filter GoldenRunTests`.
@Suite(.serialized) struct GoldenRunTests {
    struct Golden: Codable, Equatable {
        var config: String
        var workers: Int
        var stage: Int
        /// Per step: the bit patterns of loss and aux loss (Float) and of grad norm and lr (Double), in hex.
        var loss: [String]
        var auxLoss: [String]
        var gradNorm: [String]
        var lr: [String]
        /// FNV-1a 64 over the bits of every tensor of the final checkpoint, in file-name order.
        var weights: String
        var optimizer: String
    }

    static let record = ProcessInfo.processInfo.environment["ZEROTRAIN_RECORD_GOLDEN"] == "1"
    /// The fixtures of a backend's kernel family here.
    static func directory(_ backend: GEMMBackend) -> URL {
        let family = backend == .openblas ? GEMM.kernelName.lowercased() : "onednn-" + OneDNN.effectiveISA
        return Fixtures.root.appendingPathComponent("golden").appendingPathComponent(family)
    }
    static func haveFixtures(_ backend: GEMMBackend) -> Bool { record || FileManager.default.fileExists(atPath: directory(backend).path) }

    /// The shipped config with 20 steps, one compute thread, the given GEMM library, every step
    /// logged, checkpoints in the run directory.
    static func config(_ name: String, stage: Int, backend: GEMMBackend, checkpoints: URL) throws -> String {
        let text = try String(contentsOf: CLI.repo.appendingPathComponent("configs/\(name)"), encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            if line.hasPrefix("  total_steps:") { return "  total_steps: 20" }
            if line.hasPrefix("  threads:") { return "  threads: 1\n  gemm: \(backend.rawValue)" }
            if line.hasPrefix("  checkpoint_dir:") { return "  checkpoint_dir: \(checkpoints.path)" }
            return String(line)
        }
        return lines.joined(separator: "\n") + "\nzero: {stage: \(stage)}\n"
    }

    static func hex<T: FixedWidthInteger>(_ bits: T) -> String { String(bits, radix: 16) }

    /// FNV-1a 64 over named tensors' raw little-endian bytes, in name order: the digest of a
    /// safetensors file of them (the golden runs were recorded from format-1 checkpoints, whose
    /// model.safetensors held the parameters and optimizer.safetensors exp_avg.<name> and
    /// exp_avg_sq.<name>; format 2 holds the same numbers in shards).
    static func digest(_ tensors: [(name: String, values: UnsafeMutableBufferPointer<Float>)]) -> String {
        var h = FNV1a()
        for t in tensors.sorted(by: { $0.name < $1.name }) {
            h.add(t.name.utf8)
            h.add(UnsafeBufferPointer(t.values))
        }
        return hex(h.value)
    }

    /// The digests of a checkpoint's parameters and of its AdamW moments.
    static func digests(_ folder: URL) throws -> (weights: String, optimizer: String) {
        let reader = try CheckpointReader<TrainConfig>(folder)
        let table = ParameterTable(config: reader.manifest.config.model)
        let p = FloatBuffer(count: table.count), m = FloatBuffer(count: table.count), v = FloatBuffer(count: table.count)
        try reader.read(.parameters, elements: 0..<table.count, into: p.pointer)
        try reader.read(.expAvg, elements: 0..<table.count, into: m.pointer)
        try reader.read(.expAvgSq, elements: 0..<table.count, into: v.pointer)
        let weights = digest(table.entries.map { ($0.name, p.slice($0.offset, $0.count)) })
        let optimizer = digest(table.entries.map { ("exp_avg." + $0.name, m.slice($0.offset, $0.count)) }
                               + table.entries.map { ("exp_avg_sq." + $0.name, v.slice($0.offset, $0.count)) })
        return (weights, optimizer)
    }

    static func run(_ name: String, workers: Int, stage: Int, backend: GEMMBackend, root: URL) throws -> Golden {
        let label = "\(name.replacingOccurrences(of: ".yaml", with: ""))-\(backend.rawValue)-w\(workers)-s\(stage)"
        let runDir = root.appendingPathComponent(label)
        let checkpoints = runDir.appendingPathComponent("checkpoints")
        let file = root.appendingPathComponent("\(label).yaml")
        try CLI.write(try config(name, stage: stage, backend: backend, checkpoints: checkpoints), to: file)
        let r = try CLI.run(["local", "--config", file.path, "--workers", String(workers), "--run-dir", runDir.path])
        try #require(r.status == 0, "\(label): \(r.stderr)")
        let text = try String(contentsOf: runDir.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        let records = try text.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        func number(_ r: [String: Any], _ key: String) -> Double { (r[key] as! NSNumber).doubleValue }
        let final = try digests(checkpoints.appendingPathComponent("step-00000020"))
        return Golden(config: name, workers: workers, stage: stage,
                      loss: records.map { hex(Float(number($0, "loss")).bitPattern) },
                      auxLoss: records.map { hex(Float(number($0, "aux_loss")).bitPattern) },
                      gradNorm: records.map { hex(number($0, "grad_norm").bitPattern) },
                      lr: records.map { hex(number($0, "lr").bitPattern) },
                      weights: final.weights, optimizer: final.optimizer)
    }

    @Test(arguments: ["tiny.yaml", "tiny-moe.yaml"], GEMMBackend.allCases)
    func runsReproduceTheRecordedBits(config name: String, backend: GEMMBackend) throws {
        guard Self.haveFixtures(backend) else {
            print("GoldenRunTests: skipped: no golden runs recorded for \(Self.directory(backend).lastPathComponent) (Tests/Fixtures/golden)")
            return
        }
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let directory = Self.directory(backend)
        let fixture = directory.appendingPathComponent(name.replacingOccurrences(of: ".yaml", with: ".json"))
        var runs: [Golden] = []
        for workers in 1...3 {
            for stage in 0...3 { runs.append(try Self.run(name, workers: workers, stage: stage, backend: backend, root: root)) }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        if Self.record {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try encoder.encode(runs).write(to: fixture)
            return
        }
        let expected = try JSONDecoder().decode([Golden].self, from: Data(contentsOf: fixture))
        #expect(runs.count == expected.count)
        for (got, want) in zip(runs, expected) {
            let label = "\(want.config) on \(want.workers) worker(s) at stage \(want.stage)"
            #expect(got.loss == want.loss, "\(label): losses differ")
            #expect(got.auxLoss == want.auxLoss, "\(label): aux losses differ")
            #expect(got.gradNorm == want.gradNorm, "\(label): grad norms differ")
            #expect(got.lr == want.lr, "\(label): learning rates differ")
            #expect(got.weights == want.weights, "\(label): final weights differ")
            #expect(got.optimizer == want.optimizer, "\(label): final AdamW moments differ")
        }
    }
}
