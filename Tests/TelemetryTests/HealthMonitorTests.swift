import Foundation
import Testing
@testable import Telemetry

/// Each rule of the training-health monitor on synthetic metric streams.
@Suite struct HealthMonitorTests {
    /// A deterministic noise in [-1, 1).
    static func noise(_ i: Int) -> Double { Double((i &* 2_654_435_761) % 1000) / 500 - 1 }

    /// A healthy run: loss decays from 6 to 0.5 with 3 % noise, gradient norms around 1.
    static func healthy(_ i: Int) -> (loss: Double, norm: Double) {
        (0.5 + 5.5 * exp(-Double(i) / 60) * (1 + 0.03 * noise(i)), 1.0 + 0.2 * noise(i + 7))
    }

    func feed(_ m: inout HealthMonitor, _ steps: Range<Int>, _ value: (Int) -> (loss: Double, norm: Double)) -> [HealthMonitor.Warning] {
        steps.flatMap { i in m.observe(step: i, loss: value(i).loss, gradNorm: value(i).norm, skipped: false) }
    }

    @Test func quietOnAHealthyRun() {
        var m = HealthMonitor()
        #expect(feed(&m, 0..<400, Self.healthy).isEmpty)
    }

    @Test func oscillatingLoss() {
        var m = HealthMonitor()
        _ = feed(&m, 0..<100, Self.healthy)
        // The loss jumps between 2 and 4 from step 100: warned once the window is mostly oscillation, then at most once per window.
        let warnings = feed(&m, 100..<300) { i in (i % 2 == 0 ? 2.0 : 4.0, 1.0) }
        #expect(warnings.allSatisfy { $0.rule == .oscillatingLoss })
        #expect(warnings.count == 4 && warnings.first!.step < 130, "\(warnings.map(\.step))")
        #expect(warnings[0].message.contains("lower training.lr or raise the batch"))
        #expect(zip(warnings.dropFirst(), warnings).allSatisfy { $0.step - $1.step >= 50 })
    }

    @Test func explodingGradients() {
        var m = HealthMonitor()
        _ = feed(&m, 0..<60, Self.healthy)
        let spike = m.observe(step: 60, loss: 1.5, gradNorm: 40, skipped: false)
        #expect(spike.map(\.rule) == [.explodingGradients] && spike[0].message.contains("lower optim.grad_clip"))
        // Growing by half each step: warned again only after the window has passed.
        let growth = feed(&m, 61..<140) { i in (1.5, 40 * pow(1.5, Double(i - 60))) }
        #expect(growth.map(\.rule).allSatisfy { $0 == .explodingGradients } && growth.count == 1 && growth[0].step >= 110)
    }

    @Test func vanishingGradients() {
        var m = HealthMonitor()
        let warnings = feed(&m, 0..<200) { i in (3.0 - Double(i) * 0.001, pow(0.9, Double(i))) }
        #expect(warnings.map(\.rule).allSatisfy { $0 == .vanishingGradients } && !warnings.isEmpty)
        // 0.9^k < 1e-3 × median of the first ten (≈ 0.63) from k ≈ 70; the median of the last ten lags by 5.
        #expect((70...85).contains(warnings[0].step), "\(warnings[0].step)")
        #expect(warnings[0].message.contains("raise training.lr"))
    }

    @Test func overfitting() {
        var m = HealthMonitor()
        var warnings: [HealthMonitor.Warning] = []
        // Validation falls with training for four evaluations, then rises for three while training keeps falling.
        for (k, validation) in [3.0, 2.6, 2.3, 2.1, 2.2, 2.35, 2.5].enumerated() {
            _ = feed(&m, (k * 50)..<((k + 1) * 50), Self.healthy)
            warnings += m.observeValidation(step: (k + 1) * 50 - 1, loss: validation)
        }
        #expect(warnings.map(\.rule) == [.overfitting] && warnings[0].step == 349)
        #expect(warnings[0].message.contains("weight_decay") && warnings[0].message.contains("dropout"))
        // Both falling: quiet.
        var quiet = HealthMonitor()
        var none: [HealthMonitor.Warning] = []
        for (k, validation) in [3.0, 2.6, 2.3, 2.1, 2.0].enumerated() {
            _ = feed(&quiet, (k * 50)..<((k + 1) * 50), Self.healthy)
            none += quiet.observeValidation(step: (k + 1) * 50 - 1, loss: validation)
        }
        #expect(none.isEmpty)
    }

    @Test func everySkippedStepWarns() {
        var m = HealthMonitor()
        _ = feed(&m, 0..<20, Self.healthy)
        let a = m.observe(step: 20, loss: .nan, gradNorm: .nan, skipped: true)
        let b = m.observe(step: 21, loss: 2, gradNorm: .infinity, skipped: true)
        #expect(a.map(\.rule) == [.nonFiniteStep] && b.map(\.rule) == [.nonFiniteStep])
        #expect(a[0].message.hasPrefix("step 21 skipped") && b[0].message.contains("grad_norm inf"))
        // Skipped steps do not enter the windows: the next healthy step raises nothing.
        #expect(m.observe(step: 22, loss: Self.healthy(22).loss, gradNorm: 1, skipped: false).isEmpty)
    }

    /// Per-layer norms (`telemetry.layer_norms`) of a healthy run: each region near its own level.
    static func layers(_ i: Int, scale: (String) -> Double = { _ in 1 }) -> [(name: String, norm: Double)] {
        let names = ["embedding", "layer0", "layer1", "layer2", "head"]
        return names.enumerated().map { k, name in (name, (0.4 + 0.1 * Double(k)) * (1 + 0.2 * noise(i + 13 * k)) * scale(name)) }
    }

    func feedLayers(_ m: inout HealthMonitor, _ steps: Range<Int>, scale: @escaping (Int, String) -> Double = { _, _ in 1 }) -> [HealthMonitor.Warning] {
        steps.flatMap { i in
            let layers = Self.layers(i) { scale(i, $0) }
            let norm = layers.map { $0.norm * $0.norm }.reduce(0, +).squareRoot()
            return m.observe(step: i, loss: Self.healthy(i).loss, gradNorm: norm, skipped: false, layerNorms: layers)
        }
    }

    @Test func quietOnHealthyLayerNorms() {
        var m = HealthMonitor()
        #expect(feedLayers(&m, 0..<400).isEmpty)
    }

    @Test func anExplodingLayerIsNamed() {
        var m = HealthMonitor()
        _ = feedLayers(&m, 0..<60)
        // layer1's norm jumps 20×; the global norm grows about 7×: below the global rule's 10×.
        let spike = feedLayers(&m, 60..<61) { _, name in name == "layer1" ? 20 : 1 }
        #expect(spike.map(\.rule) == [.explodingGradients], "\(spike)")
        #expect(spike.first?.message.hasPrefix("gradients explode in layer1:") == true, "\(spike)")
        #expect(spike.first?.message.contains("lower optim.grad_clip") == true)
        // A spike of the global norm too names the layer that grew most against its own median.
        var g = HealthMonitor()
        _ = feedLayers(&g, 0..<60)
        let both = feedLayers(&g, 60..<61) { _, name in name == "head" ? 100 : 2 }
        #expect(both.map(\.rule) == [.explodingGradients] && both[0].message.hasPrefix("gradients explode: grad_norm"), "\(both)")
        #expect(both[0].message.contains("most in head:"), "\(both)")
    }

    @Test func aVanishingLayerIsNamed() {
        var m = HealthMonitor()
        // layer0's gradients decay by 10 % a step from step 20; the others stay, so the global norm does not vanish.
        let warnings = feedLayers(&m, 0..<200) { i, name in name == "layer0" ? pow(0.9, Double(max(0, i - 20))) : 1 }
        #expect(!warnings.isEmpty && warnings.allSatisfy { $0.rule == .vanishingGradients }, "\(warnings)")
        #expect(warnings[0].message.hasPrefix("gradients vanish in layer0:"), "\(warnings[0].message)")
        #expect((85...110).contains(warnings[0].step), "\(warnings[0].step)")
    }

    @Test func layerNormsAreScalarsNamedByRegion() {
        var sample = StepSample(step: 0, loss: 1, learningRate: 1e-3, gradNorm: 2, auxLoss: nil, tokens: 8, seconds: 1,
                                tokensPerSecond: 8, mfu: nil, skipped: false, idleSeconds: 0, ranks: [])
        #expect(!sample.scalars.contains { $0.tag.hasPrefix("train/grad_norm/") })
        sample.layerGradNorms = [0.5, 1, 1.5, 0.25]
        let tags = sample.scalars.filter { $0.tag.hasPrefix("train/grad_norm/") }
        #expect(tags.map(\.tag) == ["train/grad_norm/embedding", "train/grad_norm/layer0", "train/grad_norm/layer1", "train/grad_norm/head"])
        #expect(tags.map(\.value) == [0.5, 1, 1.5, 0.25])
    }
}
