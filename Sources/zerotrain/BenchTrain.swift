import ArgumentParser
import Foundation
import Model
import Tensor
import Training

struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Measure SGEMM peak, then time full training steps and report tokens/s, GFLOP/s and MFU.")

    @Option(name: .long, help: "Config file.")
    var config: String

    @Option(name: .long, help: "Timed training steps (after one warm-up step).")
    var steps: Int = 5

    @Option(name: .long, help: "Threads (default: training.threads).")
    var threads: Int?

    @Option(name: .long, help: "Override data.seq_len (and raise model.max_seq_len to fit).")
    var seqLen: Int?

    @Option(name: .long, help: "Override training.micro_batch_size.")
    var microBatch: Int?

    @Option(name: .long, help: "Override training.gemm (onednn or openblas).")
    var gemm: String?

    @Option(name: .long, help: "Override training.precision (fp32 or bf16).")
    var precision: String?

    @Flag(name: .long, help: "Print one JSON object.")
    var json = false

    struct Result: Codable {
        var config: String
        var threads: Int
        var steps: Int
        var tokensPerStep: Int
        var stepSecondsMedian: Double
        var tokensPerSecond: Double
        var achievedGflops: Double
        var peakGflops: Double
        var mfu: Double
        var seqLen: Int
        var activationBytes: Int
        enum CodingKeys: String, CodingKey {
            case seqLen = "seq_len", activationBytes = "activation_bytes"
            case config, threads, steps, tokensPerStep = "tokens_per_step", stepSecondsMedian = "step_seconds_median"
            case tokensPerSecond = "tokens_per_second", achievedGflops = "achieved_gflops", peakGflops = "peak_gflops", mfu
        }
    }

    func run() throws {
        try runReportingErrors {
            var cfg = try TrainConfig.load(path: config)
            if let threads { cfg.training.threads = threads }
            if let seqLen {
                cfg.data.seqLen = seqLen
                cfg.model.maxSeqLen = max(cfg.model.maxSeqLen, seqLen)
            }
            if let microBatch { cfg.training.microBatchSize = microBatch }
            if let gemm { cfg.training.gemm = gemm }
            if let precision { cfg.training.precision = precision }
            guard steps >= 1 else { throw TrainingError(.badInput, "--steps must be ≥ 1") }
            cfg.training.totalSteps = max(cfg.training.totalSteps, steps + 1)
            cfg.training.checkpointDir = nil
            cfg.training.metricsFile = nil
            try cfg.validate()
            let t = cfg.training.threads
            GEMM.setThreads(t)
            GEMM.backend = GEMMBackend(rawValue: cfg.training.gemm) ?? .onednn
            let peak = Self.sgemmPeak()
            let trainer = try Trainer(config: cfg)
            _ = try trainer.trainStep()
            var times: [Double] = []
            for _ in 0..<steps { times.append(try trainer.trainStep().seconds) }
            times.sort()
            let median = times[times.count / 2]
            let tokens = cfg.training.microBatchSize * cfg.training.gradientAccumulationSteps * cfg.data.seqLen
            let flops = ModelFLOPs.trainingStep(config: cfg.model, batch: cfg.training.microBatchSize, seqLen: cfg.data.seqLen)
                * Double(cfg.training.gradientAccumulationSteps)
            let achieved = flops / median / 1e9
            let r = Result(config: config, threads: t, steps: steps, tokensPerStep: tokens, stepSecondsMedian: median,
                           tokensPerSecond: Double(tokens) / median, achievedGflops: achieved, peakGflops: peak, mfu: achieved / peak,
                           seqLen: cfg.data.seqLen,
                           activationBytes: trainer.model.activationBytes(batch: cfg.training.microBatchSize, seqLen: cfg.data.seqLen))
            if json {
                let enc = JSONEncoder()
                enc.outputFormatting = [.sortedKeys]
                Console.out(String(decoding: try enc.encode(r), as: UTF8.self))
            } else {
                Console.out("config \(config), \(t) thread(s), \(steps) timed steps of \(tokens) tokens")
                Console.out(String(format: "SGEMM peak (2048³, best of 5): %.1f GFLOP/s", peak))
                Console.out(String(format: "step time (median): %.4f s   tokens/s: %.0f", median, r.tokensPerSecond))
                Console.out(String(format: "achieved: %.1f GFLOP/s   MFU: %.1f%%", achieved, 100 * r.mfu))
                Console.out(String(format: "activations: %.1f MiB for micro-batch %d × seq %d", Double(r.activationBytes) / 1048576,
                                   cfg.training.microBatchSize, cfg.data.seqLen))
            }
        }
    }

    /// Best-of-5 square SGEMM (2048³) throughput in GFLOP/s with the current BLAS thread count.
    static func sgemmPeak(size n: Int = 2048) -> Double {
        let a = FloatBuffer(count: n * n), b = FloatBuffer(count: n * n), c = FloatBuffer(count: n * n)
        Philox(seed: 1).fillUniform(a.buffer, low: -1, high: 1, stream: 0)
        Philox(seed: 2).fillUniform(b.buffer, low: -1, high: 1, stream: 0)
        var best = Double.infinity
        for i in 0..<6 {
            let start = DispatchTime.now().uptimeNanoseconds
            GEMM.sgemm(m: n, n: n, k: n, a: a.pointer, lda: n, b: b.pointer, ldb: n, c: c.pointer, ldc: n)
            let s = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            if i > 0 { best = min(best, s) }
        }
        return 2 * Double(n) * Double(n) * Double(n) / best / 1e9
    }
}
