import Foundation
import Tensor

/// Where a region of the flat buffers (`ParameterTable.regions`) lives while forward and backward
/// use it: ZeRO stage 3 gathers a region's parameters from the ranks' shards just before use and
/// frees them after; stages 2–3 hand backward a fresh gradient buffer per region and reduce it
/// across ranks as soon as backward is done with it. Without one, the model reads and writes its
/// own `parameters` and `gradients`.
public protocol ParameterResidency: AnyObject {
    /// Region `region`'s parameters (a pointer to its first element), valid until `release`.
    /// `upcoming` lists the regions this micro-batch will acquire next, in order (for prefetching).
    func acquire(_ region: Int, upcoming: ArraySlice<Int>) throws -> UnsafeMutablePointer<Float>
    /// The model is done reading region `region`'s parameters for now.
    func release(_ region: Int)
    /// Where backward adds region `region`'s gradient of this micro-batch (a pointer to its first
    /// element, zeroed), valid until `gradientsDone`.
    func gradients(_ region: Int) throws -> UnsafeMutablePointer<Float>
    /// Backward will not touch region `region`'s gradient again in this micro-batch.
    func gradientsDone(_ region: Int) throws
}

/// A decoder-only Transformer (Llama / Mistral / Mixtral family) over one flat parameter buffer.
///
/// `parameters` and `gradients` share the layout of `table`. `forward` runs the model on a batch
/// and saves what `backward` needs; `backward` accumulates d(scale · (loss + coef · aux))/dθ into
/// `gradients`, so gradient accumulation is calling forward/backward again before zeroing.
/// With a `residency` (ZeRO 2–3) the model may own neither buffer and works region by region.
public final class Transformer {
    public let config: ModelConfig
    public let table: ParameterTable
    /// All parameters (empty when built with `ownsParameters: false`; a residency supplies them).
    public let parameters: FloatBuffer
    /// All gradients (empty when built with `ownsGradients: false`).
    public let gradients: FloatBuffer
    public let pool: ThreadPool
    /// Supplies parameters and gradient buffers region by region; nil = `parameters`/`gradients`.
    public var residency: ParameterResidency?
    let rope: RotaryEmbedding
    private var acts: Activations?
    /// Where each region's parameters and gradients are now (the region's first element).
    private var parameterBase: [UnsafeMutablePointer<Float>?]
    private var gradientBase: [UnsafeMutablePointer<Float>?]
    /// Regions this micro-batch acquires, in order, and how many it has acquired so far.
    private var accessOrder: [Int] = []
    private var accessed = 0
    private var held: Set<Int> = []
    /// Mixed precision: each region's weight copy — bf16 or fp16 bits, or fp8 codes (kept between
    /// steps when the model owns its parameters, made per acquisition under a residency) — and
    /// whether it matches the fp32 values.
    public let precision: Precision
    /// Activation recomputation: keep only the inputs of groups of blocks and run a group's forward
    /// again just before its backward.
    public let checkpointing: ActivationCheckpointing
    private var halfCopies: [BFloat16Buffer?]
    private var fp8Copies: [FP8Buffer?]
    private var copiesFresh: [Bool]
    private let mixedScratch: MixedScratch
    /// fp8: each weight matrix's delayed scaling (its weight, input and output gradient), by the
    /// weight's offset in the flat buffer, made for every matrix of the table when the model is
    /// built; and the length of their amax histories.
    private var fp8Scalings: [Int: FP8LinearScaling] = [:]
    public let fp8HistoryLength: Int
    /// The weight matrices fp8 casts (every 2-D tensor of the table), in table order.
    private let fp8Matrices: [ParameterEntry]
    /// fp8: who closes the amax histories' steps. `true` (a model used alone): every pass is a
    /// step, closed with its own amaxes when the next pass begins. `false` (a trainer's model):
    /// the trainer closes each optimizer step with `recordFP8Amaxes`, the amaxes reduced over
    /// all micro-batches and ranks.
    public var fp8ClosesStepPerPass = true
    /// fp8: the factor backward's output gradients carry beyond the loss's own (a trainer's
    /// 1 / accumulation). Their casts and amaxes are taken in the loss's units, so that how a
    /// step's batch is split into micro-batches (and ranks) changes neither (exactly, for a
    /// power of two).
    public var fp8GradientUnit: Float = 1 {
        didSet { for s in fp8Scalings.values { s.gradientUnit = fp8GradientUnit } }
    }
    /// int8 inference: the quantized linear weights (`quantize(perChannel:)` or a loaded int8
    /// model) and the scratch inputs are quantized into. Required before a forward in int8.
    public var quantized: QuantizedWeights?
    private let int8Scratch = Int8Scratch()
    /// Mixed precision without a residency: a micro-batch's gradients of the embedding region and
    /// of the region being back-propagated (both live at once with tied embeddings).
    private var embeddingGradientScratch = FloatBuffer(count: 0)
    private var blockGradientScratch = FloatBuffer(count: 0)

    /// Mean cross-entropy and load-balancing loss of the last forward (aux is 0 for dense models).
    public private(set) var lastLoss: Float = 0
    public private(set) var lastAuxLoss: Float = 0
    /// MoE: token slots routed to each expert in the last forward, summed over layers (empty for dense models).
    public private(set) var lastExpertCounts: [Int] = []

    /// - Parameters:
    ///   - ownsParameters, ownsGradients: false leaves `parameters` / `gradients` empty (ZeRO
    ///     stage 3 / stages 2–3, where a `residency` must be set before forward).
    ///   - precision: bf16, fp16 and fp8 run the linear layers' products on copies of the weights
    ///     in that format; int8 (inference only) on `quantized`, the int8 weights.
    ///   - fp8HistoryLength: fp8: the amax history of each tensor's delayed scale.
    public init(config: ModelConfig, pool: ThreadPool, ownsParameters: Bool = true, ownsGradients: Bool = true,
                precision: Precision = .fp32, checkpointing: ActivationCheckpointing = .none, fp8HistoryLength: Int = 16) throws {
        try config.validate()
        precondition(fp8HistoryLength >= 1, "an amax history holds at least one value")
        self.config = config
        self.precision = precision
        self.fp8HistoryLength = fp8HistoryLength
        self.checkpointing = checkpointing
        self.table = ParameterTable(config: config)
        fp8Matrices = precision == .fp8 ? table.entries.filter { $0.shape.count == 2 } : []
        self.parameters = FloatBuffer(count: ownsParameters ? table.count : 0)
        self.gradients = FloatBuffer(count: ownsGradients ? table.count : 0)
        self.pool = pool
        self.mixedScratch = MixedScratch(pool: pool)
        self.rope = RotaryEmbedding(headDim: config.headSize, maxPositions: config.maxSeqLen, theta: config.ropeTheta)
        parameterBase = Array(repeating: nil, count: table.regions.count)
        gradientBase = Array(repeating: nil, count: table.regions.count)
        halfCopies = Array(repeating: nil, count: table.regions.count)
        fp8Copies = Array(repeating: nil, count: table.regions.count)
        copiesFresh = Array(repeating: false, count: table.regions.count)
        if precision == .fp8 {
            for e in fp8Matrices { fp8Scalings[e.offset] = FP8LinearScaling(historyLength: fp8HistoryLength) }
        }
    }

    /// int8 inference: quantizes the fp32 linear weights now in `parameters` (PyTorch's
    /// `quantize_dynamic`: symmetric int8, per tensor or per output channel) into `quantized`.
    public func quantize(perChannel: Bool) {
        precondition(parameters.count == table.count, "quantize needs a model that owns its parameters")
        quantized = QuantizedWeights(config: config, table: table, parameters: parameters.pointer, perChannel: perChannel)
    }

    /// The fp32 parameters changed (an optimizer step, a restore, a load): the weight copies are
    /// made again at their next use. The trainer calls this once per optimizer step.
    public func parametersChanged() {
        for r in copiesFresh.indices { copiesFresh[r] = false }
    }

    // MARK: initialisation

    /// Xavier- or Kaiming-uniform linear weights, normal(0, std) embeddings, norm weights 1,
    /// biases 0. Tensor n draws from Philox(seed) stream n, so the result is independent of threads.
    public func initializeParameters(seed: UInt64) {
        Self.initialize(config: config, table: table, seed: seed, elements: 0..<table.count, into: parameters.pointer)
    }

    /// The initial values of elements `elements` of the flat buffer, written to `out[0…]` (a ZeRO-3
    /// rank initialises just its shard; a tensor that straddles the shard edge is drawn whole in
    /// scratch space and the overlap copied, so every layout gets the same numbers).
    public static func initialize(config: ModelConfig, table: ParameterTable, seed: UInt64, elements: Range<Int>,
                                  into out: UnsafeMutablePointer<Float>) {
        let rng = Philox(seed: seed)
        for (n, e) in table.entries.enumerated() where e.offset < elements.upperBound && e.offset + e.count > elements.lowerBound {
            let whole = e.offset >= elements.lowerBound && e.offset + e.count <= elements.upperBound
            let scratch = whole ? nil : FloatBuffer(count: e.count)
            let dst = scratch?.buffer ?? UnsafeMutableBufferPointer(start: out + (e.offset - elements.lowerBound), count: e.count)
            defer {
                if let scratch {
                    let overlap = (e.offset..<(e.offset + e.count)).clamped(to: elements)
                    (out + (overlap.lowerBound - elements.lowerBound)).update(from: scratch.pointer + (overlap.lowerBound - e.offset),
                                                                              count: overlap.count)
                }
            }
            switch e.kind {
            case .embedding:
                rng.fillNormal(dst, mean: 0, std: Float(config.initialization.embeddingStd), stream: UInt64(n))
            case .inputNormWeight, .postNormWeight, .finalNormWeight:
                dst.update(repeating: 1)
            case .inputNormBias, .postNormBias, .finalNormBias:
                dst.update(repeating: 0)
            default:
                let fanOut = Float(e.shape[0]), fanIn = Float(e.shape[1])
                let bound = config.initialization.method == "kaiming_uniform"
                    ? (6 / fanIn).squareRoot()
                    : (6 / (fanIn + fanOut)).squareRoot()
                rng.fillUniform(dst, low: -bound, high: bound, stream: UInt64(n))
            }
        }
    }

    @inline(__always) func param(_ kind: TensorKind, _ layer: Int = -1, _ expert: Int = -1) -> UnsafeMutablePointer<Float> {
        let r = table.region(kind, layer: layer, layers: config.numLayers)
        return parameterBase[r]! + (table.offset(kind, layer: layer, expert: expert) - table.regions[r].lowerBound)
    }

    @inline(__always) func grad(_ kind: TensorKind, _ layer: Int = -1, _ expert: Int = -1) -> UnsafeMutablePointer<Float> {
        let r = table.region(kind, layer: layer, layers: config.numLayers)
        return gradientBase[r]! + (table.offset(kind, layer: layer, expert: expert) - table.regions[r].lowerBound)
    }

    // MARK: regions

    /// Starts a micro-batch's pass over the regions: forgets what an earlier pass left held and
    /// plans the order of acquisitions — forward 0, 1 … L+1 (and 0 again for a tied LM head), then,
    /// when backward follows, blocks L … 1 again.
    private func beginPass(training: Bool) {
        releaseHeld()
        if precision == .fp8, fp8ClosesStepPerPass { recordFP8Amaxes(fp8StepAmaxes) }
        if residency == nil, precision.isMixed {  // drop scratch a failed backward left live
            for r in gradientBase.indices { gradientBase[r] = nil }
        }
        let last = table.regions.count - 1
        accessOrder = Array(0...last) + (config.tieEmbeddings ? [0] : []) + (training ? backwardRegions() : [])
        accessed = 0
    }

    /// The block regions backward acquires, in order: blocks L … 1; with recomputation, per group
    /// of blocks from the last, the group's blocks in forward order (recomputed first, then held
    /// through the group's backward) — but the last group, whose activations forward left in place.
    private func backwardRegions() -> [Int] {
        checkpointing.groups(layers: config.numLayers).reversed().enumerated().flatMap { index, group in
            index == 0 ? group.reversed().map { $0 + 1 } : group.map { $0 + 1 }
        }
    }

    /// Makes region `r`'s parameters available (from the residency, or the model's own buffer).
    private func acquire(_ r: Int) throws {
        guard let residency else {
            parameterBase[r] = parameters.pointer + table.regions[r].lowerBound
            refreshCopy(r)
            return
        }
        if held.contains(r) { return }
        precondition(accessed < accessOrder.count && accessOrder[accessed] == r, "region \(r) acquired out of the planned order")
        accessed += 1
        parameterBase[r] = try residency.acquire(r, upcoming: accessOrder[accessed...])
        held.insert(r)
        copiesFresh[r] = false
        refreshCopy(r)
    }

    private func release(_ r: Int) {
        guard let residency, held.remove(r) != nil else { return }
        residency.release(r)
        parameterBase[r] = nil
        halfCopies[r] = nil
        fp8Copies[r] = nil
        copiesFresh[r] = false
    }

    /// Rounds region `r`'s parameters to the precision's format unless its copy is current (mixed
    /// precision only). fp8 casts each weight matrix with its own delayed scale.
    private func refreshCopy(_ r: Int) {
        guard precision.isMixed, !copiesFresh[r], let base = parameterBase[r] else { return }
        let region = table.regions[r]
        switch precision {
        case .bf16, .fp16:
            if halfCopies[r]?.count != region.count { halfCopies[r] = BFloat16Buffer(count: region.count) }
            let copy = halfCopies[r]!.pointer
            if precision == .bf16 { mixedScratch.convert(base, to: copy, count: region.count) } else { FP16.convert(base, to: copy, count: region.count) }
        default:
            if fp8Copies[r]?.count != region.count { fp8Copies[r] = FP8Buffer(count: region.count) }
            let copy = fp8Copies[r]!.pointer
            for e in fp8Matrices where region.contains(e.offset) {
                let at = e.offset - region.lowerBound
                fp8Scalings[e.offset]!.weight.cast { FP8.encode(base + at, to: copy + at, count: e.count, scale: $0, format: .e4m3) }
            }
        }
        copiesFresh[r] = true
    }

    // MARK: fp8 amax histories

    /// fp8: this model's amaxes of the step so far — per weight matrix in table order, its
    /// weight's, input's and output gradient's (3 per matrix; empty in other precisions). A job
    /// takes the maximum of every rank's, element by element, and closes the step with it.
    public var fp8StepAmaxes: [Float] {
        fp8Matrices.flatMap { e -> [Float] in
            let s = fp8Scalings[e.offset]!
            return [s.weight.stepAmax, s.input.stepAmax, s.gradient.stepAmax]
        }
    }

    /// fp8: closes the step of every tensor's amax history with `amaxes` (as `fp8StepAmaxes`
    /// orders them); the next casts use the scales they give.
    public func recordFP8Amaxes(_ amaxes: [Float]) {
        precondition(amaxes.count == 3 * fp8Scalings.count, "\(3 * fp8Scalings.count) amaxes expected, got \(amaxes.count)")
        for (i, e) in fp8Matrices.enumerated() {
            let s = fp8Scalings[e.offset]!
            s.weight.record(amaxes[3 * i])
            s.input.record(amaxes[3 * i + 1])
            s.gradient.record(amaxes[3 * i + 2])
        }
    }

    /// fp8: forgets the casts since the last closed step (those of an evaluation between steps).
    public func discardFP8Amaxes() {
        for s in fp8Scalings.values { s.weight.discardStep(); s.input.discardStep(); s.gradient.discardStep() }
    }

    /// fp8: every tensor's amax history, oldest first, by weight matrix name — its weight's, input's
    /// and output gradient's histories back to back (3 · `fp8HistoryLength` values; empty in other precisions).
    public var fp8Histories: [String: [Float]] {
        Dictionary(uniqueKeysWithValues: fp8Matrices.map { e in
            let s = fp8Scalings[e.offset]!
            return (e.name, s.weight.amaxHistory + s.input.amaxHistory + s.gradient.amaxHistory)
        })
    }

    /// fp8: restores the histories `fp8Histories` returned (of a model of the same config and
    /// history length); throws `ModelError` naming what does not fit.
    public func restoreFP8Histories(_ histories: [String: [Float]]) throws {
        let h = fp8HistoryLength, matrices = fp8Matrices
        guard histories.count == matrices.count else {
            throw ModelError(.invalidConfig, "the fp8 amax histories cover \(histories.count) weight matrices; this model has \(matrices.count)")
        }
        for e in matrices {
            guard let values = histories[e.name], values.count == 3 * h else {
                throw ModelError(.invalidConfig, "the fp8 amax histories of \(e.name) are missing or not 3 × \(h) values (training.fp8_amax_history)")
            }
        }
        for e in matrices {
            let s = fp8Scalings[e.offset]!, values = histories[e.name]!
            s.weight.restore(Array(values[0..<h]))
            s.input.restore(Array(values[h..<(2 * h)]))
            s.gradient.restore(Array(values[(2 * h)...]))
        }
    }

    /// The low-precision operands of linear weight `kind` (nil in fp32: the layer multiplies in fp32).
    @inline(__always) func mixed(_ kind: TensorKind, _ layer: Int = -1, _ expert: Int = -1) -> MixedOperands? {
        guard precision.isMixed else { return nil }
        let r = table.region(kind, layer: layer, layers: config.numLayers)
        let offset = table.offset(kind, layer: layer, expert: expert), at = offset - table.regions[r].lowerBound
        switch precision {
        case .bf16: return MixedOperands(weight: .bf16(UnsafePointer(halfCopies[r]!.pointer + at)), scratch: mixedScratch)
        case .fp16: return MixedOperands(weight: .fp16(UnsafePointer(halfCopies[r]!.pointer + at)), scratch: mixedScratch)
        default: return MixedOperands(weight: .fp8(UnsafePointer(fp8Copies[r]!.pointer + at), fp8Scalings[offset]!), scratch: mixedScratch)
        }
    }

    /// The int8 operands of linear weight `kind` (nil unless the model runs in int8 and the weight
    /// is quantized — the MoE router is not).
    @inline(__always) public func int8(_ kind: TensorKind, _ layer: Int = -1, _ expert: Int = -1) -> Int8Operands? {
        guard precision == .int8, let quantized else { return nil }
        return quantized.operands(offset: table.offset(kind, layer: layer, expert: expert), scratch: int8Scratch)
    }

    private func releaseHeld() {
        for r in held.sorted() { release(r) }
    }

    private func gradientRegion(_ r: Int) throws {
        if residency == nil, precision.isMixed {
            // A micro-batch's gradient of the region goes to zeroed scratch and is added to the
            // accumulated one when backward is done with it: ((0 + g₀) + g₁) + …, the sum the
            // ranks' reduction forms, so bf16 — which magnifies last-bit differences of the
            // weights — gives one worker the same numbers as two.
            if gradientBase[r] != nil { return }
            let count = table.regions[r].count
            if r == 0, embeddingGradientScratch.count < count { embeddingGradientScratch = FloatBuffer(count: count) }
            if r != 0, blockGradientScratch.count < count { blockGradientScratch = FloatBuffer(count: count) }
            let scratch = r == 0 ? embeddingGradientScratch : blockGradientScratch
            let base = scratch.pointer
            Elementwise.split(count, pool, minChunk: 1 << 16) { (base + $0.lowerBound).update(repeating: 0, count: $0.count) }
            gradientBase[r] = scratch.pointer
            return
        }
        gradientBase[r] = try residency?.gradients(r) ?? gradients.pointer + table.regions[r].lowerBound
    }

    private func gradientsDone(_ r: Int, _ gradientsReady: ((Range<Int>) -> Void)?) throws {
        if residency == nil, precision.isMixed, let scratch = gradientBase[r] {
            let region = table.regions[r]
            let into = gradients.pointer + region.lowerBound
            Elementwise.split(region.count, pool, minChunk: 1 << 16) { Kernels.add(scratch + $0.lowerBound, into: into + $0.lowerBound, count: $0.count) }
            gradientBase[r] = nil
        }
        try residency?.gradientsDone(r)
        if residency != nil { gradientBase[r] = nil }
        gradientsReady?(table.regions[r])
    }

    private func moePointers(layer l: Int, gradients: Bool) -> MoEPointers {
        let experts = config.moeConfig?.numExperts ?? 0
        let hasShared = (config.moeConfig?.numSharedExperts ?? 0) > 0
        func p(_ k: TensorKind, _ e: Int = -1) -> UnsafeMutablePointer<Float> { gradients ? grad(k, l, e) : param(k, l, e) }
        return MoEPointers(router: p(.router),
                           gate: (0..<experts).map { p(.expertGate, $0) },
                           up: (0..<experts).map { p(.expertUp, $0) },
                           down: (0..<experts).map { p(.expertDown, $0) },
                           sharedGate: hasShared ? p(.sharedGate) : nil,
                           sharedUp: hasShared ? p(.sharedUp) : nil,
                           sharedDown: hasShared ? p(.sharedDown) : nil)
    }

    private func moeMixed(layer l: Int) -> MoEMixed? {
        guard precision.isMixed, let moe = config.moeConfig else { return nil }
        let hasShared = moe.numSharedExperts > 0
        func p(_ k: TensorKind, _ e: Int = -1) -> MixedOperands { mixed(k, l, e)! }
        return MoEMixed(gate: (0..<moe.numExperts).map { p(.expertGate, $0) }, up: (0..<moe.numExperts).map { p(.expertUp, $0) },
                        down: (0..<moe.numExperts).map { p(.expertDown, $0) },
                        sharedGate: hasShared ? p(.sharedGate) : nil, sharedUp: hasShared ? p(.sharedUp) : nil,
                        sharedDown: hasShared ? p(.sharedDown) : nil)
    }

    /// The int8 operands of MoE layer `l`'s experts (nil unless the model runs in int8).
    public func moeInt8(layer l: Int) -> MoEInt8? {
        guard precision == .int8, quantized != nil, let moe = config.moeConfig else { return nil }
        let hasShared = moe.numSharedExperts > 0
        return MoEInt8(gate: (0..<moe.numExperts).map { int8(.expertGate, l, $0)! }, up: (0..<moe.numExperts).map { int8(.expertUp, l, $0)! },
                       down: (0..<moe.numExperts).map { int8(.expertDown, l, $0)! },
                       sharedGate: hasShared ? int8(.sharedGate, l) : nil, sharedUp: hasShared ? int8(.sharedUp, l) : nil,
                       sharedDown: hasShared ? int8(.sharedDown, l) : nil)
    }

    // MARK: normalisation

    /// The three normalisations: before attention and before the MLP in each block, and before the LM head.
    private enum NormSite {
        case input, post, final

        var weight: TensorKind {
            switch self {
            case .input: .inputNormWeight
            case .post: .postNormWeight
            case .final: .finalNormWeight
            }
        }

        /// LayerNorm only.
        var bias: TensorKind {
            switch self {
            case .input: .inputNormBias
            case .post: .postNormBias
            case .final: .finalNormBias
            }
        }
    }

    /// x (B·T, C) → y (B·T, C) through LayerNorm or RMSNorm (`config.norm`) with the tensors of
    /// `site` in `layer` (−1 for the final norm); saves rstd (B·T) and, for LayerNorm, mean (B·T).
    private func normForward(_ site: NormSite, layer l: Int = -1, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                             mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>, rows n: Int) {
        let c = config.hiddenSize, eps = Float(config.normEps)
        if config.norm == "layernorm" {
            LayerNorm.forward(x: x, weight: param(site.weight, l), bias: param(site.bias, l), y: y,
                              mean: mean, rstd: rstd, rows: n, channels: c, eps: eps, pool: pool)
        } else {
            RMSNorm.forward(x: x, weight: param(site.weight, l), y: y, rstd: rstd, rows: n, channels: c, eps: eps, pool: pool)
        }
    }

    /// dy (B·T, C) → dx (B·T, C) (+= with `accumulate`) through the norm `normForward` ran at
    /// `site` in `layer`; the gradients of its weight (and LayerNorm bias) accumulate.
    private func normBackward(_ site: NormSite, layer l: Int = -1, dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
                              mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>,
                              rows n: Int, accumulate: Bool) {
        let c = config.hiddenSize
        if config.norm == "layernorm" {
            LayerNorm.backward(dy: dy, x: x, weight: param(site.weight, l), mean: mean, rstd: rstd, dx: dx,
                               dWeight: grad(site.weight, l), dBias: grad(site.bias, l),
                               rows: n, channels: c, accumulate: accumulate, pool: pool)
        } else {
            RMSNorm.backward(dy: dy, x: x, weight: param(site.weight, l), rstd: rstd, dx: dx, dWeight: grad(site.weight, l),
                             rows: n, channels: c, accumulate: accumulate, pool: pool)
        }
    }

    // MARK: forward

    /// Dropout randomness for one micro-batch: masks derive from (seed, stream, layer, site).
    public struct DropoutContext: Sendable {
        public let rng: Philox
        public let stream: UInt64
        public init(seed: UInt64, stream: UInt64) { self.rng = Philox(seed: seed); self.stream = stream }
    }

    /// inputs, targets (batch·seqLen, row-major (B, T)) → mean cross-entropy.
    /// Without targets only the logits are computed (inference). `dropout` nil = no dropout.
    @discardableResult
    public func forward(inputs: [Int32], targets: [Int32]?, batch: Int, seqLen: Int,
                        dropout: DropoutContext? = nil) throws -> Float {
        let a = try trunk(inputs: inputs, targets: targets, batch: batch, seqLen: seqLen, dropout: dropout, logits: true)
        let n = batch * seqLen, c = config.hiddenSize, v = config.vocabSize
        let head = config.tieEmbeddings ? param(.embedding) : param(.lmHead)
        let headMixed = config.tieEmbeddings ? mixed(.embedding) : mixed(.lmHead)
        Linear.forward(x: a.lnf.pointer, weight: head, y: a.logits.pointer, rows: n, inFeatures: c, outFeatures: v, mixed: headMixed,
                       int8: config.tieEmbeddings ? int8(.embedding) : int8(.lmHead))

        lastAuxLoss = auxLoss(a)
        if config.moeConfig != nil { lastExpertCounts = routingTotals(a).counts }
        guard let targets else { releaseHeld(); lastLoss = 0; return 0 }
        lastLoss = targets.withUnsafeBufferPointer { t in
            CrossEntropy.forward(logits: a.logits.pointer, targets: t, logSumExp: a.lse.pointer, rows: n, vocab: v, pool: pool)
        }
        return lastLoss
    }

    /// Forward up to the final norm only (no LM head, no loss): a distillation teacher's pass,
    /// whose logits `headLogits(rows:into:)` then makes a block of rows at a time. Inference only;
    /// the activations of such a pass have no (batch·seqLen, vocab) logits buffers at all.
    public func forwardHidden(inputs: [Int32], batch: Int, seqLen: Int) throws {
        _ = try trunk(inputs: inputs, targets: nil, batch: batch, seqLen: seqLen, dropout: nil, logits: false)
    }

    /// The logits of rows `rows` of the last `forwardHidden` into `out` (rows.count, vocab).
    public func headLogits(rows: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        guard let a = acts, rows.upperBound <= a.batch * a.seqLen else { preconditionFailure("headLogits needs a forwardHidden covering the rows") }
        let c = config.hiddenSize
        let head = config.tieEmbeddings ? param(.embedding) : param(.lmHead)
        let headMixed = config.tieEmbeddings ? mixed(.embedding) : mixed(.lmHead)
        Linear.forward(x: a.lnf.pointer + rows.lowerBound * c, weight: head, y: out, rows: rows.count, inFeatures: c,
                       outFeatures: config.vocabSize, mixed: headMixed, int8: config.tieEmbeddings ? int8(.embedding) : int8(.lmHead))
    }

    /// Embedding, blocks and final norm (into `lnf`), with the LM head's region acquired.
    /// `logits`: the activations need the (rows, vocab) logits buffers.
    private func trunk(inputs: [Int32], targets: [Int32]?, batch: Int, seqLen: Int, dropout: DropoutContext?, logits: Bool) throws -> Activations {
        try checkInputs(inputs, targets, batch: batch, seqLen: seqLen)
        if precision == .int8, quantized == nil || residency != nil {
            throw ModelError(.invalidInput, "an int8 model needs its quantized weights (quantize(perChannel:) or a quantized folder) and its own parameters")
        }
        if acts?.batch != batch || acts?.seqLen != seqLen || (logits && acts?.hasLogits == false) {
            acts = Activations(config: config, batch: batch, seqLen: seqLen, slots: checkpointing.slots(layers: config.numLayers), logits: logits)
        }
        let a = acts!
        a.inputs = inputs
        a.targets = targets
        a.dropout = dropout
        let n = batch * seqLen, c = config.hiddenSize

        beginPass(training: targets != nil)
        try acquire(0)
        inputs.withUnsafeBufferPointer { tok in
            Embedding.forward(tokens: tok, table: param(.embedding), x: a.layerIn[0].pointer, channels: c)
        }
        release(0)
        for l in 0..<config.numLayers {
            try acquire(l + 1)
            blockForward(layer: l, a)
            release(l + 1)
        }
        let headRegion = config.numLayers + 1
        try acquire(headRegion)
        if config.tieEmbeddings { try acquire(0) }
        normForward(.final, x: a.layerIn[config.numLayers].pointer, y: a.lnf.pointer, mean: a.meanf.pointer,
                    rstd: a.rstdf.pointer, rows: n)
        return a
    }

    /// Throws `invalidInput` unless there are batch × seqLen input tokens (and as many targets),
    /// all in the vocabulary, and seqLen fits `max_seq_len`.
    private func checkInputs(_ inputs: [Int32], _ targets: [Int32]?, batch: Int, seqLen: Int) throws {
        let n = batch * seqLen
        guard batch >= 1, seqLen >= 1, inputs.count == n else {
            throw ModelError(.invalidInput, "expected \(batch)×\(seqLen) input tokens, got \(inputs.count)")
        }
        guard seqLen <= config.maxSeqLen else {
            throw ModelError(.invalidInput, "sequence length \(seqLen) exceeds model.max_seq_len (\(config.maxSeqLen))")
        }
        let v = config.vocabSize
        for (label, tokens) in [("input", inputs), ("target", targets ?? [])] {
            if let bad = tokens.first(where: { $0 < 0 || Int($0) >= v }) {
                throw ModelError(.invalidInput, "\(label) token \(bad) is outside the vocabulary 0..<\(v)")
            }
        }
        if let targets, targets.count != n {
            throw ModelError(.invalidInput, "expected \(n) targets, got \(targets.count)")
        }
    }

    /// Block `l` (region l + 1 held): x = layerIn[l] (B,T,C) → layerIn[l + 1] (B,T,C) =
    /// mid + MLP(norm(mid)), mid = x + attention(norm(x)), dropout on both branches.
    /// Saves ln1, q and k (rotated), v, probs, attOut, mid, ln2, both norms' statistics and what
    /// `mlpForward` saves.
    private func blockForward(layer l: Int, _ a: Activations) {
        let batch = a.batch, seqLen = a.seqLen, n = batch * seqLen
        let c = config.hiddenSize, d = config.headSize, h = config.numAttentionHeads, hkv = config.kvHeads
        let qDim = h * d, kvDim = hkv * d, pDrop = Float(config.dropout)
        let x = a.layerIn[l].pointer, ln1 = a.ln1[a.slot(l)].pointer, mid = a.mid[a.slot(l)].pointer, ln2 = a.ln2[a.slot(l)].pointer
        let branch = a.branch.pointer
        normForward(.input, layer: l, x: x, y: ln1, mean: a.mean1[a.slot(l)].pointer, rstd: a.rstd1[a.slot(l)].pointer, rows: n)
        Linear.forward(x: ln1, weight: param(.qProj, l), y: a.q[a.slot(l)].pointer, rows: n, inFeatures: c, outFeatures: qDim, mixed: mixed(.qProj, l), int8: int8(.qProj, l))
        Linear.forward(x: ln1, weight: param(.kProj, l), y: a.k[a.slot(l)].pointer, rows: n, inFeatures: c, outFeatures: kvDim, mixed: mixed(.kProj, l), int8: int8(.kProj, l), inputConverted: true)
        Linear.forward(x: ln1, weight: param(.vProj, l), y: a.v[a.slot(l)].pointer, rows: n, inFeatures: c, outFeatures: kvDim, mixed: mixed(.vProj, l), int8: int8(.vProj, l), inputConverted: true)
        rope.apply(a.q[a.slot(l)].pointer, batch: batch, seqLen: seqLen, heads: h, pool: pool)
        rope.apply(a.k[a.slot(l)].pointer, batch: batch, seqLen: seqLen, heads: hkv, pool: pool)
        Attention.forward(q: a.q[a.slot(l)].pointer, k: a.k[a.slot(l)].pointer, v: a.v[a.slot(l)].pointer, out: a.attOut[a.slot(l)].pointer,
                          probs: a.probs[a.slot(l)].pointer, batch: batch, seqLen: seqLen, heads: h, kvHeads: hkv,
                          headDim: d, window: config.window, pool: pool)
        Linear.forward(x: a.attOut[a.slot(l)].pointer, weight: param(.oProj, l), y: branch, rows: n, inFeatures: qDim, outFeatures: c,
                       mixed: mixed(.oProj, l), int8: int8(.oProj, l))
        if let dropout = a.dropout, pDrop > 0 {
            Dropout.apply(branch, count: n * c, p: pDrop, rng: dropout.rng, stream: Philox.stream(dropout.stream, UInt64(l), 0))
        }
        Elementwise.add(x, branch, out: mid, count: n * c, pool: pool)
        normForward(.post, layer: l, x: mid, y: ln2, mean: a.mean2[a.slot(l)].pointer, rstd: a.rstd2[a.slot(l)].pointer, rows: n)
        mlpForward(layer: l, a, x: ln2, y: branch)
        if let dropout = a.dropout, pDrop > 0 {
            Dropout.apply(branch, count: n * c, p: pDrop, rng: dropout.rng, stream: Philox.stream(dropout.stream, UInt64(l), 1))
        }
        Elementwise.add(mid, branch, out: a.layerIn[l + 1].pointer, count: n * c, pool: pool)
    }

    /// Block `l`'s feed-forward: x (B,T,C) → y (B,T,C) through its MoE layer (which saves the routing
    /// and the experts' activations) or its dense SwiGLU or GELU MLP; saves gate (SwiGLU), up and h.
    private func mlpForward(layer l: Int, _ a: Activations, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        let n = a.batch * a.seqLen, c = config.hiddenSize, ffn = config.ffnSize
        if let moe = a.moe[a.slot(l)] {
            moe.forward(x: x, y: y, w: moePointers(layer: l, gradients: false), mixed: moeMixed(layer: l), int8: moeInt8(layer: l),
                        pool: pool)
            a.expertCounts[l] = moe.expertCounts
            a.probSums[l] = moe.probSums
        } else if config.activation == "swiglu" {
            Linear.forward(x: x, weight: param(.mlpGate, l), y: a.gate[a.slot(l)].pointer, rows: n, inFeatures: c, outFeatures: ffn,
                           mixed: mixed(.mlpGate, l), int8: int8(.mlpGate, l))
            Linear.forward(x: x, weight: param(.mlpUp, l), y: a.up[a.slot(l)].pointer, rows: n, inFeatures: c, outFeatures: ffn,
                           mixed: mixed(.mlpUp, l), int8: int8(.mlpUp, l), inputConverted: true)
            SwiGLU.forward(gate: a.gate[a.slot(l)].pointer, up: a.up[a.slot(l)].pointer, h: a.h[a.slot(l)].pointer, count: n * ffn,
                           pool: pool)
            Linear.forward(x: a.h[a.slot(l)].pointer, weight: param(.mlpDown, l), y: y, rows: n, inFeatures: ffn, outFeatures: c,
                           mixed: mixed(.mlpDown, l), int8: int8(.mlpDown, l))
        } else {
            Linear.forward(x: x, weight: param(.mlpUp, l), y: a.up[a.slot(l)].pointer, rows: n, inFeatures: c, outFeatures: ffn,
                           mixed: mixed(.mlpUp, l), int8: int8(.mlpUp, l))
            GELU.forward(x: a.up[a.slot(l)].pointer, y: a.h[a.slot(l)].pointer, count: n * ffn, pool: pool)
            Linear.forward(x: a.h[a.slot(l)].pointer, weight: param(.mlpDown, l), y: y, rows: n, inFeatures: ffn, outFeatures: c,
                           mixed: mixed(.mlpDown, l), int8: int8(.mlpDown, l))
        }
    }

    /// Switch load-balancing loss over all layers' routers: E · Σ_e F[e] · P[e], where F[e] is the
    /// fraction of (token, slot) assignments to e and P[e] the mean router probability of e.
    private func auxLoss(_ a: Activations) -> Float {
        guard let moe = config.moeConfig else { return 0 }
        let (counts, probs, total) = routingTotals(a)
        var s = 0.0
        for e in 0..<moe.numExperts { s += Double(counts[e]) / total * probs[e] / total }
        return Float(Double(moe.numExperts) * s)
    }

    /// d(scale · aux_loss_coef · aux_loss)/d(p[row, e]) (E), the same for every row of every layer
    /// (F[e] counts as a constant); empty for dense models.
    private func auxLossGradient(_ a: Activations, scale: Float) -> [Float] {
        guard let moe = config.moeConfig else { return [] }
        let (counts, _, total) = routingTotals(a)
        let k = Double(scale) * moe.auxLossCoef * Double(moe.numExperts) / total
        return counts.map { Float(k * Double($0) / total) }
    }

    private func routingTotals(_ a: Activations) -> (counts: [Int], probs: [Double], tokens: Double) {
        let e = config.moeConfig?.numExperts ?? 0
        var counts = [Int](repeating: 0, count: e), probs = [Double](repeating: 0, count: e)
        for l in 0..<config.numLayers where !a.expertCounts[l].isEmpty {
            for j in 0..<e { counts[j] += a.expertCounts[l][j]; probs[j] += a.probSums[l][j] }
        }
        return (counts, probs, Double(a.batch * a.seqLen * config.numLayers))
    }

    /// The logits (batch·seqLen, vocab) of the last forward.
    /// The last forward's final hidden states, after the final norm (B·T, C): what the LM head reads.
    public var finalHidden: UnsafeBufferPointer<Float> {
        guard let a = acts else { return UnsafeBufferPointer(start: nil, count: 0) }
        return UnsafeBufferPointer(a.lnf.buffer)
    }

    public var logits: UnsafeBufferPointer<Float> {
        guard let a = acts else { return UnsafeBufferPointer(start: nil, count: 0) }
        return UnsafeBufferPointer(a.logits.buffer)
    }

    // MARK: backward

    /// Accumulates d(scale · (loss + aux_loss_coef · aux_loss))/dθ of the last forward into `gradients`.
    /// `gradientsReady`, when given, is told each contiguous range of `gradients` as soon as
    /// backward is done with it: the final norm and LM head, then block L−1 … block 0, then the
    /// embedding (which, with tied embeddings, also holds the LM head's gradient).
    ///
    /// `logitGradient`, when given, is called once the cross-entropy's gradient (times `scale`)
    /// is in dLogits (rows, V), with (dLogits, logits, rows), to add the gradient of another term
    /// of the loss on the logits (distillation) before it flows back.
    public func backward(scale: Float = 1, gradientsReady: ((Range<Int>) -> Void)? = nil,
                         logitGradient: ((UnsafeMutablePointer<Float>, UnsafePointer<Float>, Int) throws -> Void)? = nil) throws {
        guard precision.trains else { throw ModelError(.invalidInput, "int8 models run inference only; train in \(Precision.trainingNames)") }
        guard let a = acts, let targets = a.targets else {
            throw ModelError(.invalidInput, "backward needs a forward with targets first")
        }
        let n = a.batch * a.seqLen, c = config.hiddenSize, v = config.vocabSize
        let dRes = a.dRes.pointer

        let headRegion = config.numLayers + 1
        try acquire(headRegion)
        if config.tieEmbeddings { try acquire(0) }
        try gradientRegion(headRegion)
        if config.tieEmbeddings { try gradientRegion(0) }
        targets.withUnsafeBufferPointer { t in
            CrossEntropy.backward(logits: a.logits.pointer, targets: t, logSumExp: a.lse.pointer, dLogits: a.dLogits.pointer,
                                  rows: n, vocab: v, scale: scale, pool: pool)
        }
        try logitGradient?(a.dLogits.pointer, a.logits.pointer, n)
        let head = config.tieEmbeddings ? param(.embedding) : param(.lmHead)
        let dHead = config.tieEmbeddings ? grad(.embedding) : grad(.lmHead)
        Linear.backward(dy: a.dLogits.pointer, x: a.lnf.pointer, weight: head, dx: a.dLn.pointer, dWeight: dHead,
                        rows: n, inFeatures: c, outFeatures: v, mixed: config.tieEmbeddings ? mixed(.embedding) : mixed(.lmHead))
        normBackward(.final, dy: a.dLn.pointer, x: a.layerIn[config.numLayers].pointer, mean: a.meanf.pointer,
                     rstd: a.rstdf.pointer, dx: dRes, rows: n, accumulate: false)
        try gradientsDone(headRegion, gradientsReady)
        release(headRegion)
        if config.tieEmbeddings { release(0) }
        let auxGradient = auxLossGradient(a, scale: scale)
        let groups = checkpointing.groups(layers: config.numLayers)
        for (index, group) in groups.enumerated().reversed() {
            if index < groups.count - 1 {
                // Recompute the group's activations from its saved input (the same bits: every
                // kernel is deterministic and dropout masks derive from (step, micro-batch, layer)).
                for l in group {
                    try acquire(l + 1)
                    blockForward(layer: l, a)
                }
            }
            for l in group.reversed() {
                try acquire(l + 1)
                try gradientRegion(l + 1)
                blockBackward(layer: l, a, auxGradient: auxGradient)
                try gradientsDone(l + 1, gradientsReady)
                release(l + 1)
            }
        }
        if !config.tieEmbeddings || residency == nil { try gradientRegion(0) }
        a.inputs.withUnsafeBufferPointer { tok in
            Embedding.backward(tokens: tok, dx: dRes, dTable: grad(.embedding), channels: c)
        }
        try gradientsDone(0, gradientsReady)
    }

    /// Block `l` backward (region l + 1's parameters and gradients held): dRes = d(layerIn[l + 1])
    /// (B,T,C) → d(layerIn[l]) (B,T,C), in place; the block's gradients accumulate. `auxGradient`
    /// is the load-balancing loss's gradient for an MoE layer's router probabilities.
    private func blockBackward(layer l: Int, _ a: Activations, auxGradient: [Float]) {
        let batch = a.batch, seqLen = a.seqLen, n = batch * seqLen
        let c = config.hiddenSize, d = config.headSize, h = config.numAttentionHeads, hkv = config.kvHeads
        let qDim = h * d, kvDim = hkv * d, pDrop = Float(config.dropout)
        let x = a.layerIn[l].pointer, ln1 = a.ln1[a.slot(l)].pointer, mid = a.mid[a.slot(l)].pointer, ln2 = a.ln2[a.slot(l)].pointer
        let dRes = a.dRes.pointer, dBranch = a.dBranch.pointer, dLn = a.dLn.pointer
        // MLP branch: dRes is d(layer output); the residual passes it straight to `mid`.
        dBranch.update(from: dRes, count: n * c)
        if let dropout = a.dropout, pDrop > 0 {
            Dropout.apply(dBranch, count: n * c, p: pDrop, rng: dropout.rng, stream: Philox.stream(dropout.stream, UInt64(l), 1))
        }
        mlpBackward(layer: l, a, dy: dBranch, x: ln2, dx: dLn, auxGradient: auxGradient)
        normBackward(.post, layer: l, dy: dLn, x: mid, mean: a.mean2[a.slot(l)].pointer, rstd: a.rstd2[a.slot(l)].pointer, dx: dRes,
                     rows: n, accumulate: true)
        // Attention branch: dRes is now d(mid).
        dBranch.update(from: dRes, count: n * c)
        if let dropout = a.dropout, pDrop > 0 {
            Dropout.apply(dBranch, count: n * c, p: pDrop, rng: dropout.rng, stream: Philox.stream(dropout.stream, UInt64(l), 0))
        }
        Linear.backward(dy: dBranch, x: a.attOut[a.slot(l)].pointer, weight: param(.oProj, l), dx: a.dAtt.pointer,
                        dWeight: grad(.oProj, l), rows: n, inFeatures: qDim, outFeatures: c, mixed: mixed(.oProj, l))
        Attention.backward(dOut: a.dAtt.pointer, q: a.q[a.slot(l)].pointer, k: a.k[a.slot(l)].pointer, v: a.v[a.slot(l)].pointer,
                           probs: a.probs[a.slot(l)].pointer, dq: a.dQ.pointer, dk: a.dK.pointer, dv: a.dV.pointer,
                           batch: batch, seqLen: seqLen, heads: h, kvHeads: hkv, headDim: d, window: config.window, pool: pool)
        rope.apply(a.dQ.pointer, batch: batch, seqLen: seqLen, heads: h, inverse: true, pool: pool)
        rope.apply(a.dK.pointer, batch: batch, seqLen: seqLen, heads: hkv, inverse: true, pool: pool)
        Linear.backward(dy: a.dQ.pointer, x: ln1, weight: param(.qProj, l), dx: dLn,
                        dWeight: grad(.qProj, l), rows: n, inFeatures: c, outFeatures: qDim, mixed: mixed(.qProj, l))
        Linear.backward(dy: a.dK.pointer, x: ln1, weight: param(.kProj, l), dx: dLn,
                        dWeight: grad(.kProj, l), rows: n, inFeatures: c, outFeatures: kvDim, accumulateInput: true, mixed: mixed(.kProj, l),
                        inputConverted: true)
        Linear.backward(dy: a.dV.pointer, x: ln1, weight: param(.vProj, l), dx: dLn,
                        dWeight: grad(.vProj, l), rows: n, inFeatures: c, outFeatures: kvDim, accumulateInput: true, mixed: mixed(.vProj, l),
                        inputConverted: true)
        normBackward(.input, layer: l, dy: dLn, x: x, mean: a.mean1[a.slot(l)].pointer, rstd: a.rstd1[a.slot(l)].pointer, dx: dRes,
                     rows: n, accumulate: true)
    }

    /// Block `l`'s feed-forward backward: dy (B,T,C) → dx (B,T,C) (overwritten) through what
    /// `mlpForward` ran on x (B,T,C); its gradients accumulate.
    private func mlpBackward(layer l: Int, _ a: Activations, dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
                             dx: UnsafeMutablePointer<Float>, auxGradient: [Float]) {
        let n = a.batch * a.seqLen, c = config.hiddenSize, ffn = config.ffnSize
        if let moe = a.moe[a.slot(l)] {
            moe.backward(dy: dy, x: x, dx: dx, w: moePointers(layer: l, gradients: false),
                         grads: moePointers(layer: l, gradients: true), mixed: moeMixed(layer: l), auxGradient: auxGradient, pool: pool)
        } else if config.activation == "swiglu" {
            Linear.backward(dy: dy, x: a.h[a.slot(l)].pointer, weight: param(.mlpDown, l), dx: a.dH.pointer,
                            dWeight: grad(.mlpDown, l), rows: n, inFeatures: ffn, outFeatures: c, mixed: mixed(.mlpDown, l))
            SwiGLU.backward(dh: a.dH.pointer, gate: a.gate[a.slot(l)].pointer, up: a.up[a.slot(l)].pointer,
                            dGate: a.dGate.pointer, dUp: a.dUp.pointer, count: n * ffn, pool: pool)
            Linear.backward(dy: a.dGate.pointer, x: x, weight: param(.mlpGate, l), dx: dx,
                            dWeight: grad(.mlpGate, l), rows: n, inFeatures: c, outFeatures: ffn, mixed: mixed(.mlpGate, l))
            Linear.backward(dy: a.dUp.pointer, x: x, weight: param(.mlpUp, l), dx: dx,
                            dWeight: grad(.mlpUp, l), rows: n, inFeatures: c, outFeatures: ffn, accumulateInput: true, mixed: mixed(.mlpUp, l),
                            inputConverted: true)
        } else {
            Linear.backward(dy: dy, x: a.h[a.slot(l)].pointer, weight: param(.mlpDown, l), dx: a.dH.pointer,
                            dWeight: grad(.mlpDown, l), rows: n, inFeatures: ffn, outFeatures: c, mixed: mixed(.mlpDown, l))
            GELU.backward(dy: a.dH.pointer, x: a.up[a.slot(l)].pointer, dx: a.dUp.pointer, count: n * ffn, pool: pool)
            Linear.backward(dy: a.dUp.pointer, x: x, weight: param(.mlpUp, l), dx: dx,
                            dWeight: grad(.mlpUp, l), rows: n, inFeatures: c, outFeatures: ffn, mixed: mixed(.mlpUp, l))
        }
    }

    /// Bytes of activations held for one micro-batch of `batch` × `seqLen` (for memory planning).
    public func activationBytes(batch: Int, seqLen: Int) -> Int {
        Self.activationBytes(config: config, batch: batch, seqLen: seqLen, precision: precision, checkpointing: checkpointing)
    }

    /// Bytes of activations one micro-batch of `batch` × `seqLen` needs, without building a model
    /// (the memory planner sizes models far larger than the machine it runs on).
    /// In mixed precision add the conversion scratch: the widest layer input and output gradient
    /// in bf16 (fp16 and fp8: in fp32, with the largest weight widened to fp32), and (without a
    /// residency) a micro-batch's gradients of the embedding and of the largest block.
    public static func activationBytes(config: ModelConfig, batch: Int, seqLen: Int, precision: Precision = .fp32,
                                       checkpointing: ActivationCheckpointing = .none) -> Int {
        let fp32 = Activations.elementCount(config: config, batch: batch, seqLen: seqLen,
                                            slots: checkpointing.slots(layers: config.numLayers)) * MemoryLayout<Float>.stride
        guard precision.isMixed else { return fp32 }
        let n = batch * seqLen, c = config.hiddenSize
        let widest = max(c, config.numAttentionHeads * config.headSize, config.ffnSize * max(1, config.moeConfig?.numSharedExperts ?? 1))
        let table = ParameterTable(config: config)
        let regions = table.regions.dropFirst().map(\.count).max() ?? 0
        let gradients = 4 * (table.regions[0].count + regions)
        guard precision == .bf16 else {
            let largestWeight = table.entries.filter { $0.shape.count == 2 }.map(\.count).max() ?? 0
            return fp32 + 4 * n * widest + 4 * n * max(widest, config.vocabSize) + 4 * largestWeight + gradients
        }
        return fp32 + 2 * n * widest + 2 * n * max(widest, config.vocabSize) + gradients
    }
}

/// Everything a forward saves for backward, plus backward scratch, for one (batch, seqLen).
final class Activations {
    let batch: Int, seqLen: Int
    var inputs: [Int32] = []
    var targets: [Int32]?
    var dropout: Transformer.DropoutContext?
    let layerIn: [FloatBuffer]
    let ln1: [FloatBuffer], rstd1: [FloatBuffer], mean1: [FloatBuffer]
    let q: [FloatBuffer], k: [FloatBuffer], v: [FloatBuffer], probs: [FloatBuffer], attOut: [FloatBuffer]
    let mid: [FloatBuffer], ln2: [FloatBuffer], rstd2: [FloatBuffer], mean2: [FloatBuffer]
    let gate: [FloatBuffer], up: [FloatBuffer], h: [FloatBuffer]
    let moe: [MixtureOfExperts?]
    /// Per layer (all L, whatever the slots): the routing statistics of its last forward (MoE).
    var expertCounts: [[Int]], probSums: [[Double]]
    /// Sets of per-block buffers: L, or the group size with recomputation (block l uses l % slots).
    let slots: Int
    let lnf: FloatBuffer, rstdf: FloatBuffer, meanf: FloatBuffer, logits: FloatBuffer, lse: FloatBuffer
    let branch: FloatBuffer
    let dLogits: FloatBuffer, dLn: FloatBuffer, dRes: FloatBuffer, dBranch: FloatBuffer, dAtt: FloatBuffer
    let dQ: FloatBuffer, dK: FloatBuffer, dV: FloatBuffer, dH: FloatBuffer, dGate: FloatBuffer, dUp: FloatBuffer

    @inline(__always) func slot(_ layer: Int) -> Int { layer % slots }

    /// The (rows, vocab) logits and their gradient are allocated (not for a teacher's `forwardHidden`).
    let hasLogits: Bool

    init(config: ModelConfig, batch: Int, seqLen: Int, slots: Int, logits withLogits: Bool = true) {
        hasLogits = withLogits
        self.batch = batch
        self.seqLen = seqLen
        self.slots = slots
        let n = batch * seqLen, c = config.hiddenSize, L = slots
        expertCounts = Array(repeating: [], count: config.numLayers)
        probSums = Array(repeating: [], count: config.numLayers)
        let qDim = config.numAttentionHeads * config.headSize, kvDim = config.kvHeads * config.headSize
        let attentionProbs = AttentionBlocks(seqLen: seqLen, window: config.window).probsPerHead
        let dense = config.moeConfig == nil
        let ffn = dense ? config.ffnSize : 0
        let layerNorm = config.norm == "layernorm"
        func bufs(_ count: Int, _ layers: Int = L) -> [FloatBuffer] { (0..<layers).map { _ in FloatBuffer(count: count) } }
        layerIn = bufs(n * c, config.numLayers + 1)
        ln1 = bufs(n * c); rstd1 = bufs(n); mean1 = bufs(layerNorm ? n : 0)
        q = bufs(n * qDim); k = bufs(n * kvDim); v = bufs(n * kvDim)
        probs = bufs(batch * config.numAttentionHeads * attentionProbs)
        attOut = bufs(n * qDim)
        mid = bufs(n * c); ln2 = bufs(n * c); rstd2 = bufs(n); mean2 = bufs(layerNorm ? n : 0)
        gate = bufs(config.activation == "swiglu" ? n * ffn : 0); up = bufs(n * ffn); h = bufs(n * ffn)
        moe = (0..<L).map { _ in
            config.moeConfig.map {
                MixtureOfExperts(rows: n, channels: c, intermediate: config.ffnSize, experts: $0.numExperts,
                                 topK: $0.topK, sharedExperts: $0.numSharedExperts)
            }
        }
        lnf = FloatBuffer(count: n * c); rstdf = FloatBuffer(count: n); meanf = FloatBuffer(count: layerNorm ? n : 0)
        logits = FloatBuffer(count: withLogits ? n * config.vocabSize : 0); lse = FloatBuffer(count: n)
        branch = FloatBuffer(count: n * c)
        dLogits = FloatBuffer(count: withLogits ? n * config.vocabSize : 0)
        dLn = FloatBuffer(count: n * c); dRes = FloatBuffer(count: n * c); dBranch = FloatBuffer(count: n * c)
        dAtt = FloatBuffer(count: n * qDim); dQ = FloatBuffer(count: n * qDim)
        dK = FloatBuffer(count: n * kvDim); dV = FloatBuffer(count: n * kvDim)
        dH = FloatBuffer(count: n * ffn); dGate = FloatBuffer(count: n * ffn); dUp = FloatBuffer(count: n * ffn)
    }

    /// Elements the buffers above hold (MoE layers counted with their packed buffers).
    static func elementCount(config: ModelConfig, batch: Int, seqLen: Int, slots: Int) -> Int {
        let n = batch * seqLen, c = config.hiddenSize, L = slots
        let qDim = config.numAttentionHeads * config.headSize, kvDim = config.kvHeads * config.headSize
        let attentionProbs = AttentionBlocks(seqLen: seqLen, window: config.window).probsPerHead
        let ln = config.norm == "layernorm" ? 2 * n : 0
        var perLayer = 3 * n * c + 2 * n + ln + 2 * n * qDim + 2 * n * kvDim + batch * config.numAttentionHeads * attentionProbs
        var scratch = 4 * n * c + 2 * n * qDim + 2 * n * kvDim + 2 * n * config.vocabSize + 2 * n
        if let moe = config.moeConfig {
            let r = n * moe.topK, i = config.ffnSize, s = i * moe.numSharedExperts
            perLayer += 2 * n * moe.numExperts + 2 * r + 4 * r * c + 3 * r * i + 3 * n * s + 3 * max(r * i, n * s)
        } else {
            let ffn = config.ffnSize
            perLayer += (config.activation == "swiglu" ? 3 : 2) * n * ffn
            scratch += 3 * n * ffn
        }
        // Per block slot as counted since the planner's tests were written (3 rows of n × C per
        // block, though a block holds 4 with its input, and 4 scratch rows where there are 5: an
        // undercount of (L + 1)·n·C, noted in docs/memory.md); the inputs of blocks without a
        // slot are kept whatever the slots.
        return L * perLayer + (config.numLayers - L) * n * c + n * c + scratch
    }
}
