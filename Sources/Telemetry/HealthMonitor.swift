import Foundation

/// The training-health diagnosis in code: watches the stream of step metrics and warns, with
/// advice, when training goes wrong. A value type fed one step at a time (`observe`) and
/// validation results (`observeValidation`); no clock, no I/O, so every rule is tested on
/// synthetic streams. Each rule warns at most once per `window` steps.
public struct HealthMonitor: Sendable {
    public enum Rule: String, CaseIterable, Sendable {
        case oscillatingLoss = "oscillating_loss"
        case explodingGradients = "exploding_gradients"
        case vanishingGradients = "vanishing_gradients"
        case overfitting
        case nonFiniteStep = "non_finite_step"
    }

    public struct Warning: Equatable, Sendable {
        public var step: Int
        public var rule: Rule
        public var message: String
    }

    public struct Thresholds: Sendable, Equatable {
        /// Steps the rules look back over.
        public var window = 50
        /// Oscillation: the standard deviation of step-to-step loss changes over the window,
        /// relative to the window's mean loss.
        public var oscillation = 0.25
        /// Explosion: a gradient norm this many times the window's median.
        public var explosion = 10.0
        /// Vanishing: the recent median gradient norm below this fraction of the run's first steps' median.
        public var vanishing = 1e-3
        /// Overfitting: validation evaluations in a row whose loss rose while the training loss fell.
        public var overfittingEvaluations = 3
        public init() {}
    }

    public let thresholds: Thresholds
    private var losses: [Double] = []
    private var norms: [Double] = []
    private var firstNorms: [Double] = []
    /// Per layer (`telemetry.layer_norms`): its recent norms (the window) and its first 10, by name.
    private var layerNorms: [String: (recent: [Double], first: [Double])] = [:]
    private var lastWarned: [Rule: Int] = [:]
    /// (step, validation loss, mean training loss of the window then).
    private var evaluations: [(step: Int, validation: Double, training: Double)] = []

    public init(thresholds: Thresholds = Thresholds()) { self.thresholds = thresholds }

    /// One finished update; the warnings it raises. `layerNorms` (`telemetry.layer_norms`: the
    /// gradient norm of the embedding, each block and the head, by name) lets the gradient rules
    /// name the layer: each layer is judged against its own history as the global norm is.
    public mutating func observe(step: Int, loss: Double, gradNorm: Double, skipped: Bool,
                                 layerNorms layers: [(name: String, norm: Double)] = []) -> [Warning] {
        var out: [Warning] = []
        let w = thresholds.window
        if skipped || !loss.isFinite || !gradNorm.isFinite {
            // Every one: a skipped update is never routine.
            out.append(Warning(step: step, rule: .nonFiniteStep,
                               message: "step \(step + 1) skipped: non-finite loss or gradient norm (loss \(loss), grad_norm \(gradNorm)); if it repeats, lower training.lr, raise warmup_steps or lower grad_clip"))
            return out
        }
        // Explosion is judged against the window before this step: the global norm's, and each layer's own.
        let advice = "lower training.lr, lower optim.grad_clip, or raise warmup_steps"
        let grown = layers.compactMap { l -> (name: String, ratio: Double, norm: Double, median: Double)? in
            guard let history = layerNorms[l.name]?.recent, history.count >= min(10, w), l.norm.isFinite else { return nil }
            let median = Self.median(history)
            return median > 0 ? (l.name, l.norm / median, l.norm, median) : nil
        }.sorted { $0.ratio > $1.ratio }
        let worst = grown.first.map { "; most in \($0.name): grad_norm \(Self.format($0.norm)), \(Self.format($0.ratio))× its median (\(Self.format($0.median)))" } ?? ""
        var globalExplodes = false
        if norms.count >= min(10, w) {
            let median = Self.median(norms)
            if median > 0 && gradNorm > thresholds.explosion * median {
                globalExplodes = true
                warn(.explodingGradients, step, &out,
                     "gradients explode: grad_norm \(Self.format(gradNorm)) is \(Self.format(gradNorm / median))× the median of the last \(norms.count) steps (\(Self.format(median)))\(worst); \(advice)")
            }
        }
        let exploded = grown.filter { $0.ratio > thresholds.explosion }
        if !globalExplodes, let first = exploded.first {
            let others = exploded.dropFirst().map(\.name)
            warn(.explodingGradients, step, &out,
                 "gradients explode in \(first.name): its grad_norm \(Self.format(first.norm)) is \(Self.format(first.ratio))× its median of the last steps (\(Self.format(first.median)))\(others.isEmpty ? "" : " (also in \(others.joined(separator: ", ")))"); \(advice)")
        }
        losses.append(loss)
        norms.append(gradNorm)
        if firstNorms.count < 10 { firstNorms.append(gradNorm) }
        if losses.count > w { losses.removeFirst(losses.count - w) }
        if norms.count > w { norms.removeFirst(norms.count - w) }
        for l in layers where l.norm.isFinite {
            var h = layerNorms[l.name] ?? ([], [])
            h.recent.append(l.norm)
            if h.recent.count > w { h.recent.removeFirst(h.recent.count - w) }
            if h.first.count < 10 { h.first.append(l.norm) }
            layerNorms[l.name] = h
        }

        if losses.count == w {
            let diffs = zip(losses.dropFirst(), losses).map { $0 - $1 }
            let mean = losses.reduce(0, +) / Double(w)
            let relative = Self.standardDeviation(diffs) / max(abs(mean), 1e-12)
            if relative > thresholds.oscillation {
                warn(.oscillatingLoss, step, &out,
                     "loss oscillates: step-to-step changes over the last \(w) steps have a standard deviation of \(Int((relative * 100).rounded()))% of the mean loss (\(Self.format(mean))); lower training.lr or raise the batch (micro_batch_size × gradient_accumulation_steps)")
            }
        }
        let vanishAdvice = "raise training.lr, check the initialisation, or use fewer layers / residual scaling"
        // Each layer's recent median against its first 10 steps', smallest ratio first.
        let shrunk = layers.compactMap { l -> (name: String, ratio: Double, recent: Double, initial: Double)? in
            guard let h = layerNorms[l.name], h.first.count == 10, h.recent.count >= 10 else { return nil }
            let recent = Self.median(Array(h.recent.suffix(10))), initial = Self.median(h.first)
            return initial > 0 ? (l.name, recent / initial, recent, initial) : nil
        }.sorted { $0.ratio < $1.ratio }
        var globalVanishes = false
        if firstNorms.count == 10 && norms.count >= 10 {
            let recent = Self.median(Array(norms.suffix(10))), initial = Self.median(firstNorms)
            if initial > 0 && recent < thresholds.vanishing * initial {
                globalVanishes = true
                let most = shrunk.first.map { "; most in \($0.name): median \(Self.format($0.recent)) against \(Self.format($0.initial)) at first" } ?? ""
                warn(.vanishingGradients, step, &out,
                     "gradients vanish: the median grad_norm of the last 10 steps (\(Self.format(recent))) is below \(thresholds.vanishing) × that of the first 10 (\(Self.format(initial)))\(most); \(vanishAdvice)")
            }
        }
        let vanished = shrunk.filter { $0.ratio < thresholds.vanishing }
        if !globalVanishes, let first = vanished.first {
            let others = vanished.dropFirst().map(\.name)
            warn(.vanishingGradients, step, &out,
                 "gradients vanish in \(first.name): its median grad_norm of the last 10 steps (\(Self.format(first.recent))) is below \(thresholds.vanishing) × that of its first 10 (\(Self.format(first.initial)))\(others.isEmpty ? "" : " (also in \(others.joined(separator: ", ")))"); \(vanishAdvice)")
        }
        return out
    }

    /// A validation evaluation after `step`; warns when the validation loss rose while the
    /// training loss fell for `overfittingEvaluations` evaluations in a row.
    public mutating func observeValidation(step: Int, loss: Double) -> [Warning] {
        guard loss.isFinite, !losses.isEmpty else { return [] }
        evaluations.append((step, loss, losses.reduce(0, +) / Double(losses.count)))
        let n = thresholds.overfittingEvaluations
        guard evaluations.count > n else { return [] }
        let recent = evaluations.suffix(n + 1)
        let pairs = zip(recent.dropFirst(), recent)
        guard pairs.allSatisfy({ $0.validation > $1.validation && $0.training < $1.training }) else { return [] }
        var out: [Warning] = []
        let first = recent.first!, last = recent.last!
        warn(.overfitting, step, &out,
             "overfitting: validation loss rose from \(Self.format(first.validation)) to \(Self.format(last.validation)) over \(n) evaluations while training loss fell from \(Self.format(first.training)) to \(Self.format(last.training)); raise optim.weight_decay or model.dropout, add data, or stop at the best checkpoint")
        return out
    }

    private mutating func warn(_ rule: Rule, _ step: Int, _ out: inout [Warning], _ message: String) {
        if let last = lastWarned[rule], step - last < thresholds.window { return }
        lastWarned[rule] = step
        out.append(Warning(step: step, rule: rule, message: message))
    }

    static func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        return s.isEmpty ? 0 : s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    static func standardDeviation(_ xs: [Double]) -> Double {
        guard xs.count > 1 else { return 0 }
        let mean = xs.reduce(0, +) / Double(xs.count)
        return (xs.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(xs.count - 1)).squareRoot()
    }

    static func format(_ x: Double) -> String { String(format: "%.4g", x) }
}
