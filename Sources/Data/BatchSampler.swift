import Tensor

/// One micro-batch: inputs and targets (batch · seqLen, row-major (B, T)).
public struct Batch: Sendable, Equatable {
    public let inputs: [Int32]
    public let targets: [Int32]
    public let batch: Int
    public let seqLen: Int
}

/// Deterministic sampling of micro-batches from a `TokenSource`.
///
/// A stream is cut into non-overlapping windows of seqLen + 1 tokens. Sample g (the g-th
/// sequence the job consumes: g = origin.samples + ((step − origin.step) · accumulation + micro)
/// · batch + row) is window perm_p[g mod W] of pass p = g / W over the data, where perm_p is a
/// Fisher–Yates shuffle drawn from Philox(seed) stream 0xDA7A_0000 + p. So every window is seen
/// once per pass and the order depends only on (seed, pass): the data position of a run is one
/// number, the samples consumed (the checkpoint's data cursor). A run resumed with another global
/// batch (another world size or accumulation) sets `origin` to the checkpoint's (step, samples)
/// and continues the same sample order from the same place; with the same global batch every
/// step sees exactly the samples of the uninterrupted run.
///
/// Under a curriculum (`TokenSource.mapped` with a plan: documents sorted by difficulty) the windows of
/// update `step` come from the prefix of the stage open at that step: sample g is window
/// perm_{k,p}[g mod W_k], p = g / W_k, with W_k the windows inside stage k's tokens and the
/// permutation drawn from Philox(seed) for (k, p). The window of a sample depends only on (seed,
/// its index, the stage of its step), so every world size draws the same samples.
///
/// Not `Sendable`: `batch` caches the current pass's permutation, so a sampler belongs to one
/// thread at a time (the rank's training thread).
public final class BatchSampler {
    public let source: TokenSource
    public let seqLen: Int
    public let batchSize: Int
    public let accumulation: Int
    public let seed: UInt64
    /// Where this run's data order starts: sample `samples` is the first of step `step` (a
    /// resumed run's checkpoint; (0, 0) for a fresh one).
    public var origin: (step: Int, samples: Int) = (0, 0)
    /// The (stage, pass) whose permutation `permutation` holds (pass -1: none yet; stage 0 without a curriculum).
    private var passCached = (stage: 0, pass: -1)
    private var permutation: [Int] = []

    public init(source: TokenSource, seqLen: Int, batchSize: Int, accumulation: Int, seed: UInt64) throws {
        self.source = source
        self.seqLen = seqLen
        self.batchSize = batchSize
        self.accumulation = accumulation
        self.seed = seed
        switch source {
        case .stream(let tokens):
            guard tokens.count >= seqLen + 1 else {
                throw DataError(.tooShort, "the data has \(tokens.count) tokens; one sequence needs data.seq_len + 1 = \(seqLen + 1)")
            }
        case .mapped(let tokens, let plan):
            // Every curriculum stage holds seq_len + 1 tokens (checked when the plan is built).
            guard plan != nil || tokens.count >= seqLen + 1 else {
                throw DataError(.tooShort, "the data has \(tokens.count) tokens; one sequence needs data.seq_len + 1 = \(seqLen + 1)")
            }
        case .batches(_, _, let micro, let batch, let width):
            guard width == seqLen + 1, batch == batchSize, micro == accumulation else {
                throw DataError(.mismatch, "token file holds [*, \(micro), \(batch), \(width)] but the config needs [*, \(accumulation), \(batchSize), \(seqLen + 1)] (gradient_accumulation_steps, micro_batch_size, seq_len + 1)")
            }
        }
    }

    /// Windows per pass over a stream source (W); under a curriculum, over its last stage.
    public var windowsPerPass: Int {
        switch source {
        case .stream(let t): (t.count - 1) / seqLen
        case .mapped(let t, let plan): plan.map { windows(stage: $0.tokens.count - 1, $0) } ?? (t.count - 1) / seqLen
        case .batches: 0
        }
    }

    private func windows(stage k: Int, _ plan: CurriculumPlan) -> Int { (plan.tokens[k] - 1) / seqLen }

    /// Sequences consumed before `step` (the data cursor stored in checkpoints).
    public func position(step: Int) -> Int { origin.samples + (step - origin.step) * accumulation * batchSize }

    /// The micro-batch `micro` of update `step`.
    public func batch(step: Int, micro: Int) -> Batch {
        var inputs: [Int32] = [], targets: [Int32] = []
        inputs.reserveCapacity(batchSize * seqLen)
        targets.reserveCapacity(batchSize * seqLen)
        switch source {
        case .stream(let tokens):
            for row in 0..<batchSize {
                let g = position(step: step) + micro * batchSize + row
                let start = window(g) * seqLen
                inputs += tokens[start..<(start + seqLen)]
                targets += tokens[(start + 1)..<(start + seqLen + 1)]
            }
        case .mapped(let tokens, let plan):
            let k = plan?.stage(atStep: step)
            var window: [Int32] = []
            window.reserveCapacity(seqLen + 1)
            for row in 0..<batchSize {
                let g = position(step: step) + micro * batchSize + row
                let w = if let plan, let k { self.window(g, stage: k, windows: windows(stage: k, plan)) } else { self.window(g) }
                window.removeAll(keepingCapacity: true)
                tokens.append(w * seqLen ..< w * seqLen + seqLen + 1, to: &window)
                inputs += window[0..<seqLen]
                targets += window[1...]
            }
        case .batches(let tokens, let steps, let micros, let batch, let width):
            let base = ((step % steps) * micros + micro) * batch * width
            for row in 0..<batch {
                let start = base + row * width
                inputs += tokens[start..<(start + seqLen)]
                targets += tokens[(start + 1)..<(start + width)]
            }
        }
        return Batch(inputs: inputs, targets: targets, batch: batchSize, seqLen: seqLen)
    }

    private func window(_ g: Int) -> Int { window(g, stage: nil, windows: windowsPerPass) }

    /// Window of sample g in pass g / w over w windows; `stage` nil is the plain stream.
    private func window(_ g: Int, stage: Int?, windows w: Int) -> Int {
        let pass = g / w
        if passCached != (stage ?? 0, pass) {
            let rng = Philox(seed: seed)
            let stream = stage.map { Philox.stream(0xC022_1C01, UInt64($0), UInt64(pass)) } ?? 0xDA7A_0000 &+ UInt64(pass)
            permutation = Array(0..<w)
            for i in stride(from: w - 1, to: 0, by: -1) {
                permutation.swapAt(i, rng.below(i + 1, index: UInt64(i), stream: stream))
            }
            passCached = (stage ?? 0, pass)
        }
        return permutation[g % w]
    }
}
