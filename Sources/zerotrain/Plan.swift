import Common
import ArgumentParser
import Foundation
import Model
import Training
import Zero

/// `zerotrain plan`: per-device and per-host memory of every ZeRO stage and offload choice for a
/// config, and which to run. Pure arithmetic: it sizes 70B models without allocating them.
struct Plan: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Estimate memory per device and host for ZeRO stages 0–3 with offload, and recommend one.",
        discussion: """
            Sizes accept dd-style units: K/M/G/T and KiB/MiB/GiB/TiB are powers of 1024, KB/MB/GB/TB powers of 1000.
            Profiles: \(DeviceProfile.allCases.map(\.rawValue).joined(separator: ", ")). See docs/memory.md for the formulas.
            """)

    @Option(name: .long, help: "Config file (YAML, or a Hugging Face config.json).")
    var config: String

    @Option(name: .long, help: "Devices (ranks) in the job.")
    var devices: String

    @Option(name: .long, help: "Device profile (a100-40g, a100-80g, h100-80g, custom; default: the config's device: section, else a100-80g).")
    var profile: String?

    @Option(name: .customLong("device-memory"), help: "Bytes per device, e.g. 40G or 80GiB (overrides the profile's size).")
    var deviceMemory: String?

    @Option(name: .long, help: "Factor in (0, 1] applied to the device capacity (default 1).")
    var scale: String?

    @Option(name: .customLong("host-memory"), help: "Bytes of memory per host for offloaded state (default: this machine's memory).")
    var hostMemory: String?

    @Option(name: .customLong("devices-per-host"), help: "Devices sharing one host's memory and disk.")
    var devicesPerHost: String = "8"

    @Option(name: .customLong("micro-batch"), help: "Sequences per micro-batch (default: training.micro_batch_size).")
    var microBatch: String?

    @Option(name: .customLong("seq-len"), help: "Tokens per sequence (default: data.seq_len).")
    var seqLen: String?

    @Flag(name: .long, help: "Print the plan as JSON.")
    var json = false

    func run() throws {
        try runReportingErrors {
            do {
                try report()
            } catch let e as ZeroError where e.code == .badInput {
                throw ConfigError(e)
            }
        }
    }

    private func count(_ text: String, _ option: String) throws -> Int {
        guard let v = Int(text.trimmingCharacters(in: .whitespaces)), v >= 1 else {
            throw ConfigError("--\(option): expected a whole number ≥ 1, got \"\(text)\"")
        }
        return v
    }

    private func bytes(_ text: String, _ option: String) throws -> Int {
        guard let v = ByteSize.parse(text), v >= 1 else {
            throw ConfigError("--\(option): expected a size in bytes such as 40G, 80GiB or 42949672960, got \"\(text)\"")
        }
        return v
    }

    private func report() throws {
        let train = try TrainConfig.load(path: config)
        let n = try count(devices, "devices")
        guard let s = Double((scale ?? "1").trimmingCharacters(in: .whitespaces)) else {
            throw ConfigError("--scale: expected a number in (0, 1], got \"\(scale ?? "")\"")
        }
        // The config's own budget unless the command line gives one.
        let fromConfig = profile == nil && deviceMemory == nil && scale == nil ? train.device : nil
        let device = try fromConfig ?? DeviceConfig(profile: profile ?? DeviceProfile.a100_80g.rawValue,
                                                    memory: deviceMemory.map { try bytes($0, "device-memory") }, scale: s)
        do {
            try device.validate(path: "device")
        } catch let e as ZeroError {
            // Name the command-line options rather than the config keys.
            throw ConfigError(e.message.replacingOccurrences(of: "device.memory", with: "--device-memory")
                .replacingOccurrences(of: "device.scale", with: "--scale").replacingOccurrences(of: "device.profile", with: "--profile"))
        }
        let host = try hostMemory.map { try bytes($0, "host-memory") } ?? Int(clamping: ProcessInfo.processInfo.physicalMemory)
        let input = PlannerInput(
            model: train.model,
            microBatchSize: try microBatch.map { try count($0, "micro-batch") } ?? train.training.microBatchSize,
            seqLen: try seqLen.map { try count($0, "seq-len") } ?? train.data.seqLen,
            devices: n, deviceCapacity: device.capacity, hostMemory: host,
            devicesPerHost: try count(devicesPerHost, "devices-per-host"),
            bucketBytes: Int(train.cluster.bucketMB * Double(ByteSize.mebibyte)),
            regionsGatheredAtOnce: train.zero.regionsGatheredAtOnce, precision: train.training.precision)
        let plan = try MemoryPlanner.plan(input)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            Console.out(String(decoding: try encoder.encode(plan), as: UTF8.self))
        } else {
            for line in Self.table(plan, device: device) { Console.out(line) }
        }
    }

    static func table(_ plan: MemoryPlan, device: DeviceConfig) -> [String] {
        let i = plan.input, f = ByteSize.format
        let grouped: (Int) -> String = { v in
            var s = String(v), out = ""
            while s.count > 3 { out = "," + s.suffix(3) + out; s.removeLast(3) }
            return s + out
        }
        let scaleText = device.scale == 1 ? "" : " × \(device.scale)"
        var lines = [
            "model: \(grouped(plan.parameters)) parameters (Ψ), largest unit \(grouped(plan.largestUnit)), shard ⌈Ψ/N⌉ = \(grouped(plan.shardElements)); \(plan.sizeClass.guidance)",
            "devices: \(i.devices) × \(device.profile)\(scaleText) = \(f(i.deviceCapacity)) each, \(min(i.devices, i.devicesPerHost)) per host; "
                + "host memory \(f(i.hostMemory)); micro-batch \(i.microBatchSize) × \(i.seqLen) tokens; buckets 2 × \(f(i.bucketBytes)); stage-3 regions gathered at once \(i.regionsGatheredAtOnce)",
            "",
        ]
        let header = ["stage", "offload", "params", "grads", "optimizer", "activations", "comm", "device", "host", "disk", "fits"]
        var cells: [[String]] = [header]
        for r in plan.rows {
            let d = r.device
            let fits = r.fits ? "yes" : !r.fitsDevice ? "no (device)" : "no (host)"
            cells.append(["\(r.option.stage.rawValue)", r.option.offloadLabel, f(d.params), f(d.grads), f(d.optimizer), f(d.activations),
                          f(d.comm), f(d.total), f(r.hostBytes), f(r.diskBytes), fits])
        }
        let widths = header.indices.map { c in cells.map { $0[c].count }.max()! }
        for row in cells {
            lines.append(row.enumerated().map { c, text in
                let pad = String(repeating: " ", count: widths[c] - text.count)
                return c <= 1 || c == header.count - 1 ? text + pad : pad + text
            }.joined(separator: "  ").trimmingCharacters(in: .whitespaces))
        }
        lines.append("(device = params + grads + optimizer + activations + comm per device; host and disk per host)")
        lines.append("")
        let rec = plan.recommendation
        if let o = rec.option {
            lines.append("recommendation: \(o) on \(rec.devices) device\(rec.devices == 1 ? "" : "s") — \(rec.reason)")
        } else {
            lines.append("recommendation: none fits — \(rec.reason)")
        }
        return lines
    }
}
