import Foundation
import Model
import Testing
import Training
import Zero
import ZeroTrainTestKit

/// ZeRO stages 0–3 with and without offload compute the same training as one rank: the same
/// losses step by step and the same final weights, for a dense and an MoE model on 2 and 3 ranks.
@Suite("ZeRO stages (in-process ranks)", .serialized)
struct ZeroStageTests {
    static func config(moe: Bool, stage: Int = 0, accumulation: Int, optimizer: String = "none", params: String = "none",
                       extra: String = "") throws -> TrainConfig {
        let mlp = moe
            ? "  intermediate_size: 48\n  moe_config: {num_experts: 4, top_k: 2, aux_loss_coef: 0.01, num_shared_experts: 1}\n"
            : ""
        return try TrainConfig.parse(text: """
            model:
              num_layers: 3
              hidden_size: 32
              num_attention_heads: 4
              num_key_value_heads: 2
              vocab_size: 256
              max_seq_len: 32
            \(mlp)training:
              lr: 3.0e-3
              warmup_steps: 5
              total_steps: 20
              micro_batch_size: 2
              gradient_accumulation_steps: \(accumulation)
              grad_clip: 1.0
              seed: 7
              threads: 1
            data:
              source: builtin
              seq_len: 16
            zero: {stage: \(stage), offload_optimizer: \(optimizer), offload_params: \(params), param_persistence_threshold: 0\(extra)}
            """)
    }

    /// stage, optimizer tier, parameter tier.
    static let options: [(Int, String, String)] = [
        (0, "none", "none"), (0, "host", "none"), (1, "none", "none"), (1, "host", "none"), (2, "none", "none"), (2, "host", "none"),
        (3, "none", "none"), (3, "host", "none"), (3, "host", "host"), (3, "disk", "disk"),
    ]

    static func relativeL2(_ a: [Float], _ b: [Float]) -> Double {
        var d = 0.0, n = 0.0
        for (x, y) in zip(a, b) { d += Double(x - y) * Double(x - y); n += Double(y) * Double(y) }
        return (d / max(n, 1e-30)).squareRoot()
    }

    @Test(arguments: [false, true])
    func everyStageAndOffloadEqualsOneRank(moe: Bool) throws {
        let steps = 20
        let reference = try InProcessCluster.train(try Self.config(moe: moe, accumulation: 6), ranks: 1, steps: steps)
        let table = ParameterTable(config: try Self.config(moe: moe, accumulation: 1).model)
        for n in [1, 2, 3] {
            for (stage, optimizer, params) in Self.options {
                let label = "\(moe ? "moe" : "dense") N=\(n) stage \(stage) optimizer→\(optimizer) params→\(params)"
                let run = try InProcessCluster.train(try Self.config(moe: moe, stage: stage, accumulation: 6 / n,
                                                                     optimizer: optimizer, params: params),
                                                     ranks: n, steps: steps)
                #expect(run.losses.count == steps)
                for (x, y) in zip(run.losses, reference.losses) { #expect(abs(x - y) <= 1e-5 * abs(y), "\(label): loss \(x) vs \(y)") }
                for (x, y) in zip(run.auxLosses, reference.auxLosses) { #expect(abs(x - y) <= 1e-5 * abs(y), "\(label): aux loss \(x) vs \(y)") }
                if moe { #expect(run.auxLosses.allSatisfy { $0 > 0 }) }
                for (x, y) in zip(run.gradNorms, reference.gradNorms) { #expect(abs(x - y) <= 1e-5 * abs(y), "\(label): grad norm \(x) vs \(y)") }
                for e in table.entries {
                    let r = e.offset..<(e.offset + e.count)
                    let diff = Self.relativeL2(Array(run.parameters[r]), Array(reference.parameters[r]))
                    #expect(diff <= 1e-5, "\(label): \(e.name) differs by \(diff) (relative L2)")
                }
                if optimizer == "disk" { #expect(run.diskFiles.count == 3 * n, "\(label): \(run.diskFiles)") }
                for m in run.memory {
                    let host = m.offloaded["host"]?.values.reduce(0, +) ?? 0, disk = m.offloaded["disk"]?.values.reduce(0, +) ?? 0
                    #expect((optimizer == "host") == (host > 0) && (optimizer == "disk") == (disk > 0), "\(label): \(m.offloaded)")
                    #expect((m.peak["optimizer"] ?? 0) == (optimizer == "none" ? 8 * ((table.count + n - 1) / n) : 0)
                            || (stage == 0 && (m.peak["optimizer"] ?? 0) == 8 * table.count), "\(label): \(m.peak)")
                }
            }
        }
    }
}

/// The ledger's measured peaks against the ZeRO formulas and the planner, and the measured traffic
/// against the theory.
@Suite("ZeRO memory and traffic (in-process ranks)", .serialized)
struct ZeroMemoryTests {
    /// Many small blocks, so stage 3's working set (a few gathered blocks) is small beside Ψ/N.
    static func config(stage: Int, persistence: Int = 0) throws -> TrainConfig {
        try TrainConfig.parse(text: """
            model: {num_layers: 8, hidden_size: 32, num_attention_heads: 4, vocab_size: 256, max_seq_len: 16}
            training: {total_steps: 2, micro_batch_size: 1, gradient_accumulation_steps: 1, threads: 1, seed: 3}
            data: {source: builtin, seq_len: 16}
            cluster: {bucket_mb: 0.25}
            zero: {stage: \(stage), param_persistence_threshold: \(persistence)}
            """)
    }

    @Test(arguments: [2, 4])
    func peakModelStatesMatchTheFormulasAndThePlanner(ranks n: Int) throws {
        for stage in 0...3 {
            let config = try Self.config(stage: stage)
            let psi = Double(ParameterTable(config: config.model).count), N = Double(n)
            let formula = [16 * psi, 8 * psi + 8 * psi / N, 4 * psi + 12 * psi / N, 16 * psi / N][stage]
            let run = try InProcessCluster.train(config, ranks: n, steps: 2)
            let plan = try MemoryPlanner.plan(PlannerInput(
                model: config.model, microBatchSize: 1, seqLen: 16, devices: n, deviceCapacity: 1 << 40, hostMemory: 1 << 40,
                bucketBytes: Int(config.cluster.bucketMB * 1_048_576), regionsGatheredAtOnce: config.zero.regionsGatheredAtOnce))
            let estimate = Double(plan.row(StageOption(stage: ZeroStage(rawValue: stage)!))!.device.total)
            for (rank, m) in run.memory.enumerated() {
                let states = Double(m.peakModelStates)
                #expect(abs(states - formula) <= 0.05 * formula, "N=\(n) stage \(stage) rank \(rank): model states \(states) vs \(formula)")
                let measured = Double(m.peakTotal)
                #expect(abs(estimate - measured) <= 0.10 * measured,
                        "N=\(n) stage \(stage) rank \(rank): planner \(estimate) vs ledger peak \(measured) (\(m.peak))")
            }
        }
    }

    /// Payload elements each rank sends per step: 2Ψ(N−1)/N at stages 0–2 (reduce + parameter
    /// all-gather, or all-reduce), ≈ 3Ψ(N−1)/N at stage 3 (reduce-scatter, and gathers before
    /// forward and again before backward; the LM head's gather serves both, and backward needs no
    /// embedding parameters, so a little under 3).
    @Test(arguments: [2, 4])
    func bytesSentMatchTheTheory(ranks n: Int) throws {
        for stage in 0...3 {
            let config = try Self.config(stage: stage)
            let table = ParameterTable(config: config.model)
            let psi = Double(table.count), N = Double(n)
            let run = try InProcessCluster.train(config, ranks: n, steps: 2)
            let sent = run.bytesSent.map { Double($0.filter { $0.key != "allReduceScalars" }.values.reduce(0, +)) / 4 }
            if stage < 3 {
                for s in sent { #expect(abs(s - 2 * psi * (N - 1) / N) <= 0.01 * psi, "N=\(n) stage \(stage): \(s) elements") }
            } else {
                let regions = table.regions
                let gathered = Double(regions.map(\.count).reduce(0, +) + regions.dropFirst().dropLast().map(\.count).reduce(0, +))
                let exact = (psi + gathered) * (N - 1) / N
                let mean = sent.reduce(0, +) / N
                #expect(abs(mean - exact) <= 0.01 * exact, "N=\(n) stage 3: \(mean) elements per rank vs \(exact)")
                #expect(mean >= 2.7 * psi * (N - 1) / N && mean <= 3 * psi * (N - 1) / N, "N=\(n) stage 3: \(mean / (psi * (N - 1) / N)) × Ψ(N−1)/N")
            }
        }
    }

    /// A budget that holds the stage-3 shards and activations but not the working set (two region
    /// gradients, the gathered region and the one prefetched) is refused before training starts.
    @Test func stageThreeWorkingSetIsCheckedUpFront() throws {
        var config = try Self.config(stage: 3)
        let table = ParameterTable(config: config.model), n = 2
        let s = (table.count + n - 1) / n, region = table.regions.map(\.count).max()!
        let fixed = 16 * s + Transformer.activationBytes(config: config.model, batch: 1, seqLen: 16)
        config.device = DeviceConfig(profile: "custom", memory: fixed + 4 * 3 * region)
        #expect { _ = try Trainer.reserveMemory(config: config, rank: 0, worldSize: n, stage: 3) } throws: {
            "\($0)".contains("out of device memory on rank 0: the stage 3 working set")
        }
        config.device = DeviceConfig(profile: "custom", memory: fixed + 4 * 4 * region)
        let ledger = try Trainer.reserveMemory(config: config, rank: 0, worldSize: n, stage: 3)
        #expect(ledger.snapshot.peak["gathered"] == nil, "checked, not entered")
    }
}
