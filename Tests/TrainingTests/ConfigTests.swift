import Common
import Foundation
import Model
import Testing
import ZeroTrainTestKit
import Training
import Zero

@Suite struct ConfigTests {
    @Test func specExampleIsAcceptedVerbatim() throws {
        let c = try TrainConfig.parse(text: """
            model:
              type: "transformer"
              num_layers: 12
              hidden_size: 768
              num_attention_heads: 12
              moe_config:
                num_experts: 16
                top_k: 2
            """)
        #expect(c.model.numLayers == 12 && c.model.hiddenSize == 768 && c.model.numAttentionHeads == 12)
        #expect(c.model.moeConfig == .init(numExperts: 16, topK: 2))
        #expect(c.model.kvHeads == 12 && c.model.headSize == 64 && c.model.ffnSize == 2048)
        #expect(c.training.optim.lr == 3e-4 && c.data.source == "builtin")
    }

    @Test func shippedConfigsLoad() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("configs")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".yaml") }
        #expect(files.count >= 5)
        for f in files { _ = try TrainConfig.load(path: dir.appendingPathComponent(f).path) }
    }

    static let invalid: [(String, String)] = [
        ("model: {num_layers: 2, hidden_size: 30, num_attention_heads: 4}",
         "model.hidden_size: must be divisible by num_attention_heads (4), got 30"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, moe_config: {num_experts: 16, top_k: 20}}",
         "model.moe_config.top_k: must be ≤ num_experts (16), got 20"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, attention: {type: sliding_window, window: 0}}",
         "model.attention.window: must be ≥ 1, got 0"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, moe_config: {num_experts: 4, topk: 2}}",
         "model.moe_config.top_k: is required"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, moe_config: {num_experts: 4, top_k: 2, topk: 2}}",
         "model.moe_config.topk: unknown key"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\ntraining: {learning_rate: 0.1}",
         "training.learning_rate: unknown key"),
        ("model: {num_layers: twelve, hidden_size: 32, num_attention_heads: 4}",
         "model.num_layers: expected an integer, got \"twelve\""),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\ntraining: {lr: fast}",
         "training.lr: expected a number, got \"fast\""),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 3}",
         "model.num_key_value_heads: must be ≥ 1 and divide num_attention_heads (4), got 3"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\ntraining: {warmup_steps: 50, total_steps: 10}",
         "training.warmup_steps: must be in 0…total_steps (10), got 50"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, max_seq_len: 64}\ndata: {seq_len: 128}",
         "data.seq_len: must be ≤ model.max_seq_len (64), got 128"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\ndata: {source: csv}",
         "data.source: must be builtin, text, jsonl, tokens or shards, got \"csv\""),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\nzero: {stage: 4}",
         "zero.stage: must be 0, 1, 2 or 3, got 4"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\nzero: {stage: 3, offload_optimizer: nvme}",
         "zero.offload_optimizer: must be none, host or disk, got nvme"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\nzero: {stage: 2, offload_optimizer: host, offload_params: host}",
         "zero.offload_params: parameters are offloaded only at stage 3 (they are sharded only there), got stage 2"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\nzero: {stage: 3, offload_optimizer: host, offload_params: disk}",
         "zero.offload_params: disk is further out than offload_optimizer (host); offload the optimizer at least as far"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\nzero: {stage: 3, prefetch_depth: -1}",
         "zero.prefetch_depth: must be ≥ 0, got -1"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\nzero: {stage: 3, prefetch: 2}",
         "zero.prefetch: unknown key"),
        ("training: {lr: 0.1}", "model: is required"),
        ("model: [1, 2]", "model: expected a mapping, got a list"),
        // Field lists (ConfigSection): unknown keys, custom values and required keys keep their path.
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, init: {method: xavier_uniform, std: 0.1}}",
         "model.init.std: unknown key"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, attention: {type: full, size: 4}}",
         "model.attention.size: unknown key"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\ntraining: {lr: 0.1, optim: {lr: 0.1}}",
         "training.optim: unknown key"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\ntraining: {betas: [0.9, 0.95, {b: 1}]}",
         "training.betas[2]: expected a number, got a mapping"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\ndevice: {profile: a100-40g, memroy: 1G}",
         "device.memroy: unknown key"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\ncluster: {workers: 2, worker: 3}",
         "cluster.worker: unknown key"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\noptimizer: adamw",
         "optimizer: unknown key"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\ndevice: {profile: custom, memory: lots}",
         "device.memory: expected bytes such as 42949672960, 40G or 80GiB, got \"lots\""),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\nzero: {stage: 3, offload_optimizer: host, offload_params: ssd}",
         "zero.offload_params: must be none, host or disk, got ssd"),
        ("model: {num_layers: 2, hidden_size: 32}",
         "model.num_attention_heads: is required"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, moe_config: {top_k: 2}}",
         "model.moe_config.num_experts: is required"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\nfault_tolerance: {policy: pause}",
         "fault_tolerance.policy: must be restart, elastic or stop, got pause"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\nfault_tolerance: {rejoin_timeout_s: 0}",
         "fault_tolerance.rejoin_timeout_s: must be > 0, got 0.0"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\nfault_tolerance: {min_workers: 0}",
         "fault_tolerance.min_workers: must be ≥ 1, got 0"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\nfault_tolerance: {max_restarts: -1}",
         "fault_tolerance.max_restarts: must be ≥ 0, got -1"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\nfault_tolerance: {restart_window_s: -5}",
         "fault_tolerance.restart_window_s: must be > 0, got -5.0"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\nfault_tolerance: {replica_interval: -1}",
         "fault_tolerance.replica_interval: must be ≥ 0 (0 = off), got -1"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\nfault_tolerance: {max_skipped_steps: 0}",
         "fault_tolerance.max_skipped_steps: must be ≥ 1, got 0"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\nfault_tolerance: {on_non_finite_streak: ignore}",
         "fault_tolerance.on_non_finite_streak: must be rollback or stop, got ignore"),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\nfault_tolerance: {max_skipped_steps: three}",
         "fault_tolerance.max_skipped_steps: expected an integer, got \"three\""),
        ("model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}\nfault_tolerance: {retries: 3}",
         "fault_tolerance.retries: unknown key"),
    ]

    @Test(arguments: 0..<invalid.count)
    func invalidConfigNamesFieldAndRule(_ i: Int) {
        let (yaml, message) = Self.invalid[i]
        #expect { try TrainConfig.parse(text: yaml) } throws: { ($0 as? ConfigError)?.message == message }
    }

    /// A section's own error re-raised as a config error keeps it as its cause, and the line the
    /// user sees does not repeat it.
    @Test func aSectionsErrorIsKeptAsTheCause() {
        #expect { try TrainConfig.parse(text: "model: {num_layers: 0, hidden_size: 8, num_attention_heads: 2}") } throws: { error in
            guard let e = error as? ConfigError, let cause = e.cause as? ModelError else { return false }
            return cause.code == .invalidConfig && e.kind == .badInput && e.description == e.message
                && e.message == "model.num_layers: must be ≥ 1, got 0"
        }
    }

    @Test func malformedYAMLIsOneLine() {
        #expect { try TrainConfig.parse(text: "model: {num_layers: 2\n  hidden: [", source: "bad.yaml") } throws: { error in
            guard let e = error as? ConfigError else { return false }
            return e.message.hasPrefix("bad.yaml: invalid YAML:") && !e.message.contains("\n")
        }
    }

    @Test func huggingFaceConfigsLoad() throws {
        for (name, window, experts) in [("dense", nil, nil), ("sliding_window", 5, nil), ("moe", nil, 4)] as [(String, Int?, Int?)] {
            let c = try TrainConfig.load(path: Fixtures.reference(name).appendingPathComponent("config.json").path)
            #expect(c.model.window == window)
            #expect(c.model.moeConfig?.numExperts == experts)
        }
        let gqa = try TrainConfig.load(path: Fixtures.reference("dense_gqa_tied").appendingPathComponent("config.json").path)
        #expect(gqa.model.kvHeads == 2 && gqa.model.tieEmbeddings && gqa.model.ropeTheta == 500000 && gqa.model.normEps == 1e-6)
    }

    @Test func roundTripsThroughHuggingFaceJSON() throws {
        let c = try TrainConfig.load(path: Fixtures.reference("moe").appendingPathComponent("config.json").path)
        let back = try ModelConfig(huggingFaceJSON: c.model.huggingFaceJSON())
        #expect(back.numLayers == c.model.numLayers && back.moeConfig == c.model.moeConfig && back.kvHeads == c.model.kvHeads)
    }

    // MARK: defaults and coding (ConfigSection)

    /// A config with every field away from its default (`everyFieldDiffersFromItsDefault` keeps it
    /// so when a field is added). Decoding does not validate, so the values need not make a model.
    static var everyField: TrainConfig {
        let m = ModelConfig(
            type: "decoder", numLayers: 3, hiddenSize: 48, numAttentionHeads: 6, numKeyValueHeads: 2, headDim: 8,
            vocabSize: 300, intermediateSize: 96, maxSeqLen: 64, norm: "layernorm", normEps: 1e-6, ropeTheta: 500000,
            activation: "gelu", tieEmbeddings: true, dropout: 0.1, attention: .init(type: "sliding_window", window: 16),
            moeConfig: .init(numExperts: 4, topK: 1, auxLossCoef: 0.5, numSharedExperts: 1),
            initialization: .init(method: "kaiming_uniform", embeddingStd: 0.05, seed: 9))
        var c = TrainConfig(model: m)
        c.training.optim.optimizer = "lion"
        c.training.optim.lr = 0.01
        c.training.optim.betas = [0.8, 0.9]
        c.training.optim.eps = 1e-6
        c.training.optim.weightDecay = 0
        c.training.optim.schedule = "linear"
        c.training.optim.warmupSteps = 3
        c.training.optim.numCycles = 1.5
        c.training.optim.gradClip = 0.5
        c.training.totalSteps = 7
        c.training.microBatchSize = 2
        c.training.gradientAccumulationSteps = 3
        c.training.seed = 42
        c.training.threads = 2
        c.training.checkpointInterval = 5
        c.training.checkpointKeep = 7
        c.training.checkpointDir = "/tmp/ck"
        c.training.logInterval = 2
        c.training.metricsFile = "/tmp/metrics.jsonl"
        c.training.initFrom = "/tmp/hf"
        c.data.source = "text"
        c.data.path = "/tmp/corpus.txt"
        c.data.seqLen = 32
        // validation_path is not set: it excludes validation_fraction.
        c.data.validationFraction = 0.05
        c.training.evalInterval = 10
        c.training.evalSequences = 16
        var d = DistillationConfig()
        d.teacher = "/tmp/teacher"
        d.temperature = 3
        d.alpha = 0.25
        c.training.distillation = d
        c.cluster.workers = 3
        c.cluster.heartbeatIntervalMs = 100
        c.cluster.heartbeatTimeoutMs = 2000
        c.cluster.bucketMB = 1.5
        c.cluster.divergenceCheckInterval = 0
        c.cluster.collectiveTimeoutSeconds = 5.5
        c.cluster.connectTimeoutSeconds = 7.5
        c.zero.stage = 3
        c.zero.offloadOptimizer = .disk
        c.zero.offloadParams = .host
        c.zero.prefetchDepth = 2
        c.zero.maxLiveParameters = 1000
        c.zero.paramPersistenceThreshold = 10
        c.zero.offloadDir = "/tmp/offload"
        c.zero.reduceDtype = "bf16"
        c.training.gemm = .openblas
        c.training.precision = .bf16
        c.training.lossScale = 1024
        c.training.lossScaleGrowthInterval = 500
        c.training.fp8AmaxHistory = 4
        c.training.activationCheckpointing = .everyK(2)
        c.device = DeviceConfig(profile: "a100-40g", memory: 1 << 30, scale: 0.5)
        c.faultTolerance.policy = .elastic
        c.faultTolerance.rejoinTimeoutSeconds = 5
        c.faultTolerance.minWorkers = 2
        c.faultTolerance.maxRestarts = 4
        c.faultTolerance.restartWindowSeconds = 60
        c.faultTolerance.replicaInterval = 8
        c.faultTolerance.replicaTransport = .network
        c.faultTolerance.maxSkippedSteps = 5
        c.faultTolerance.onNonFiniteStreak = .stop
        return c
    }

    /// Every stored leaf of a value by Swift path (`.training.optim.lr`); structs are walked, a nil
    /// optional has none.
    static func leaves(_ value: Any, _ path: String = "") -> [String: String] {
        let mirror = Mirror(reflecting: value)
        switch mirror.displayStyle {
        case .struct:
            return mirror.children.reduce(into: [:]) { all, child in
                all.merge(leaves(child.value, "\(path).\(child.label ?? "?")")) { a, _ in a }
            }
        case .optional:
            return mirror.children.first.map { leaves($0.value, path) } ?? [:]
        default:
            return [path: String(describing: value)]
        }
    }

    static func jsonEncoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }

    @Test func everyFieldDiffersFromItsDefault() {
        let set = Self.leaves(Self.everyField), defaults = Self.leaves(TrainConfig())
        #expect(set.count > 60)
        #expect(set.filter { defaults[$0.key] == $0.value }.map(\.key).sorted() == [])
    }

    @Test func faultToleranceDefaults() throws {
        let c = try TrainConfig.parse(text: "model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}")
        let f = c.faultTolerance
        #expect(f == FaultToleranceConfig())
        #expect(f.policy == .restart && f.rejoinTimeoutSeconds == 30 && f.minWorkers == 1 && f.maxRestarts == 10)
        #expect(f.restartWindowSeconds == 600 && f.replicaInterval == 0 && f.replicaTransport == .auto && f.maxSkippedSteps == 3 && f.onNonFiniteStreak == .rollback)
        let set = try TrainConfig.parse(text: """
            model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4}
            fault_tolerance: {policy: stop, max_skipped_steps: 1, on_non_finite_streak: stop, rejoin_timeout_s: 2.5}
            """)
        #expect(set.faultTolerance.policy == .stop && set.faultTolerance.maxSkippedSteps == 1)
        #expect(set.faultTolerance.onNonFiniteStreak == .stop && set.faultTolerance.rejoinTimeoutSeconds == 2.5)
        #expect(set.faultTolerance.minWorkers == 1)
        let json = String(decoding: try Self.jsonEncoder().encode(TrainConfig()), as: UTF8.self)
        #expect(json.contains(#""fault_tolerance":{"max_restarts":10,"max_skipped_steps":3"#))
        #expect(json.contains(#""on_non_finite_streak":"rollback","policy":"restart""#))
    }

    @Test func missingKeysTakeTheDefaults() throws {
        let c = try TrainConfig.parse(text: """
            model: {num_layers: 3, hidden_size: 32, num_attention_heads: 4, moe_config: {num_experts: 4, top_k: 1}}
            training: {lr: 0.01, total_steps: 5}
            zero: {stage: 1}
            device: {profile: a100-40g}
            """)
        var expected = TrainConfig()
        expected.model.numLayers = 3
        expected.model.hiddenSize = 32
        expected.model.moeConfig = .init(numExperts: 4, topK: 1)
        expected.training.optim.lr = 0.01
        expected.training.totalSteps = 5
        expected.zero.stage = 1
        expected.device = DeviceConfig(profile: "a100-40g")
        #expect(c == expected)
        #expect(c.model.moeConfig?.auxLossCoef == 0.01 && c.training.optim.betas == [0.9, 0.95] && c.device?.scale == 1)
        #expect(c.data == .init() && c.cluster == ClusterConfig() && c.model.initialization == .init())
    }

    /// Configs travel as JSON (control messages, trainer_state.json): the encoding decodes back to
    /// the same config through JSONDecoder, and through the strict decoder with no unknown key.
    @Test func jsonRoundTripKeepsEveryField() throws {
        let json = try Self.jsonEncoder().encode(Self.everyField)
        #expect(try JSONDecoder().decode(TrainConfig.self, from: json) == Self.everyField)
        let tree = try ConfigValue.parse(yaml: String(decoding: json, as: UTF8.self), source: "json")
        #expect(try ConfigDecoder.decode(TrainConfig.self, from: tree) == Self.everyField)
        // Defaults are written too, and unset optionals are left out.
        let defaults = String(decoding: try Self.jsonEncoder().encode(TrainConfig()), as: UTF8.self)
        #expect(defaults.contains(#""lr":0.0003"#) && defaults.contains(#""offload_optimizer":"none""#))
        #expect(!defaults.contains("device") && !defaults.contains("checkpoint_dir") && !defaults.contains("null"))
    }

    /// A JSON from a build that did not know some keys (or sections) yet decodes with the defaults.
    @Test func jsonWithMissingKeysDecodesWithDefaults() throws {
        var tree = try #require(JSONSerialization.jsonObject(with: try Self.jsonEncoder().encode(Self.everyField)) as? [String: Any])
        tree["cluster"] = nil
        var training = try #require(tree["training"] as? [String: Any])
        training["lr"] = nil
        training["seed"] = nil
        tree["training"] = training
        var zero = try #require(tree["zero"] as? [String: Any])
        zero["offload_params"] = nil
        zero["prefetch_depth"] = nil
        tree["zero"] = zero
        var model = try #require(tree["model"] as? [String: Any])
        model["init"] = [String: Any]()
        tree["model"] = model
        let decoded = try JSONDecoder().decode(TrainConfig.self, from: JSONSerialization.data(withJSONObject: tree))

        var expected = Self.everyField
        expected.cluster = ClusterConfig()
        expected.training.optim.lr = TrainingConfig().optim.lr
        expected.training.seed = TrainingConfig().seed
        expected.zero.offloadParams = ZeroConfig().offloadParams
        expected.zero.prefetchDepth = ZeroConfig().prefetchDepth
        expected.model.initialization = .init()
        #expect(decoded == expected)

        let minimal = #"{"model": {"num_layers": 3, "hidden_size": 32, "num_attention_heads": 4}}"#
        var small = TrainConfig()
        small.model.numLayers = 3
        small.model.hiddenSize = 32
        #expect(try JSONDecoder().decode(TrainConfig.self, from: Data(minimal.utf8)) == small)
    }

    @Test func jsonErrorsNameTheKey() {
        #expect { try JSONDecoder().decode(TrainConfig.self, from: Data(#"{"model": {"num_layers": 3}}"#.utf8)) } throws: { error in
            guard case let DecodingError.keyNotFound(key, ctx) = error else { return false }
            return key.stringValue == "hidden_size" && ctx.codingPath.map(\.stringValue) == ["model"]
        }
        let json = #"{"model": {"num_layers": 3, "hidden_size": 32, "num_attention_heads": 4}, "zero": {"offload_optimizer": "nvme"}}"#
        #expect { try JSONDecoder().decode(TrainConfig.self, from: Data(json.utf8)) } throws: { error in
            guard case let DecodingError.dataCorrupted(ctx) = error else { return false }
            return ctx.codingPath.map(\.stringValue) == ["zero", "offload_optimizer"]
                && ctx.debugDescription == "must be none, host or disk, got nvme"
        }
    }
}
