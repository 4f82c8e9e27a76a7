import ArgumentParser
import Checkpoint
import Data
import Foundation
import Model
import Tensor
import Training

/// `zerotrain quantize`: PyTorch-style dynamic int8 quantization of a model's linear layers
/// (docs/serving.md), written as a quantized folder, with its size, perplexity and latency
/// against fp32.
struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Quantize a model's linear layers to int8 (dynamic quantization) and report size, perplexity and latency.",
        discussion: """
            --in is a ZeroTrain checkpoint directory (its latest step), one step folder, or a Hugging Face folder. \
            --out receives config.json (with quantization_config) and model.safetensors: int8 weights with their \
            scales, every other tensor in f32. Weights are symmetric int8 per tensor (default) or per output channel; \
            activations are quantized per call to uint8 from their min and max, as torch.ao.quantization.quantize_dynamic does.
            --eval names a text file (byte tokens) or a token file (.safetensors, tokens[n]) for the perplexity of both models.
            """)

    @Option(name: .customLong("in"), help: "Checkpoint directory, step folder, or Hugging Face folder.")
    var input: String

    @Option(name: .long, help: "Output folder (created if needed).")
    var out: String

    @Flag(name: .long, help: "One scale per output channel instead of one per weight tensor.")
    var perChannel = false

    @Option(name: .long, help: "Text or token file to measure perplexity on (fp32 and int8).")
    var eval: String?

    @Option(name: .long, help: "Tokens of --eval to use at most.")
    var evalTokens: Int = 4096

    @Option(name: .long, help: "Window length for perplexity (default: min(max_seq_len, 256)).")
    var seqLen: Int?

    @Option(name: .long, help: "Single-token forwards timed per precision for the latency line (alternated, median).")
    var latencyRepeats: Int = 10

    @Option(name: .long, help: "Threads.")
    var threads: Int = 2

    func run() throws {
        try runReportingErrors {
            guard threads >= 1 else { throw ValidationError("--threads must be ≥ 1") }
            guard evalTokens >= 2 else { throw ValidationError("--eval-tokens must be ≥ 2") }
            guard latencyRepeats >= 1 else { throw ValidationError("--latency-repeats must be ≥ 1") }
            let source = URL(fileURLWithPath: input).standardizedFileURL
            let folder = URL(fileURLWithPath: out).standardizedFileURL
            guard source.resolvingSymlinksInPath().path != folder.resolvingSymlinksInPath().path else {
                throw ValidationError("--out must differ from --in")
            }
            GEMM.setThreads(threads)
            let pool = ThreadPool(threads: threads)
            let weights = try ModelSource(source)
            let fp32 = try weights.model(pool: pool)
            let int8 = try weights.model(pool: pool, precision: .int8)
            int8.quantize(perChannel: perChannel)
            // The tokenizer the model records goes with it (serve and generate read it there).
            let files = try QuantizedModel.write(int8, to: folder)
            _ = try Export.writeTokenizer(from: weights.folder, to: folder, model: weights.config)
            let int8Bytes = files.reduce(0) { $0 + ((try? FileManager.default.attributesOfItem(atPath: $1.path)[.size] as? Int) ?? 0) }
            let fp32Bytes = 4 * fp32.table.count
            Console.out("\(folder.path): \(int8.quantized!.weights.count) linear weights int8 \(perChannel ? "per channel" : "per tensor"), "
                        + "embedding, norms and any MoE router stay f32")
            Console.out("size: fp32 \(Export.format(bytes: fp32Bytes)) → int8 \(Export.format(bytes: int8Bytes)) "
                        + String(format: "(%.1f%% of fp32)", 100 * Double(int8Bytes) / Double(fp32Bytes)))
            Console.out("compute: \(GEMM.summary(backend: GEMM.backend, precision: "fp32")), int8 \(OneDNN.vnni ? "VNNI" : "without VNNI"), \(threads) thread(s)")
            let latency = try Self.decodeLatency(fp32: fp32, int8: int8, repeats: latencyRepeats)
            Console.out(String(format: "latency (one token, batch 1, median of %d alternated): fp32 %.3f ms, int8 %.3f ms (%+.1f%%)",
                               latencyRepeats, 1e3 * latency.fp32, 1e3 * latency.int8, 100 * (latency.int8 / latency.fp32 - 1)))
            if let eval {
                let tokens = try Self.tokens(eval, limit: evalTokens, vocab: fp32.config.vocabSize)
                let window = min(seqLen ?? min(fp32.config.maxSeqLen, 256), fp32.config.maxSeqLen, tokens.count - 1)
                guard window >= 1 else { throw ValidationError("--seq-len must be ≥ 1") }
                let a = try Self.perplexity(fp32, tokens: tokens, window: window)
                let b = try Self.perplexity(int8, tokens: tokens, window: window)
                Console.out(String(format: "perplexity on %@ (%d tokens, windows of %d): fp32 %.4f, int8 %.4f (%+.3f%%); forward time fp32 %.2f s, int8 %.2f s",
                                   eval, a.tokens, window, a.perplexity, b.perplexity, 100 * (b.perplexity / a.perplexity - 1), a.seconds, b.seconds))
            }
        }
    }

    /// Median seconds of a one-token forward (batch 1), fp32 and int8 alternated after a warm-up.
    static func decodeLatency(fp32: Transformer, int8: Transformer, repeats: Int, token: Int32 = 1) throws -> (fp32: Double, int8: Double) {
        let clock = ContinuousClock()
        var times: ([Double], [Double]) = ([], [])
        for model in [fp32, int8] { try model.forward(inputs: [token], targets: nil, batch: 1, seqLen: 1) }
        for _ in 0..<repeats {
            var start = clock.now
            try fp32.forward(inputs: [token], targets: nil, batch: 1, seqLen: 1)
            times.0.append((clock.now - start).seconds)
            start = clock.now
            try int8.forward(inputs: [token], targets: nil, batch: 1, seqLen: 1)
            times.1.append((clock.now - start).seconds)
        }
        return (BenchCheckpoint.median(times.0), BenchCheckpoint.median(times.1))
    }

    /// exp(mean next-token cross-entropy) over consecutive windows of `window` + 1 tokens.
    static func perplexity(_ model: Transformer, tokens: [Int32], window: Int) throws -> (perplexity: Double, tokens: Int, seconds: Double) {
        let clock = ContinuousClock()
        let start = clock.now
        var total = 0.0, count = 0, at = 0
        while at + window < tokens.count {
            let slice = Array(tokens[at...(at + window)])
            let loss = try model.forward(inputs: Array(slice.dropLast()), targets: Array(slice.dropFirst()), batch: 1, seqLen: window)
            total += Double(loss) * Double(window)
            count += window
            at += window
        }
        return (exp(total / Double(count)), count, (clock.now - start).seconds)
    }

    /// The tokens of a text file (byte tokens) or a token file (.safetensors), at most `limit`.
    static func tokens(_ path: String, limit: Int, vocab: Int) throws -> [Int32] {
        var data = DataConfig()
        data.source = path.hasSuffix(".safetensors") ? "tokens" : "text"
        data.path = path
        var tokens: [Int32]
        switch try TokenSource.load(data) {
        case .stream(let t): tokens = t
        case .batches(let t, _, _, _, _): tokens = t
        case .mapped(let t, _): tokens = t.tokens(0..<min(t.count, limit))
        }
        tokens = Array(tokens.prefix(limit))
        guard tokens.count >= 2 else { throw ValidationError("--eval \(path) has fewer than 2 tokens") }
        if let bad = tokens.first(where: { $0 < 0 || Int($0) >= vocab }) {
            throw ValidationError("--eval \(path): token \(bad) is outside the model's vocabulary 0..<\(vocab)")
        }
        return tokens
    }
}
