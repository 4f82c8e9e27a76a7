import ArgumentParser
import Foundation
import Model
import Serve
import Tensor
import Training

/// `zerotrain bench quantize`: fp32 against int8 (dynamic quantization) forward latency on
/// decode-like shapes — batch 1, one token, so every linear layer is a matrix-vector product —
/// on one prefill of `--prefill` tokens, and (`--decode N`) per generated token of KV-cached
/// decoding through the serving engine; the two precisions alternate, medians are reported.
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

    @Option(name: .long, help: "Tokens generated per repeat through the KV-cached InferenceEngine (greedy, batch 1, after a 16-token prompt): per-token decode latency (0 = skip).")
    var decode: Int = 0

    @Option(name: .long, help: "Threads (default: training.threads).")
    var threads: Int?

    @Flag(name: .long, help: "Quantize weights per output channel.")
    var perChannel = false

    func run() throws {
        try runReportingErrors {
            guard repeats >= 1 else { throw ValidationError("--repeats must be ≥ 1") }
            guard prefill >= 0 else { throw ValidationError("--prefill must be ≥ 0") }
            guard decode >= 0 else { throw ValidationError("--decode must be ≥ 0") }
            let cfg = try TrainConfig.load(path: config)
            guard decode + Self.decodePrompt <= cfg.model.maxSeqLen else {
                throw ValidationError("--decode \(decode): the prompt (\(Self.decodePrompt)) and the tokens must fit model.max_seq_len (\(cfg.model.maxSeqLen))")
            }
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
            let oneToken = try Quantize.decodeLatency(fp32: fp32, int8: int8, repeats: repeats)
            Console.out(String(format: "decode (batch 1, 1 token): fp32 %.3f ms, int8 %.3f ms, int8 latency %+.1f%% (%.2f× faster)",
                               1e3 * oneToken.fp32, 1e3 * oneToken.int8, 100 * (oneToken.int8 / oneToken.fp32 - 1), oneToken.fp32 / oneToken.int8))
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
            if decode > 0 {
                let r = try Self.cachedDecodeLatency(fp32: fp32, int8: int8, tokens: decode, repeats: repeats)
                Console.out(String(format: "KV-cached decode (InferenceEngine, batch 1, %d tokens after a %d-token prompt, per token, median of %d): fp32 %.3f ms, int8 %.3f ms, int8 latency %+.1f%% (%.2f× faster); int8 greedy tokens equal fp32's for the first %d of %d",
                                   decode, Self.decodePrompt, repeats, 1e3 * r.fp32, 1e3 * r.int8, 100 * (r.int8 / r.fp32 - 1), r.fp32 / r.int8, r.agreeing, decode))
            }
        }
    }

    static let decodePrompt = 16

    /// Per-token seconds of greedy KV-cached decoding through `InferenceEngine`: each repeat
    /// prefills the same prompt into a fresh cache (untimed) and times `tokens` one-token steps;
    /// fp32 and int8 alternate repeat by repeat (after one warm-up repeat each), the result is the
    /// median over repeats of each repeat's mean step time. Also how many leading greedy tokens of
    /// the int8 model equal the fp32 model's.
    static func cachedDecodeLatency(fp32: Transformer, int8: Transformer, tokens: Int, repeats: Int)
        throws -> (fp32: Double, int8: Double, agreeing: Int) {
        let engines = [InferenceEngine(model: fp32), InferenceEngine(model: int8)]
        let vocab = fp32.config.vocabSize
        let prompt = (0..<decodePrompt).map { Int32(($0 * 7 + 3) % vocab) }
        let clock = ContinuousClock()
        var times: [[Double]] = [[], []]
        var generated: [[Int32]] = [[], []]
        for round in 0...repeats {
            for (k, engine) in engines.enumerated() {
                let cache = engine.makeCache(positions: decodePrompt + tokens)
                var logits = try engine.step([.init(cache: cache, tokens: prompt)])[0]
                var out: [Int32] = []
                let start = clock.now
                for _ in 0..<tokens {
                    let next = Int32(logits.indices.max { logits[$0] < logits[$1] }!)
                    out.append(next)
                    logits = try engine.step([.init(cache: cache, tokens: [next])])[0]
                }
                if round > 0 { times[k].append((clock.now - start).seconds / Double(tokens)) }
                generated[k] = out
            }
        }
        let agreeing = zip(generated[0], generated[1]).prefix { $0 == $1 }.count
        return (BenchCheckpoint.median(times[0]), BenchCheckpoint.median(times[1]), agreeing)
    }
}
