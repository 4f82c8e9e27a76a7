/// One finished step as monitoring sees it: the training scalars and, per rank, the system ones.
/// Plain numbers, so that this module needs nothing of the trainer; the coordinator fills it in.
public struct StepSample: Sendable, Equatable {
    public struct Rank: Sendable, Equatable {
        public var rank: Int
        /// Seconds of the step spent computing, waiting on communication that did not overlap, and on checkpoint snapshots.
        public var computeSeconds: Double
        public var exposedCommunicationSeconds: Double
        public var checkpointSeconds: Double
        /// Seconds reading the step's micro-batches (data loading / I/O latency).
        public var dataSeconds: Double
        /// Busy (compute) time over the step's wall time, 0…1.
        public var utilization: Double
        /// Bytes by tier ("device", "host", "disk"): now, and the peak so far.
        public var memoryBytes: [String: Int]
        public var memoryPeakBytes: [String: Int]
        /// Payload bytes the rank sent in this step, all collectives.
        public var sentBytes: Int

        public init(rank: Int, computeSeconds: Double, exposedCommunicationSeconds: Double, checkpointSeconds: Double,
                    dataSeconds: Double = 0, utilization: Double, memoryBytes: [String: Int], memoryPeakBytes: [String: Int], sentBytes: Int) {
            self.rank = rank
            self.computeSeconds = computeSeconds
            self.exposedCommunicationSeconds = exposedCommunicationSeconds
            self.checkpointSeconds = checkpointSeconds
            self.dataSeconds = dataSeconds
            self.utilization = utilization
            self.memoryBytes = memoryBytes
            self.memoryPeakBytes = memoryPeakBytes
            self.sentBytes = sentBytes
        }
    }

    /// 0-based index of the update.
    public var step: Int
    public var loss: Double
    public var learningRate: Double
    /// Global L2 norm of the gradients before clipping.
    public var gradNorm: Double
    /// MoE load-balancing loss; nil for dense models.
    public var auxLoss: Double?
    /// MoE: fraction of the job's routed token slots each expert received (sums to 1); empty when not reported.
    public var expertLoad: [Double] = []
    /// `telemetry.layer_norms`: gradient L2 norm before clipping of the embedding, each block and
    /// the head, in that order (`layerName`); empty when off.
    public var layerGradNorms: [Double] = []
    public var tokens: Int
    /// Wall time of the step as the coordinator saw it.
    public var seconds: Double
    public var tokensPerSecond: Double
    /// Model FLOPs utilisation, 0…1; nil when the peak is unknown.
    public var mfu: Double?
    public var skipped: Bool
    /// fp16: the dynamic loss scale the step used; nil in other precisions.
    public var lossScale: Double?
    public var idleSeconds: Double
    public var ranks: [Rank]
    /// The held-out evaluation after this step (mean cross-entropy in nats, its exp, next-token
    /// accuracy 0…1); nil when none ran.
    public var validation: Validation?

    public struct Validation: Sendable, Equatable {
        public var loss: Double
        public var perplexity: Double
        public var accuracy: Double
        public init(loss: Double, perplexity: Double, accuracy: Double) {
            self.loss = loss
            self.perplexity = perplexity
            self.accuracy = accuracy
        }
    }

    public init(step: Int, loss: Double, learningRate: Double, gradNorm: Double, auxLoss: Double?, tokens: Int, seconds: Double,
                tokensPerSecond: Double, mfu: Double?, skipped: Bool, idleSeconds: Double, ranks: [Rank]) {
        self.step = step
        self.loss = loss
        self.learningRate = learningRate
        self.gradNorm = gradNorm
        self.auxLoss = auxLoss
        self.tokens = tokens
        self.seconds = seconds
        self.tokensPerSecond = tokensPerSecond
        self.mfu = mfu
        self.skipped = skipped
        self.idleSeconds = idleSeconds
        self.ranks = ranks
    }

    public static let tiers = ["device", "host", "disk"]

    /// The name of entry `index` of `count` per-layer gradient norms: `embedding`, `layer0` … `layer{L−1}`, `head`.
    public static func layerName(_ index: Int, of count: Int) -> String {
        index == 0 ? "embedding" : index == count - 1 ? "head" : "layer\(index - 1)"
    }

    /// The per-layer gradient norms with their names.
    public var namedLayerGradNorms: [(name: String, norm: Double)] {
        layerGradNorms.enumerated().map { (Self.layerName($0.offset, of: layerGradNorms.count), $0.element) }
    }

    /// The scalars TensorBoard and metrics.jsonl get, by tag (docs/operations.md lists them).
    public var scalars: [(tag: String, value: Double)] {
        var s: [(String, Double)] = [
            ("train/loss", loss), ("train/learning_rate", learningRate), ("train/grad_norm", gradNorm),
            ("train/tokens_per_second", tokensPerSecond), ("train/skipped", skipped ? 1 : 0),
        ]
        if let mfu { s.append(("train/mfu", mfu)) }
        if let lossScale { s.append(("train/loss_scale", lossScale)) }
        if let auxLoss { s.append(("train/aux_loss", auxLoss)) }
        for (e, load) in expertLoad.enumerated() { s.append(("train/expert_load/expert\(e)", load)) }
        for (name, norm) in namedLayerGradNorms { s.append(("train/grad_norm/\(name)", norm)) }
        if let v = validation {
            s += [("quality/validation_loss", v.loss), ("quality/perplexity", v.perplexity), ("quality/next_token_accuracy", v.accuracy)]
        }
        s += [("system/step_seconds", seconds), ("system/idle_seconds", idleSeconds)]
        for r in ranks {
            let p = "system/rank\(r.rank)/"
            s += [(p + "compute_seconds", r.computeSeconds), (p + "exposed_communication_seconds", r.exposedCommunicationSeconds),
                  (p + "checkpoint_seconds", r.checkpointSeconds), (p + "data_seconds", r.dataSeconds),
                  (p + "device_utilization", r.utilization),
                  (p + "sent_bytes", Double(r.sentBytes))]
            for tier in Self.tiers {
                s += [(p + "memory_\(tier)_bytes", Double(r.memoryBytes[tier] ?? 0)),
                      (p + "memory_\(tier)_peak_bytes", Double(r.memoryPeakBytes[tier] ?? 0))]
            }
        }
        return s
    }
}
