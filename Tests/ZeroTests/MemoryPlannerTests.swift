import Foundation
import Model
import Testing
@testable import Zero

@Suite struct MemoryPlannerTests {
    static let gib = 1 << 30

    func input(_ model: ModelConfig, devices: Int, capacity: Int = 80 << 30, host: Int = 1 << 40,
               batch: Int = 1, seqLen: Int = 64, perHost: Int = 8) -> PlannerInput {
        PlannerInput(model: model, microBatchSize: batch, seqLen: seqLen, devices: devices, deviceCapacity: capacity,
                     hostMemory: host, devicesPerHost: perHost)
    }

    /// The ZeRO formulas, byte for byte, with s = ⌈Ψ/N⌉: 16Ψ, 8Ψ + 8s, 4Ψ + 12s, 16s; offload moves
    /// 8s (optimizer) and 4s (stage-3 parameters) out of the device.
    @Test(arguments: [1, 2, 4])
    func smallModelMatchesTheFormulas(devices n: Int) throws {
        let model = Models.dense(layers: 2, hidden: 64, heads: 4, vocab: 256)
        let table = ParameterTable(config: model)
        let psi = table.count, s = (psi + n - 1) / n
        let plan = try MemoryPlanner.plan(input(model, devices: n, batch: 2, seqLen: 32))
        #expect(plan.parameters == psi && plan.shardElements == s)
        let act = Transformer.activationBytes(config: model, batch: 2, seqLen: 32)
        let unit = [table.embeddingRange.count, table.headRange.count, table.layerRange(0).count, table.layerRange(1).count].max()!
        #expect(plan.largestUnit == unit)
        #expect(plan.rows.map(\.option) == StageOption.tableOrder && plan.rows.count == 13)
        for r in plan.rows {
            let o = r.option, d = r.device
            let states = [16 * psi, 8 * psi + 8 * s, 4 * psi + 12 * s, 16 * s][o.stage.rawValue]
            let optimizerOut = o.optimizer == .none ? 0 : 8 * s
            let paramsOut = o.params == .none ? 0 : 4 * s
            #expect(d.modelStates == states - optimizerOut - paramsOut, "\(o)")
            #expect(d.params == (o.params != .none ? 0 : o.stage == 3 ? 4 * s : 4 * psi), "\(o)")
            #expect(d.grads == (o.stage >= 2 ? 4 * s : 4 * psi), "\(o)")
            #expect(d.optimizer == (o.optimizer != .none ? 0 : o.stage == 0 ? 8 * psi : 8 * s), "\(o)")
            #expect(d.activations == act)
            let comm = (o.stage >= 2 ? 2 * 4 * unit : 2 * 4 * (1 << 20)) + (o.stage == 3 ? 2 * 4 * unit : 0)
            #expect(d.comm == comm, "\(o)")
            #expect(d.total == states - optimizerOut - paramsOut + act + comm)
            let host = (o.optimizer == .host ? 8 * s : 0) + (o.params == .host ? 4 * s : 0)
            let disk = (o.optimizer == .disk ? 8 * s : 0) + (o.params == .disk ? 4 * s : 0)
            #expect(r.hostPerDevice == host && r.diskPerDevice == disk, "\(o)")
            #expect(r.hostBytes == host * n && r.diskBytes == disk * n, "all \(n) devices on one host")
            #expect(r.fits)
        }
        // Stage 0 needs no offload; with N = 1 sharding changes nothing.
        #expect(plan.row(StageOption(stage: 0))!.device.modelStates == 16 * psi)
        if n == 1 { #expect(plan.row(StageOption(stage: 3))!.device.modelStates == 16 * psi) }
        #expect(plan.recommendation.option == StageOption(stage: 0))
    }

    /// Llama-2-7B: Ψ = 6,738,415,616, and the usual headline numbers (16Ψ ≈ 108 GB at stage 0).
    @Test func llama7BNumbers() throws {
        let model = try Models.load("llama-7b.yaml")
        let plan = try MemoryPlanner.plan(input(model, devices: 8, seqLen: 1024))
        #expect(plan.parameters == 6_738_415_616)
        #expect(plan.sizeClass == .medium)
        let psi = plan.parameters
        #expect(plan.row(StageOption(stage: 0))!.device.modelStates == 16 * psi)   // 107.8 GB
        #expect(plan.row(StageOption(stage: 3))!.device.modelStates == 2 * psi)    // 16Ψ/8 = 13.5 GB
        // One block: 4·4096² attention + 3·4096·11008 MLP + 2 norms.
        #expect(plan.largestUnit == 4 * 4096 * 4096 + 3 * 4096 * 11008 + 2 * 4096)
        // Stage 0 cannot fit 80 GiB; stage 1 (≈ 60 GiB of states) does, and is the least sharded.
        #expect(!plan.row(StageOption(stage: 0))!.fits)
        #expect(plan.recommendation.option == StageOption(stage: 1) && plan.recommendation.devices == 8)
        // On 40 GiB devices stage 1/2 are too big without offload; stage 2 with the optimizer on the host fits.
        let small = try MemoryPlanner.plan(input(model, devices: 8, capacity: 40 << 30, seqLen: 1024))
        #expect(small.recommendation.option == StageOption(stage: 2, optimizer: .host))
    }

    /// 7B on one 80 GiB device fits only with the optimizer offloaded; the planner says that 4
    /// devices (the 1–10B tier) run stage 1 without offload.
    @Test func llama7BOnOneDeviceOffloadsAndPointsAtTheTier() throws {
        let model = try Models.load("llama-7b.yaml")
        let plan = try MemoryPlanner.plan(input(model, devices: 1, host: 64 << 30, seqLen: 1024))
        let rec = plan.recommendation
        #expect(rec.option == StageOption(stage: 1, optimizer: .host) && rec.devices == 1, "\(rec)")
        #expect(rec.reason.contains("with 4 devices stage 1 fits without offload"), "\(rec.reason)")
    }

    /// 7B on one 32 GiB device with no room on the host: nothing fits (even with everything on
    /// disk the gradients and activations need 37.5 GiB), the planner names the smallest
    /// power-of-two device count that does.
    @Test func llama7BOnTooFewDevicesSuggestsMore() throws {
        let model = try Models.load("llama-7b.yaml")
        let plan = try MemoryPlanner.plan(input(model, devices: 1, capacity: 32 << 30, host: 1 << 30, seqLen: 1024))
        #expect(plan.rows.allSatisfy { !$0.fits })
        let rec = plan.recommendation
        #expect(rec.devices == 2 && rec.option == StageOption(stage: 3, optimizer: .disk, params: .disk), "\(rec)")
        #expect(rec.reason.contains("nothing fits on 1 device"))
    }

    /// Llama-2-70B needs stage 3 with offload; 16 × 80 GiB with 1 TiB hosts is enough, 8 is not.
    @Test func llama70BNeedsStage3WithOffload() throws {
        let model = try Models.load("llama-70b.yaml")
        let plan = try MemoryPlanner.plan(input(model, devices: 16, seqLen: 1024))
        #expect(plan.parameters == 68_976_648_192 && plan.sizeClass == .large)
        let rec = plan.recommendation
        #expect(rec.option == StageOption(stage: 3, optimizer: .host, params: .host) && rec.devices == 16)
        let eight = try MemoryPlanner.plan(input(model, devices: 8, seqLen: 1024))
        #expect(eight.rows.allSatisfy { !$0.fits })
        #expect(eight.recommendation.devices == 16 && eight.recommendation.option?.stage == 3)
        // With less host memory the optimizer, then the parameters too, go to disk.
        let some = try MemoryPlanner.plan(input(model, devices: 16, host: 200 << 30, seqLen: 1024))
        #expect(some.recommendation.option == StageOption(stage: 3, optimizer: .disk, params: .host))
        let none = try MemoryPlanner.plan(input(model, devices: 16, host: 100 << 30, seqLen: 1024))
        #expect(none.recommendation.option == StageOption(stage: 3, optimizer: .disk, params: .disk))
    }

    /// A scaled profile shows the planner's stage choices on a small model: shrink the device until
    /// stage 0 no longer fits and the planner moves to the least-sharded option that does.
    @Test func scaledProfileShowsStageChoicesOnASmallModel() throws {
        let model = Models.dense(layers: 4, hidden: 128, heads: 4, vocab: 256)
        let base = try MemoryPlanner.plan(input(model, devices: 4, batch: 1, seqLen: 16))
        let rows = Dictionary(uniqueKeysWithValues: base.rows.map { ($0.option, $0.device.total) })
        #expect(base.recommendation.option == StageOption(stage: 0))
        #expect(base.recommendation.reason.contains("one device is enough"))
        // Between stage 1 and stage 0: stage 1.
        let stage1 = (rows[StageOption(stage: 0)]! + rows[StageOption(stage: 1)]!) / 2
        var smaller = input(model, devices: 4, capacity: stage1, batch: 1, seqLen: 16)
        #expect(try MemoryPlanner.plan(smaller).recommendation.option == StageOption(stage: 1))
        // Just enough for stage 2.
        smaller.deviceCapacity = rows[StageOption(stage: 2)]!
        #expect(try MemoryPlanner.plan(smaller).recommendation.option == StageOption(stage: 2))
        // Through DeviceConfig: a custom profile scaled down to the same capacity.
        let device = DeviceConfig(profile: "custom", memory: rows[StageOption(stage: 2)]! * 1000, scale: 0.001)
        try device.validate()
        #expect(device.capacity == rows[StageOption(stage: 2)]!)
    }

    @Test func activationsTooLargeForAnyDeviceCount() throws {
        let model = Models.dense()
        let act = Transformer.activationBytes(config: model, batch: 4, seqLen: 64)
        let plan = try MemoryPlanner.plan(input(model, devices: 2, capacity: act, batch: 4, seqLen: 64))
        #expect(plan.recommendation.option == nil)
        #expect(plan.recommendation.reason.contains("lower micro_batch_size or seq_len"))
    }

    @Test func hostsShareMemory() throws {
        let model = Models.dense()
        let plan = try MemoryPlanner.plan(input(model, devices: 6, perHost: 4))
        let r = plan.row(StageOption(stage: 3, optimizer: .host, params: .host))!
        #expect(r.hostBytes == 4 * r.hostPerDevice && r.hostPerDevice == 12 * plan.shardElements)
        let tight = try MemoryPlanner.plan(input(model, devices: 6, capacity: r.device.total, host: r.hostBytes - 1, perHost: 4))
        #expect(tight.row(r.option)!.fitsDevice && !tight.row(r.option)!.fitsHost)
    }

    @Test func badInputIsRefused() {
        let model = Models.dense()
        let cases: [(PlannerInput, String)] = [
            (input(model, devices: 0), "devices: must be ≥ 1, got 0"),
            (input(model, devices: 2, capacity: 0), "device memory: must be ≥ 1 byte, got 0"),
            (input(model, devices: 2, batch: 0), "micro-batch size: must be ≥ 1, got 0"),
            (input(model, devices: 2, seqLen: 5000), "sequence length: must be ≤ model.max_seq_len (1024), got 5000"),
        ]
        for (i, message) in cases {
            #expect { try MemoryPlanner.plan(i) } throws: { ($0 as? ZeroError)?.message == message }
        }
        var broken = model
        broken.numAttentionHeads = 3
        #expect(throws: ZeroError.self) { try MemoryPlanner.plan(input(broken, devices: 2)) }
    }

    @Test func planRoundTripsThroughJSON() throws {
        let plan = try MemoryPlanner.plan(input(Models.moe, devices: 3))
        let data = try JSONEncoder().encode(plan)
        #expect(try JSONDecoder().decode(MemoryPlan.self, from: data) == plan)
        let object = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        let rows = object?["rows"] as? [[String: Any]]
        #expect(rows?.first?["deviceTotal"] as? Int == plan.rows.first?.device.total)
        #expect(rows?.first?["fits"] as? Bool == true)
    }

    @Test func preferenceOrderCoversEveryOptionOnce() {
        #expect(Set(StageOption.preferenceOrder).count == 13)
        #expect(Set(StageOption.tableOrder) == Set(StageOption.preferenceOrder))
        for o in StageOption.preferenceOrder {
            #expect(o.params <= o.optimizer && (o.stage == 3 || o.params == .none) && (o.stage > 0 || o.optimizer == .none))
        }
    }
}

/// Mixed precision in the ZeRO formulas: a bf16 copy of the weights beside the fp32 master
/// (2 + 4 + 12 bytes per parameter at stages 0–2), and at stage 3 only of the gathered regions.
@Suite struct MixedPrecisionFootprintTests {
    @Test func bf16AddsTheWeightCopies() {
        let psi = 1_000_000, region = 100_000
        func footprint(_ stage: ZeroStage, _ bf16: Bool) -> ZeroFootprint {
            ZeroFootprint(stage: stage, optimizerTier: .device, parameterTier: .device, parameters: psi, ranks: 4,
                          largestRegion: region, activationBytes: 0, bucketBytes: 0, regionsGatheredAtOnce: 2, weightCopies: bf16 ? .bf16 : .fp32)
        }
        for stage in [ZeroStage.replicated, .optimizerSharded, .gradientsSharded] {
            #expect(footprint(stage, true).bytes(in: .device, .params) - footprint(stage, false).bytes(in: .device, .params) == 2 * psi)
        }
        let s0 = footprint(.replicated, true)
        #expect(s0.bytes(in: .device, .params) + s0.bytes(in: .device, .grads) + s0.bytes(in: .device, .optimizer) == (2 + 4 + 12) * psi)
        let s3 = footprint(.parametersSharded, true), s3fp32 = footprint(.parametersSharded, false)
        #expect(s3.bytes(in: .device, .params) == s3fp32.bytes(in: .device, .params))
        #expect(s3.bytes(in: .device, .gathered) - s3fp32.bytes(in: .device, .gathered) == 2 * 2 * region)
    }

    /// fp16 copies weigh 2 bytes per parameter, as bf16's; fp8 copies 1.
    @Test(arguments: [(Precision.fp16, 2), (.fp8, 1), (.bf16, 2), (.fp32, 0)])
    func weightCopiesByFormat(precision: Precision, bytes: Int) {
        let psi = 1_000_000, region = 100_000
        func footprint(_ stage: ZeroStage, _ p: Precision) -> ZeroFootprint {
            ZeroFootprint(stage: stage, optimizerTier: .device, parameterTier: .device, parameters: psi, ranks: 4,
                          largestRegion: region, activationBytes: 0, bucketBytes: 0, regionsGatheredAtOnce: 2, weightCopies: p)
        }
        #expect(footprint(.replicated, precision).bytes(in: .device, .params) - footprint(.replicated, .fp32).bytes(in: .device, .params) == bytes * psi)
        #expect(footprint(.parametersSharded, precision).bytes(in: .device, .gathered)
                - footprint(.parametersSharded, .fp32).bytes(in: .device, .gathered) == bytes * 2 * region)
        #expect(bytes == 0 || footprint(.replicated, precision).items.contains { $0.what == "the \(precision) weight copies" })
    }
}
