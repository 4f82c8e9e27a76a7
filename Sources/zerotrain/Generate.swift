import ArgumentParser
import Checkpoint
import Data
import Foundation
import Model
import Tensor
import Training

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Sample text from a checkpoint.")

    @Option(name: .long, help: "Checkpoint directory (or one of its step-N folders).")
    var checkpoint: String

    @Option(name: .long, help: "Text to continue.")
    var prompt: String

    @Option(name: .long, help: "Tokens to generate.")
    var maxNewTokens: Int = 200

    @Option(name: .long, help: "Sampling temperature (0 = greedy).")
    var temperature: Double = 0.8

    @Option(name: .long, help: "Sample among the k most likely tokens (0 = all).")
    var topK: Int = 40

    @Option(name: .long, help: "Random seed.")
    var seed: UInt64 = 0

    func run() throws {
        try runReportingErrors {
            guard maxNewTokens >= 0 else { throw TrainingError(.badInput, "--max-new-tokens must be ≥ 0") }
            let reader = try CheckpointReader<TrainConfig>(URL(fileURLWithPath: checkpoint))
            let config = reader.manifest.config
            let threads = min(config.training.threads, 2)
            GEMM.setThreads(threads)
            let model = try Transformer(config: config.model, pool: ThreadPool(threads: threads))
            try reader.read(.parameters, elements: 0..<model.table.count, into: model.parameters.pointer)
            let tokenizer = ByteTokenizer()
            let out = try TextGenerator(model: model).generate(
                prompt: tokenizer.encode(prompt), count: maxNewTokens, temperature: temperature, topK: topK, seed: seed)
            Console.out(tokenizer.decode(out))
        }
    }
}
