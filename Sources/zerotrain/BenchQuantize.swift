import ArgumentParser
import Foundation
import Model
import Tensor
import Training

/// `zerotrain bench quantize`: fp32 against int8 (dynamic quantization) forward latency on
/// decode-like shapes — batch 1, one token, so every linear layer is a matrix-vector product —
/// and on one prefill of `--prefill` tokens; the two precisions alternate, medians are reported.
struct BenchQuantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Measure fp32 vs int8 forward latency (batch 1, one token; and one prefill), alternated, medians.")

    @Option(name: .long, help: "Config file (its model section is used; weights are random, seeded).")
    var config: String = "configs/bench-medium.yaml"

    @Option(name: .long, help: "Timed forwards per precision and shape.")
    var repeats: Int = 20

    @Option(name: .long, help: "Prompt length of the prefill measurement (0 = skip).")
    var prefill: Int = 64

    @Option(name: .long, help: "Threads (default: training.threads).")
    var threads: Int?

    @Flag(name: .long, help: "Quantize weights per output channel.")
    var perChannel = false

    func run() throws {
        try runReportingErrors {
            guard repeats >= 1 else { throw ValidationError("--repeats must be ≥ 1") }
            guard prefill >= 0 else { throw ValidationError("--prefill must be ≥ 0") }
            let cfg = try TrainConfig.load(path: config)
            let n = threads ?? cfg.training.threads
            guard n >= 1 else { throw ValidationError("--threads must be ≥ 1") }
            GEMM.setThreads(n)
            GEMM.backend = cfg.training.gemm
            let pool = ThreadPool(threads: n)
            let fp32 = try Transformer(config: cfg.model, pool: pool)
            fp32.initializeParameters(seed: cfg.training.seed)
            let int8 = try Transformer(config: cfg.model, pool: pool, precision: .int8)
            int8.parameters.copy(from: fp32.parameters)
            int8.quantize(perChannel: perChannel)
            let cpu = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
                .split(separator: "\n").first { $0.hasPrefix("model name") }?.split(separator: ":").last?
                .trimmingCharacters(in: .whitespaces) ?? "unknown CPU"
            Console.out("# zerotrain bench quantize: \(config), \(fp32.table.count) parameters, \(n) thread(s), \(cpu), nproc \(ProcessInfo.processInfo.activeProcessorCount)")
            Console.out("# compute: \(GEMM.summary(backend: GEMM.backend, precision: "fp32")); int8 \(OneDNN.vnni ? "with VNNI" : "without VNNI"), weights \(perChannel ? "per channel" : "per tensor"), fp32 and int8 alternated, median of \(repeats)")
            let decode = try Quantize.decodeLatency(fp32: fp32, int8: int8, repeats: repeats)
            Console.out(String(format: "decode (batch 1, 1 token): fp32 %.3f ms, int8 %.3f ms, int8 latency %+.1f%% (%.2f× faster)",
                               1e3 * decode.fp32, 1e3 * decode.int8, 100 * (decode.int8 / decode.fp32 - 1), decode.fp32 / decode.int8))
            if prefill > 0 {
                let length = min(prefill, cfg.model.maxSeqLen)
                let tokens = (0..<length).map { Int32($0 % cfg.model.vocabSize) }
                let clock = ContinuousClock()
                var times: ([Double], [Double]) = ([], [])
                for _ in 0..<max(1, repeats / 4) {
                    for (k, model) in [fp32, int8].enumerated() {
                        let start = clock.now
                        try model.forward(inputs: tokens, targets: nil, batch: 1, seqLen: length)
                        if k == 0 { times.0.append((clock.now - start).seconds) } else { times.1.append((clock.now - start).seconds) }
                    }
                }
                let a = BenchCheckpoint.median(times.0), b = BenchCheckpoint.median(times.1)
                Console.out(String(format: "prefill (batch 1, %d tokens, median of %d): fp32 %.2f ms, int8 %.2f ms, int8 latency %+.1f%%",
                                   length, times.0.count, 1e3 * a, 1e3 * b, 100 * (b / a - 1)))
            }
        }
    }
}
