import ArgumentParser
import Foundation
import Model
import Tensor
import Training

struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Measure the matmul peaks (oneDNN fp32 and bf16, OpenBLAS SGEMM), then time full training steps and report tokens/s, GFLOP/s and MFU against the peak of the backend and format in use.")

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

    @Option(name: .long, help: "Override training.precision (fp32, bf16, fp16 or fp8).")
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
        var precision: String
        var gemm: String
        var isa: String
        /// Every backend's and format's measured peak (GFLOP/s): onednn_fp32, onednn_bf16, openblas_fp32.
        var peaks: [String: Double]
        enum CodingKeys: String, CodingKey {
            case seqLen = "seq_len", activationBytes = "activation_bytes", precision, gemm, isa, peaks
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
            if let gemm {
                guard let g = GEMMBackend(rawValue: gemm) else { throw ValidationError("--gemm must be onednn or openblas, got \"\(gemm)\"") }
                cfg.training.gemm = g
            }
            if let precision {
                guard let p = Precision(rawValue: precision), p.trains else { throw ValidationError("--precision must be \(Precision.trainingNames), got \"\(precision)\"") }
                cfg.training.precision = p
            }
            guard steps >= 1 else { throw TrainingError(.badInput, "--steps must be ≥ 1") }
            cfg.training.totalSteps = max(cfg.training.totalSteps, steps + 1)
            cfg.training.checkpointDir = nil
            cfg.training.metricsFile = nil
            try cfg.validate()
            let t = cfg.training.threads
            GEMM.setThreads(t)
            var peaks: [String: Double] = [:]
            for backend in GEMMBackend.allCases {
                GEMM.backend = backend
                peaks["\(backend.rawValue)_fp32"] = Self.matmulPeak(bf16: false)
            }
            GEMM.backend = .onednn
            if OneDNN.bf16Support != .unavailable { peaks["onednn_bf16"] = Self.matmulPeak(bf16: true) }
            let backend = cfg.training.gemm
            GEMM.backend = backend
            // bf16 on OpenBLAS multiplies in fp32; bf16 without oneDNN support too.
            let peakKey = cfg.training.precision == .bf16 && backend == .onednn && peaks["onednn_bf16"] != nil
                ? "onednn_bf16" : "\(backend.rawValue)_fp32"
            let peak = peaks[peakKey]!
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
                           activationBytes: trainer.model.activationBytes(batch: cfg.training.microBatchSize, seqLen: cfg.data.seqLen),
                           precision: cfg.training.precision.rawValue, gemm: backend.rawValue, isa: OneDNN.effectiveISA, peaks: peaks)
            if json {
                let enc = JSONEncoder()
                enc.outputFormatting = [.sortedKeys]
                Console.out(String(decoding: try enc.encode(r), as: UTF8.self))
            } else {
                Console.out("config \(config), \(t) thread(s), \(steps) timed steps of \(tokens) tokens")
                Console.out("compute: \(GEMM.summary(backend: backend, precision: cfg.training.precision.rawValue))")
                Console.out("matmul peaks (2048³, best of 5): " + peaks.keys.sorted().map { "\($0) " + String(format: "%.1f", peaks[$0]!) }
                    .joined(separator: ", ") + " GFLOP/s; MFU against \(peakKey)")
                Console.out(String(format: "step time (median): %.4f s   tokens/s: %.0f", median, r.tokensPerSecond))
                Console.out(String(format: "achieved: %.1f GFLOP/s   MFU: %.1f%%", achieved, 100 * r.mfu))
                Console.out(String(format: "activations: %.1f MiB for micro-batch %d × seq %d", Double(r.activationBytes) / 1048576,
                                   cfg.training.microBatchSize, cfg.data.seqLen))
            }
        }
    }

    /// Best-of-5 square matmul (2048³) throughput in GFLOP/s through the current backend and
    /// thread count: fp32 operands, or bf16 operands with fp32 accumulation.
    static func matmulPeak(bf16: Bool, size n: Int = 2048) -> Double {
        let a = FloatBuffer(count: n * n), b = FloatBuffer(count: n * n), c = FloatBuffer(count: n * n)
        Philox(seed: 1).fillUniform(a.buffer, low: -1, high: 1, stream: 0)
        Philox(seed: 2).fillUniform(b.buffer, low: -1, high: 1, stream: 0)
        let ab = BFloat16Buffer(count: bf16 ? n * n : 0), bb = BFloat16Buffer(count: bf16 ? n * n : 0)
        if bf16 {
            BF16.convert(a.pointer, to: ab.pointer, count: n * n)
            BF16.convert(b.pointer, to: bb.pointer, count: n * n)
        }
        var best = Double.infinity
        for i in 0..<6 {
            let start = DispatchTime.now().uptimeNanoseconds
            if bf16 {
                GEMM.bf16gemm(m: n, n: n, k: n, a: ab.pointer, lda: n, b: bb.pointer, ldb: n, c: c.pointer, ldc: n)
            } else {
                GEMM.sgemm(m: n, n: n, k: n, a: a.pointer, lda: n, b: b.pointer, ldb: n, c: c.pointer, ldc: n)
            }
            let s = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            if i > 0 { best = min(best, s) }
        }
        return 2 * Double(n) * Double(n) * Double(n) / best / 1e9
    }
}
