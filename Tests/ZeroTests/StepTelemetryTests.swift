import Foundation
import Model
import Testing
import Training
import Zero
import ZeroTrainTestKit

/// What the step's scalar all-reduce adds to the metrics: the MoE expert load of the whole job
/// (every rank's routing counts summed) and, with `telemetry.layer_norms`, the gradient norm of
/// each region (embedding, blocks, head) over all ranks' shards — the same on 1 rank and on 2 at
/// any ZeRO stage, for the same global batch.
@Suite("Step telemetry (in-process ranks)", .serialized)
struct StepTelemetryTests {
    static let steps = 6

    static func config(stage: Int, accumulation: Int, layerNorms: Bool) throws -> TrainConfig {
        var c = try ZeroStageTests.config(moe: true, stage: stage, accumulation: accumulation)
        c.training.totalSteps = steps
        if layerNorms {
            var t = TelemetryConfig()
            t.layerNorms = true
            c.telemetry = t
        }
        return c
    }

    static func relative(_ a: Double, _ b: Double) -> Double { abs(a - b) / max(abs(b), 1e-30) }

    @Test func expertLoadIsSummedOverTheRanks() throws {
        let one = try InProcessCluster.train(try Self.config(stage: 0, accumulation: 4, layerNorms: false), ranks: 1, steps: Self.steps)
        let reference = one.metricsPerRank[0].map { $0.expertLoad ?? [] }
        #expect(reference.allSatisfy { $0.count == 4 && abs($0.reduce(0, +) - 1) < 1e-12 })
        for stage in [0, 2] {
            let two = try InProcessCluster.train(try Self.config(stage: stage, accumulation: 2, layerNorms: false), ranks: 2, steps: Self.steps)
            for rank in 0..<2 {
                for (step, m) in two.metricsPerRank[rank].enumerated() {
                    let load = try #require(m.expertLoad)
                    #expect(abs(load.reduce(0, +) - 1) < 1e-12)
                    // Routing is discrete: the same parameters route the same tokens the same way.
                    for (x, y) in zip(load, reference[step]) {
                        #expect(abs(x - y) <= 1e-12, "stage \(stage) rank \(rank) step \(step): \(load) vs \(reference[step])")
                    }
                }
            }
        }
    }

    @Test func layerNormsAgreeAcrossRanksAndStagesAndMakeTheGlobalNorm() throws {
        let layers = ParameterTable(config: try Self.config(stage: 0, accumulation: 1, layerNorms: true).model).regions.count
        #expect(layers == 3 + 2)
        let one = try InProcessCluster.train(try Self.config(stage: 0, accumulation: 4, layerNorms: true), ranks: 1, steps: Self.steps)
        let reference = one.metricsPerRank[0]
        for m in reference {
            let norms = try #require(m.layerGradNorms)
            #expect(norms.count == layers && norms.allSatisfy { $0 > 0 })
            #expect(Self.relative(norms.map { $0 * $0 }.reduce(0, +).squareRoot(), m.gradNorm) <= 1e-5, "\(norms) vs \(m.gradNorm)")
        }
        for stage in [0, 1, 2, 3] {
            let two = try InProcessCluster.train(try Self.config(stage: stage, accumulation: 2, layerNorms: true), ranks: 2, steps: Self.steps)
            for rank in 0..<2 {
                for (step, m) in two.metricsPerRank[rank].enumerated() {
                    let norms = try #require(m.layerGradNorms), expected = try #require(reference[step].layerGradNorms)
                    let rss = norms.map { $0 * $0 }.reduce(0, +).squareRoot()
                    #expect(Self.relative(rss, m.gradNorm) <= 1e-5, "stage \(stage) rank \(rank) step \(step): \(rss) vs \(m.gradNorm)")
                    for (i, (x, y)) in zip(norms, expected).enumerated() {
                        #expect(Self.relative(x, y) <= 1e-5, "stage \(stage) rank \(rank) step \(step) region \(i): \(x) vs \(y)")
                    }
                }
            }
        }
    }

    /// The option only measures: the same losses, norms and weights bit for bit, and no norms reported without it.
    @Test func layerNormsOffReportsNothingAndOnChangesNoNumber() throws {
        let off = try InProcessCluster.train(try Self.config(stage: 2, accumulation: 2, layerNorms: false), ranks: 2, steps: Self.steps)
        let on = try InProcessCluster.train(try Self.config(stage: 2, accumulation: 2, layerNorms: true), ranks: 2, steps: Self.steps)
        #expect(off.metricsPerRank.joined().allSatisfy { $0.layerGradNorms == nil })
        #expect(off.losses.map(\.bitPattern) == on.losses.map(\.bitPattern))
        #expect(off.gradNorms.map(\.bitPattern) == on.gradNorms.map(\.bitPattern))
        #expect(off.parameters.map(\.bitPattern) == on.parameters.map(\.bitPattern))
        // On, the step's one scalar all-reduce is longer (5 regions); off, it carries the loss terms, norm and routing counts.
        let scalarsOff = try #require(off.bytesSent[0]["allReduceScalars"]), scalarsOn = try #require(on.bytesSent[0]["allReduceScalars"])
        #expect(scalarsOff < scalarsOn)
    }
}
