import Model

/// Where a kind of state lives when it is not on the device.
public enum OffloadTier: String, Codable, Sendable, CaseIterable, Comparable {
    /// Kept on the device (no offload).
    case none
    /// Host memory of the worker that owns the device.
    case host
    /// Local disk (NVMe) of that host.
    case disk

    public static func < (a: OffloadTier, b: OffloadTier) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// A ZeRO stage with its offload choices: one row of a memory plan.
public struct StageOption: Codable, Sendable, Hashable, CustomStringConvertible {
    /// 0 (plain data parallel), 1 (optimizer state sharded), 2 (+ gradients), 3 (+ parameters).
    public let stage: ZeroStage
    /// Where Adam's m and v live (stages 1–3).
    public let optimizer: OffloadTier
    /// Where the parameter shard lives between uses (stage 3 only; never further out than the optimizer).
    public let params: OffloadTier

    public init(stage: ZeroStage, optimizer: OffloadTier = .none, params: OffloadTier = .none) {
        self.stage = stage
        self.optimizer = optimizer
        self.params = params
    }

    /// "optimizer→host, params→disk" or "none".
    public var offloadLabel: String {
        var parts: [String] = []
        if optimizer != .none { parts.append("optimizer→\(optimizer.rawValue)") }
        if params != .none { parts.append("params→\(params.rawValue)") }
        return parts.isEmpty ? "none" : parts.joined(separator: ", ")
    }

    public var description: String {
        "\(stage)" + (optimizer == .none && params == .none ? "" : " + offload \(offloadLabel)")
    }

    /// Every option the planner considers, in order of preference (fastest first, as DeepSpeed
    /// ranks them): sharding without offload (stage 0 → 1 → 2), then optimizer offload at stage 1/2
    /// (host before disk), then stage 3 — without offload, then optimizer offload, then optimizer
    /// and parameter offload (host before disk). The planner recommends the first one that fits.
    public static let preferenceOrder: [StageOption] = [
        StageOption(stage: 0), StageOption(stage: 1), StageOption(stage: 2),
        StageOption(stage: 1, optimizer: .host), StageOption(stage: 2, optimizer: .host),
        StageOption(stage: 1, optimizer: .disk), StageOption(stage: 2, optimizer: .disk),
        StageOption(stage: 3),
        StageOption(stage: 3, optimizer: .host), StageOption(stage: 3, optimizer: .host, params: .host),
        StageOption(stage: 3, optimizer: .disk), StageOption(stage: 3, optimizer: .disk, params: .host),
        StageOption(stage: 3, optimizer: .disk, params: .disk),
    ]

    /// The same options ordered by stage, then optimizer tier, then parameter tier (table order).
    public static let tableOrder: [StageOption] = preferenceOrder.sorted {
        ($0.stage, $0.optimizer, $0.params) < ($1.stage, $1.optimizer, $1.params)
    }
}

/// What the planner is asked about.
public struct PlannerInput: Codable, Sendable, Equatable {
    public var model: ModelConfig
    /// Sequences per micro-batch per device.
    public var microBatchSize: Int
    /// Tokens per sequence.
    public var seqLen: Int
    /// Devices (ranks) in the job, N.
    public var devices: Int
    /// Bytes one device may hold.
    public var deviceCapacity: Int
    /// Bytes of memory per host available to offloaded state.
    public var hostMemory: Int
    /// Devices that share one host (and its memory and disk).
    public var devicesPerHost: Int
    /// Bytes of one gradient bucket (the ring reduces one bucket while backward fills the next).
    public var bucketBytes: Int
    /// Stage 3: regions whose full parameters are gathered at once (the one in use plus those
    /// prefetched; `zero.prefetch_depth` + 1).
    public var regionsGatheredAtOnce: Int
    /// `training.precision`: mixed precision (bf16, fp16, fp8) adds the weight copies and the conversion scratch.
    public var precision: Precision

    public init(model: ModelConfig, microBatchSize: Int, seqLen: Int, devices: Int, deviceCapacity: Int,
                hostMemory: Int, devicesPerHost: Int = 8, bucketBytes: Int = 4 * ByteSize.mebibyte, regionsGatheredAtOnce: Int = 2,
                precision: Precision = .fp32) {
        self.precision = precision
        self.model = model
        self.microBatchSize = microBatchSize
        self.seqLen = seqLen
        self.devices = devices
        self.deviceCapacity = deviceCapacity
        self.hostMemory = hostMemory
        self.devicesPerHost = devicesPerHost
        self.bucketBytes = bucketBytes
        self.regionsGatheredAtOnce = regionsGatheredAtOnce
    }

    /// Checks the numbers; the message names the argument.
    public func validate() throws {
        func fail(_ what: String, _ rule: String) -> ZeroError { ZeroError(.badInput, "\(what): \(rule)") }
        guard devices >= 1 else { throw fail("devices", "must be ≥ 1, got \(devices)") }
        guard microBatchSize >= 1 else { throw fail("micro-batch size", "must be ≥ 1, got \(microBatchSize)") }
        guard seqLen >= 1 else { throw fail("sequence length", "must be ≥ 1, got \(seqLen)") }
        guard seqLen <= model.maxSeqLen else {
            throw fail("sequence length", "must be ≤ model.max_seq_len (\(model.maxSeqLen)), got \(seqLen)")
        }
        guard deviceCapacity >= 1 else { throw fail("device memory", "must be ≥ 1 byte, got \(deviceCapacity)") }
        guard hostMemory >= 1 else { throw fail("host memory", "must be ≥ 1 byte, got \(hostMemory)") }
        guard devicesPerHost >= 1 else { throw fail("devices per host", "must be ≥ 1, got \(devicesPerHost)") }
        guard bucketBytes >= 1 else { throw fail("bucket size", "must be ≥ 1 byte, got \(bucketBytes)") }
        guard regionsGatheredAtOnce >= 1 else { throw fail("regions gathered at once", "must be ≥ 1, got \(regionsGatheredAtOnce)") }
    }
}

/// Bytes one device holds, by kind.
public struct DeviceBytes: Codable, Sendable, Equatable {
    /// fp32 parameters (all of them, or the rank's shard at stage 3; 0 when offloaded).
    public var params: Int
    /// fp32 gradients (all, or the shard at stage 2/3).
    public var grads: Int
    /// Adam m and v (all at stage 0, the shard otherwise; 0 when offloaded).
    public var optimizer: Int
    /// Everything one micro-batch's forward keeps for backward, plus backward scratch.
    public var activations: Int
    /// Gradient buckets, and at stage 2/3 one layer's full gradient, and at stage 3 the gathered layers.
    public var comm: Int

    /// Model states: params + grads + optimizer.
    public var modelStates: Int { params + grads + optimizer }
    public var total: Int { params + grads + optimizer + activations + comm }
}

/// One option's estimate.
public struct PlanRow: Codable, Sendable, Equatable {
    public let option: StageOption
    public let device: DeviceBytes
    /// Offloaded bytes each device puts in host memory.
    public let hostPerDevice: Int
    /// Offloaded bytes each device puts on disk.
    public let diskPerDevice: Int
    /// Host memory the busiest host needs (hostPerDevice × devices on it).
    public let hostBytes: Int
    /// Disk the busiest host needs.
    public let diskBytes: Int
    public let fitsDevice: Bool
    public let fitsHost: Bool
    public var fits: Bool { fitsDevice && fitsHost }

    enum CodingKeys: String, CodingKey {
        case option, device, hostPerDevice, diskPerDevice, hostBytes, diskBytes, fitsDevice, fitsHost, fits, deviceTotal
    }

    public init(option: StageOption, device: DeviceBytes, hostPerDevice: Int, diskPerDevice: Int,
                hostBytes: Int, diskBytes: Int, fitsDevice: Bool, fitsHost: Bool) {
        self.option = option
        self.device = device
        self.hostPerDevice = hostPerDevice
        self.diskPerDevice = diskPerDevice
        self.hostBytes = hostBytes
        self.diskBytes = diskBytes
        self.fitsDevice = fitsDevice
        self.fitsHost = fitsHost
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        option = try c.decode(StageOption.self, forKey: .option)
        device = try c.decode(DeviceBytes.self, forKey: .device)
        hostPerDevice = try c.decode(Int.self, forKey: .hostPerDevice)
        diskPerDevice = try c.decode(Int.self, forKey: .diskPerDevice)
        hostBytes = try c.decode(Int.self, forKey: .hostBytes)
        diskBytes = try c.decode(Int.self, forKey: .diskBytes)
        fitsDevice = try c.decode(Bool.self, forKey: .fitsDevice)
        fitsHost = try c.decode(Bool.self, forKey: .fitsHost)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(option, forKey: .option)
        try c.encode(device, forKey: .device)
        try c.encode(device.total, forKey: .deviceTotal)
        try c.encode(hostPerDevice, forKey: .hostPerDevice)
        try c.encode(diskPerDevice, forKey: .diskPerDevice)
        try c.encode(hostBytes, forKey: .hostBytes)
        try c.encode(diskBytes, forKey: .diskBytes)
        try c.encode(fitsDevice, forKey: .fitsDevice)
        try c.encode(fitsHost, forKey: .fitsHost)
        try c.encode(fits, forKey: .fits)
    }
}

/// The spec's model-size classes, which set what the planner expects to need.
public enum ModelSizeClass: String, Codable, Sendable {
    /// Below 1B parameters: one device should hold the whole model (stage 0).
    case small
    /// 1B–10B: 4–8 devices with stage 1 or 2.
    case medium
    /// Above 10B: stage 3 with offload, across hosts.
    case large

    public init(parameters: Int) {
        self = parameters < 1_000_000_000 ? .small : parameters <= 10_000_000_000 ? .medium : .large
    }

    public var guidance: String {
        switch self {
        case .small: return "below 1B parameters one device is enough (stage 0)"
        case .medium: return "1–10B parameters: 4–8 devices with stage 1/2"
        case .large: return "above 10B parameters: stage 3 with offload across hosts"
        }
    }
}

/// The planner's choice.
public struct Recommendation: Codable, Sendable, Equatable {
    /// The option to run; nil when nothing fits on any device count.
    public let option: StageOption?
    /// Devices to run it on (the requested count, or the smallest power-of-two multiple of it that fits).
    public let devices: Int
    /// One line saying why.
    public let reason: String
}

/// Estimates for every option at the requested device count, and the recommendation.
public struct MemoryPlan: Codable, Sendable, Equatable {
    public let input: PlannerInput
    /// Ψ, the parameter count.
    public let parameters: Int
    /// Elements of the largest gather unit (a block, the embedding, or the final norm + LM head).
    public let largestUnit: Int
    /// ⌈Ψ / N⌉: elements of the largest shard.
    public let shardElements: Int
    public let sizeClass: ModelSizeClass
    /// In `StageOption.tableOrder`.
    public let rows: [PlanRow]
    public let recommendation: Recommendation

    public func row(_ option: StageOption) -> PlanRow? { rows.first { $0.option == option } }
}

/// Per-device and per-host memory for every ZeRO stage and offload choice; pure arithmetic on
/// the model's parameter table (nothing is allocated, so it sizes 70B models on a laptop). The
/// bytes of each option are `ZeroFootprint`'s — the formulas the memory ledger reserves at run
/// time — summed per device, host and disk; the working set counts as device communication bytes.
public enum MemoryPlanner {
    /// Device counts the planner tries when nothing fits at the requested count.
    public static let maxDevices = 65_536

    public static func plan(_ input: PlannerInput) throws -> MemoryPlan {
        try input.validate()
        do { try input.model.validate(path: "model") } catch let e as ModelError { throw ZeroError(.badInput, e.message, cause: e) }
        let table = ParameterTable(config: input.model)
        let psi = table.count, unit = table.largestRegion
        let activations = Transformer.activationBytes(config: input.model, batch: input.microBatchSize, seqLen: input.seqLen,
                                                      precision: input.precision)
        let rows = self.rows(input: input, parameters: psi, largestUnit: unit, activations: activations)
        let sizeClass = ModelSizeClass(parameters: psi)
        return MemoryPlan(input: input, parameters: psi, largestUnit: unit, shardElements: (psi + input.devices - 1) / input.devices,
                          sizeClass: sizeClass, rows: rows,
                          recommendation: recommend(input: input, rows: rows, parameters: psi, largestUnit: unit,
                                                    activations: activations, sizeClass: sizeClass))
    }

    /// Every option of `StageOption.tableOrder` at `input.devices` devices.
    public static func rows(input: PlannerInput, parameters psi: Int, largestUnit unit: Int, activations: Int) -> [PlanRow] {
        StageOption.tableOrder.map { row($0, input: input, parameters: psi, largestUnit: unit, activations: activations) }
    }

    /// The estimate of one option.
    public static func row(_ o: StageOption, input: PlannerInput, parameters psi: Int, largestUnit unit: Int, activations: Int) -> PlanRow {
        let n = input.devices
        let footprint = ZeroFootprint(stage: o.stage, optimizerTier: o.optimizer.memoryTier, parameterTier: o.params.memoryTier,
                                      parameters: psi, ranks: n, largestRegion: unit, activationBytes: activations,
                                      bucketBytes: input.bucketBytes, regionsGatheredAtOnce: input.regionsGatheredAtOnce,
                                      weightCopies: input.precision)
        let device = DeviceBytes(params: footprint.bytes(in: .device, .params), grads: footprint.bytes(in: .device, .grads),
                                 optimizer: footprint.bytes(in: .device, .optimizer), activations: activations,
                                 comm: footprint.bytes(in: .device, .comm) + footprint.bytes(in: .device, .gathered))
        let host = footprint.bytes(in: .host), disk = footprint.bytes(in: .disk)
        let perHost = min(n, input.devicesPerHost)
        return PlanRow(option: o, device: device, hostPerDevice: host, diskPerDevice: disk,
                       hostBytes: host * perHost, diskBytes: disk * perHost,
                       fitsDevice: device.total <= input.deviceCapacity, fitsHost: host * perHost <= input.hostMemory)
    }

    static func recommend(input: PlannerInput, rows: [PlanRow], parameters psi: Int, largestUnit unit: Int,
                          activations: Int, sizeClass: ModelSizeClass) -> Recommendation {
        let n = input.devices, cap = ByteSize.format(input.deviceCapacity)
        let nDevices = "\(n) device\(n == 1 ? "" : "s")"
        func best(_ rows: [PlanRow]) -> PlanRow? {
            StageOption.preferenceOrder.lazy.compactMap { o in rows.first { $0.option == o && $0.fits } }.first
        }
        if let r = best(rows) {
            let used = "\(ByteSize.format(r.device.total)) of \(cap) per device"
            var reason: String
            switch (sizeClass, r.option.stage) {
            case (.small, .replicated):
                reason = "\(sizeClass.guidance): it fits (\(used))" + (n == 2 ? "; the other device only adds data-parallel throughput" : n > 2 ? "; the other \(n - 1) devices only add data-parallel throughput" : "")
            case (.large, let s) where !s.shardsParameters:
                reason = "least-sharded option that fits \(nDevices) (\(used)); \(nDevices) are enough to avoid the stage 3 the size class suggests for >10B"
            default:
                reason = "least-sharded option that fits \(nDevices) (\(used)); \(sizeClass.guidance)"
            }
            // The 1–10B class runs on 4–8 devices without offload: say so when fewer devices need offload or stage 3.
            if sizeClass == .medium && (r.option.stage == .parametersSharded || r.option.optimizer != .none) {
                for m in [4, 8] where m > n {
                    var bigger = input
                    bigger.devices = m
                    let plain = self.rows(input: bigger, parameters: psi, largestUnit: unit, activations: activations)
                        .first { [.optimizerSharded, .gradientsSharded].contains($0.option.stage) && $0.option.optimizer == .none && $0.fits }
                    if let p = plain {
                        reason += "; with \(m) devices \(p.option) fits without offload"
                        break
                    }
                }
            }
            return Recommendation(option: r.option, devices: n, reason: reason)
        }
        // Nothing fits at N: find the smallest power-of-two multiple of N where something does.
        // Activations and buckets do not shrink with N, so give up at once if they alone are too big.
        let floor = activations + 2 * input.bucketBytes
        if floor <= input.deviceCapacity {
            var m = n * 2
            while m <= maxDevices {
                var bigger = input
                bigger.devices = m
                if let r = best(self.rows(input: bigger, parameters: psi, largestUnit: unit, activations: activations)) {
                    return Recommendation(option: r.option, devices: m,
                                          reason: "nothing fits on \(nDevices) of \(cap); with \(m) devices "
                                          + "\(r.option) needs \(ByteSize.format(r.device.total)) per device; \(sizeClass.guidance)")
                }
                m *= 2
            }
        }
        let why = floor > input.deviceCapacity
            ? "activations and buckets alone need \(ByteSize.format(floor)) per device, more than \(cap): lower micro_batch_size or seq_len"
            : "no option fits on up to \(maxDevices) devices of \(cap) with \(ByteSize.format(input.hostMemory)) per host: add host memory or lower micro_batch_size or seq_len"
        return Recommendation(option: nil, devices: n, reason: why)
    }
}
