import ArgumentParser
import Checkpoint
import Data
import Evaluation
import Foundation
import Model
import Serve
import Tensor
import Training

/// `zerotrain eval`: a checkpoint's quality on a file. Language-model metrics (loss, perplexity,
/// next-token accuracy) on text, JSONL `text` records, a token file or token shards; task metrics
/// (exact match, token F1, corpus BLEU) on a JSONL of `prompt` / `reference` pairs, answering
/// each prompt greedily.
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a checkpoint: loss, perplexity and next-token accuracy on a data file; exact match, F1 and BLEU on prompt/reference pairs.")

    @Option(name: .long, help: "Checkpoint directory (or one of its step-N folders).")
    var checkpoint: String

    @Option(name: .long, help: "Text (.txt), JSONL (`text` records: LM metrics; `prompt`+`reference(s)` records: task metrics), token file (.safetensors) or shards (.zts / directory).")
    var data: String

    @Option(name: .long, help: "Override the kind of --data: text, jsonl, tokens, shards or references.")
    var format: String?

    @Option(name: .long, help: "LM: sequence length (default: the checkpoint's data.seq_len).")
    var seqLen: Int?

    @Option(name: .long, help: "LM: evaluate at most this many sequences (0 = all).")
    var maxSequences: Int = 0

    @Option(name: .long, help: "Tasks: tokens generated per prompt at most.")
    var maxNewTokens: Int = 32

    @Option(name: .long, help: "Tasks: the answer ends at this text (default a newline; empty = only --max-new-tokens).")
    var stop: String = "\n"

    @Option(name: .long, help: "BLEU smoothing: exp (sacreBLEU's default), floor, add-k or none.")
    var smooth: String = "exp"

    @Option(name: .long, help: "BLEU smoothing value for floor (default 0.1) and add-k (default 1).")
    var smoothValue: Double?

    @Flag(name: .long, help: "Lower-case BLEU.")
    var lowercase = false

    @Option(name: .long, help: "Tasks: write each prompt's prediction and scores here (JSONL).")
    var predictions: String?

    @Flag(name: .long, help: "Print the result as one JSON object.")
    var json = false

    func run() throws {
        try runReportingErrors {
            guard maxSequences >= 0 else { throw ValidationError("--max-sequences must be ≥ 0, got \(maxSequences)") }
            guard maxNewTokens >= 1 else { throw ValidationError("--max-new-tokens must be ≥ 1, got \(maxNewTokens)") }
            let kind = try format ?? Self.kind(of: data)
            guard ["text", "jsonl", "tokens", "shards", "references"].contains(kind) else {
                throw ValidationError("--format must be text, jsonl, tokens, shards or references, got \"\(kind)\"")
            }
            // Options are checked before the model is loaded.
            let bleu = CorpusBLEU(smoothing: try CorpusBLEU.Smoothing(name: smooth, value: smoothValue), lowercase: lowercase)
            let references = kind == "references" ? try ReferenceFile(path: data) : nil
            let reader = try CheckpointReader<TrainConfig>(URL(fileURLWithPath: checkpoint))
            let config = reader.manifest.config
            let threads = max(1, min(config.training.threads, ProcessInfo.processInfo.activeProcessorCount))
            GEMM.setThreads(threads)
            GEMM.backend = config.training.gemm
            let model = try Transformer(config: config.model, pool: ThreadPool(threads: threads), precision: config.training.precision)
            try reader.read(.parameters, elements: 0..<model.table.count, into: model.parameters.pointer)
            if let references {
                try task(model: model, tokenizer: try ModelTokenizer.load(folder: reader.folder), pairs: references.pairs, bleu: bleu)
            } else {
                try languageModel(model: model, config: config, kind: kind)
            }
        }
    }

    /// .txt → text, .safetensors → tokens, .zts or a directory → shards, .jsonl → jsonl when its
    /// first record has `text` and no `prompt`, references otherwise.
    static func kind(of path: String) throws -> String {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue { return "shards" }
        if path.hasSuffix(".safetensors") { return "tokens" }
        if path.hasSuffix(".zts") { return "shards" }
        guard path.hasSuffix(".jsonl") else { return "text" }
        guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read --data \(path)") }
        let first = String(decoding: data.prefix(1 << 20), as: UTF8.self).split(separator: "\n").first { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        if let first, let object = try? JSONSerialization.jsonObject(with: Data(first.utf8)) as? [String: Any],
           object["text"] != nil, object["prompt"] == nil {
            return "jsonl"
        }
        return "references"
    }

    private func languageModel(model: Transformer, config: TrainConfig, kind: String) throws {
        var dataConfig = DataConfig()
        dataConfig.source = kind
        dataConfig.path = data
        dataConfig.split = kind == "shards" ? "validation" : nil
        dataConfig.seqLen = seqLen ?? config.data.seqLen
        guard dataConfig.seqLen >= 1 && dataConfig.seqLen <= config.model.maxSeqLen else {
            throw ValidationError("--seq-len must be in 1…\(config.model.maxSeqLen) (model.max_seq_len), got \(dataConfig.seqLen)")
        }
        let tokens: [Int32]
        switch try TokenSource.load(dataConfig) {
        case .stream(let t): tokens = t
        case .mapped(let t, _): tokens = t.tokens(0..<t.count)
        case .batches: throw DataError(.invalidConfig, "\(data): a pre-batched token file; eval needs a token stream")
        }
        if let bad = tokens.first(where: { $0 < 0 || Int($0) >= config.model.vocabSize }) {
            throw DataError(.mismatch, "\(data): token \(bad) is outside the model's vocabulary (\(config.model.vocabSize))")
        }
        let evaluation = try HeldOutEvaluation(tokens: tokens, seqLen: dataConfig.seqLen, batchSize: min(config.training.microBatchSize, 8),
                                               limit: maxSequences)
        let t = try evaluation.run(model: model)
        if json {
            Console.out(Self.json(["loss": t.loss, "perplexity": t.perplexity, "accuracy": t.accuracy, "tokens": Double(t.tokens),
                                   "sequences": Double(evaluation.sequences)]))
        } else {
            Console.out("\(data): \(evaluation.sequences) sequences of \(dataConfig.seqLen), \(t.tokens) tokens: loss \(String(format: "%.4f", t.loss)) | perplexity \(String(format: "%.3f", t.perplexity)) | next-token accuracy \(String(format: "%.4f", t.accuracy))")
        }
    }

    /// Greedy answers from the KV-cached engine, through the tokenizer the checkpoint records,
    /// cut at `--stop`; the prompt's last max_seq_len − max_new_tokens tokens are kept.
    private func task(model: Transformer, tokenizer: ModelTokenizer, pairs: [ReferenceFile.Pair], bleu: CorpusBLEU) throws {
        let engine = InferenceEngine(model: model)
        let keep = max(1, model.config.maxSeqLen - maxNewTokens)
        var outputs: [String] = []
        for pair in pairs {
            let prompt = tokenizer.encode(pair.prompt)
            guard !prompt.isEmpty else { throw EvaluationError(.badInput, "\(data): a prompt is empty") }
            let request = GenerationRequest(prompt: Array(prompt.suffix(keep)), maxTokens: min(maxNewTokens, model.config.maxSeqLen - min(prompt.count, keep)),
                                            sampling: SamplingParameters(), stop: stop.isEmpty ? [] : [stop])
            outputs.append(try engine.generate([request], tokenizer: tokenizer)[0].text)
        }
        let scores = TaskScores(predictions: outputs, references: pairs.map(\.references), bleu: bleu)
        if let predictions {
            var lines = ""
            for (p, o) in zip(pairs, outputs) {
                let record: [String: Any] = ["prompt": p.prompt, "prediction": o, "references": p.references,
                                             "exact_match": SQuADMetrics.exactMatch(prediction: o, references: p.references),
                                             "f1": SQuADMetrics.f1(prediction: o, references: p.references)]
                lines += String(decoding: try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]), as: UTF8.self) + "\n"
            }
            do {
                try Data(lines.utf8).write(to: URL(fileURLWithPath: predictions), options: .atomic)
            } catch {
                throw EvaluationError(.runtime, "cannot write --predictions \(predictions)", cause: error)
            }
        }
        if json {
            Console.out(Self.json(["pairs": Double(scores.count), "exact_match": scores.exactMatch, "f1": scores.f1, "bleu": scores.bleu.score,
                                   "bleu_brevity_penalty": scores.bleu.brevityPenalty]))
        } else {
            let b = scores.bleu
            Console.out("\(data): \(scores.count) pairs: exact match \(String(format: "%.2f", scores.exactMatch)) | F1 \(String(format: "%.2f", scores.f1)) | BLEU \(String(format: "%.2f", b.score)) (\(b.precisions.map { String(format: "%.1f", $0) }.joined(separator: "/")), BP \(String(format: "%.3f", b.brevityPenalty)), smoothing \(smooth))")
        }
    }

    static func json(_ values: [String: Double]) -> String {
        let object = values.mapValues { $0.isFinite ? $0 as Any : "\($0)" as Any }
        return String(decoding: (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data(), as: UTF8.self)
    }
}
