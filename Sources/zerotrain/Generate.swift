import ArgumentParser
import Foundation
import Serve
import Tensor

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sample text from a checkpoint or a Hugging Face folder (KV-cached inference engine).",
        discussion: """
            Prints the prompt and its continuation. The text is tokenized with the tokenizer the model \
            records (its folder's tokenizer.json), or byte by byte when it records none.
            """)

    @Option(name: .long, help: "Checkpoint directory (or one of its step-N folders), or a Hugging Face model folder.")
    var checkpoint: String

    @Option(name: .long, help: "Text to continue.")
    var prompt: String

    @Option(name: .long, help: "Tokens to generate (at most; the model's max_seq_len and a stop sequence may end it sooner).")
    var maxNewTokens: Int = 200

    @Option(name: .long, help: "Sampling temperature (0 = greedy).")
    var temperature: Double = 0.8

    @Option(name: .long, help: "Sample among the k most likely tokens (0 = all).")
    var topK: Int = 40

    @Option(name: .long, help: "Sample among the most likely tokens whose probability reaches p (1 = all).")
    var topP: Double = 1

    @Option(name: .long, help: "Penalise tokens already in the context (transformers' repetition_penalty; 1 = off).")
    var repetitionPenalty: Double = 1

    @Option(name: .long, help: "Stop before this text (repeatable).")
    var stop: [String] = []

    @Option(name: .long, help: "Random seed.")
    var seed: UInt64 = 0

    @Option(name: .long, help: "Compute threads.")
    var threads: Int = 2

    func run() throws {
        try runReportingErrors {
            guard maxNewTokens >= 0 else { throw ValidationError("--max-new-tokens must be ≥ 0, got \(maxNewTokens)") }
            guard threads >= 1 else { throw ValidationError("--threads must be ≥ 1, got \(threads)") }
            let sampling = SamplingParameters(temperature: temperature, topK: topK, topP: topP,
                                              repetitionPenalty: repetitionPenalty, seed: seed)
            if let problem = sampling.problem { throw ValidationError("--" + problem.replacingOccurrences(of: "_", with: "-")) }
            GEMM.setThreads(threads)
            let served = try ServedModel.load(URL(fileURLWithPath: checkpoint), pool: ThreadPool(threads: threads))
            let engine = InferenceEngine(model: served.transformer)
            let request = GenerationRequest(prompt: served.tokenizer.encode(prompt), maxTokens: maxNewTokens, sampling: sampling, stop: stop)
            let generation = try engine.generate([request], tokenizer: served.tokenizer)[0]
            Console.out(prompt + generation.text)
        }
    }
}
