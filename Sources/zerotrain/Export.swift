import ArgumentParser
import Checkpoint
import Common
import Foundation
import Data
import Model
import Serve
import Training

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a checkpoint as a Hugging Face model folder (config.json, sharded safetensors, index) or as ONNX.",
        discussion: """
            --checkpoint is a checkpoint directory (its latest step), one step folder, or a Hugging Face folder \
            (to re-shard it or change its dtype). The weights are written tensor by tensor; a model larger than \
            --max-shard-size is split into model-00001-of-0000K.safetensors … with model.safetensors.index.json.
            --format onnx writes --out/model.onnx instead: the forward pass (opset 17, standard operators), with \
            past_key_values.N.key/value inputs and present.N.key/value outputs unless --no-kv-cache (docs/serving.md).
            """)

    @Option(name: .long, help: "Checkpoint directory, step folder, or Hugging Face folder.")
    var checkpoint: String

    @Option(name: .long, help: "Output folder (created if needed).")
    var out: String

    @Option(name: .long, help: "Output format: hf (a Hugging Face folder) or onnx (model.onnx in --out).")
    var format: String = "hf"

    @Flag(name: .long, inversion: .prefixedNo, help: "ONNX: past_key_values inputs and present outputs (the KV cache).")
    var kvCache: Bool = true

    @Flag(name: .long, help: "ONNX: weights in model.onnx.data beside the model (always done above 2 GB).")
    var externalData: Bool = false

    @Option(name: .long, help: "Weight type: f32 or bf16 (round to nearest even).")
    var dtype: String = "f32"

    @Option(name: .long, help: "Largest weight file: bytes, or with a unit (500MB, 5GB = 5·10^9, 2GiB = 2·2^30).")
    var maxShardSize: String = "5GB"

    enum Format: String { case hf, onnx }

    var outputFormat: Format { Format(rawValue: format.lowercased()) ?? .hf }

    func run() throws {
        try runReportingErrors {
            guard Format(rawValue: format.lowercased()) != nil else {
                throw ValidationError("--format must be hf or onnx, got \"\(format)\"")
            }
            guard let dtype = ExportDType(rawValue: dtype.lowercased()) else {
                throw ValidationError("--dtype must be f32 or bf16, got \"\(self.dtype)\"")
            }
            guard let maxShardBytes = HuggingFaceExport.byteCount(maxShardSize) else {
                throw ValidationError("--max-shard-size must be a positive size such as 5GB, 500MB, 2GiB or a number of bytes, got \"\(maxShardSize)\"")
            }
            let source = URL(fileURLWithPath: checkpoint).standardizedFileURL
            let folder = URL(fileURLWithPath: out).standardizedFileURL
            guard source.resolvingSymlinksInPath().path != folder.resolvingSymlinksInPath().path else {
                throw ValidationError("--out must differ from --checkpoint (the export replaces the folder's weight files)")
            }
            let tensors = try ModelSource(source)
            let table = ParameterTable(config: tensors.config)
            let clock = ContinuousClock()
            let start = clock.now
            if outputFormat == .onnx {
                try exportONNX(tensors, table: table, to: folder)
                return
            }
            var files = try HuggingFaceExport.write(model: tensors.config, table: table, to: folder, dtype: dtype,
                                                    maxShardBytes: maxShardBytes, read: tensors.read)
            files += try Self.writeTokenizer(from: tensors.folder, to: folder, model: tensors.config)
            let seconds = (clock.now - start).seconds
            var total = 0
            for f in files {
                let size = (try? FileManager.default.attributesOfItem(atPath: f.path)[.size] as? Int) ?? 0
                total += size
                Console.out("\(f.path)  \(Self.format(bytes: size))")
            }
            Console.out("\(files.count) files, \(Self.format(bytes: total)) (\(table.count) parameters, \(dtype.rawValue)) in "
                        + String(format: "%.2f s (%.0f MB/s)", seconds, Double(total) / 1e6 / max(seconds, 1e-9)))
        }
    }

    /// Writes `--out`/model.onnx: the forward pass as standard opset-17 operators (`ONNXExport`),
    /// fp32 weights inline, or in model.onnx.data with --external-data or above protobuf's 2 GB.
    private func exportONNX(_ tensors: ModelSource, table: ParameterTable, to folder: URL) throws {
        guard dtype.lowercased() == "f32" else { throw ValidationError("--format onnx writes f32 weights; drop --dtype \(dtype)") }
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        } catch {
            throw CheckpointError(.io, "cannot create \(folder.path)", cause: error)
        }
        let clock = ContinuousClock()
        let start = clock.now
        let onnx = ONNXExport.model(config: tensors.config, table: table, kvCache: kvCache, read: tensors.read)
        // protobuf's limit is 2 GiB per message; leave room for the graph itself.
        let external = externalData || onnx.initializerBytes > (1 << 31) - (64 << 20)
        let files = try onnx.write(to: folder.appendingPathComponent("model.onnx"), externalData: external)
        var total = 0
        for f in files {
            let size = (try? FileManager.default.attributesOfItem(atPath: f.path)[.size] as? Int) ?? 0
            total += size
            Console.out("\(f.path)  \(Self.format(bytes: size))")
        }
        Console.out("onnx opset \(onnx.opset), \(onnx.nodes.count) nodes, \(table.count) parameters (f32), KV cache \(kvCache ? "in/out" : "none"), "
                    + "\(external ? "external data" : "weights inline"), \(Self.format(bytes: total)) in "
                    + String(format: "%.2f s", (clock.now - start).seconds))
    }

    /// The model's tokenizer for transformers: the recorded tokenizer.json, copied, and a
    /// tokenizer_config.json naming its special tokens and the server's chat template (Jinja).
    /// Nothing for a model with the byte-level tokenizer (no tokenizer.json: transformers has no
    /// byte-level tokenizer class to name).
    static func writeTokenizer(from source: URL, to folder: URL, model: ModelConfig) throws -> [URL] {
        let tokenizer = try ModelTokenizer.load(folder: source)
        guard case .bpe = tokenizer else { return [] }
        let json = folder.appendingPathComponent(ModelTokenizer.fileName)
        if source.resolvingSymlinksInPath().path != folder.resolvingSymlinksInPath().path {
            try? FileManager.default.removeItem(at: json)
            try FileManager.default.copyItem(at: source.appendingPathComponent(ModelTokenizer.fileName), to: json)
        }
        var config: [String: Any] = ["tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": model.maxSeqLen,
                                     "chat_template": ChatTemplate.jinja, "clean_up_tokenization_spaces": false]
        for (key, token) in [("bos_token", "<|bos|>"), ("eos_token", "<|eos|>"), ("pad_token", "<|pad|>")]
        where tokenizer.specialTokens.contains(token) { config[key] = token }
        let data = try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
        let url = folder.appendingPathComponent("tokenizer_config.json")
        try data.write(to: url, options: .atomic)
        return [json, url]
    }

    static func format(bytes: Int) -> String {
        bytes >= 1_000_000 ? String(format: "%.1f MB", Double(bytes) / 1e6)
            : bytes >= 1000 ? String(format: "%.1f kB", Double(bytes) / 1e3) : "\(bytes) B"
    }
}
