import ArgumentParser
import Checkpoint
import Common
import Foundation
import Training

/// `zerotrain checkpoint verify|info DIR`: check and describe a checkpoint (format 2) without
/// loading a model. DIR is a checkpoint directory (its `latest` is used) or a step folder.
struct CheckpointCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint",
        abstract: "Check and describe checkpoints (docs/checkpoint-format.md).",
        subcommands: [CheckpointVerify.self, CheckpointInfo.self])
}

struct CheckpointVerify: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Read every file of a checkpoint and check its size, CRC-32C and block checksums (exit 2 on the first mismatch).")

    @Argument(help: "Checkpoint directory (or one of its step-N folders).")
    var dir: String

    func run() throws {
        try runReportingErrors {
            let started = ContinuousClock.now
            let reader = try CheckpointReader<TrainConfig>(URL(fileURLWithPath: dir))
            try reader.verify()
            let seconds = max((ContinuousClock.now - started).seconds, 1e-9)
            let bytes = reader.manifest.files.reduce(0) { $0 + $1.bytes }
            Console.out("ok: \(reader.folder.path) (\(reader.manifest.files.count) files, "
                        + String(format: "%.1f MB verified at %.0f MB/s)", Double(bytes) / 1e6, Double(bytes) / 1e6 / seconds))
        }
    }
}

struct CheckpointInfo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Describe a checkpoint: step, ranks, model, data cursor, schedule and files (reads only the manifest).")

    @Argument(help: "Checkpoint directory (or one of its step-N folders).")
    var dir: String

    @Flag(name: .long, help: "Print the manifest (JSON).")
    var json = false

    func run() throws {
        try runReportingErrors {
            let reader = try CheckpointReader<TrainConfig>(URL(fileURLWithPath: dir))
            let m = reader.manifest
            if json {
                Console.out(String(decoding: try m.encoded(), as: UTF8.self))
                return
            }
            let model = m.config.model
            let c = m.dataCursor, s = m.schedule
            var lines = [
                "folder          \(reader.folder.path)",
                "format version  \(m.formatVersion)",
                "step            \(m.step)",
                "world size      \(m.worldSize)",
                "ZeRO stage      \(m.zeroStage)",
                "model           \(model.numLayers) layers, hidden \(model.hiddenSize), \(reader.elementCount) parameters (Ψ) in \(m.tensors.count) tensors",
                "data cursor     \(c.samplesConsumed) samples consumed, global batch \(c.globalBatch), seed \(c.seed)",
                "schedule        \(s.kind): next lr \(s.nextLR) (peak \(s.peakLR), warm-up \(s.warmupSteps), total \(s.totalSteps) steps, \(s.numCycles) cycles)",
                "skipped steps   \(m.skippedSteps)",
                "files           \(m.files.count), \(m.files.reduce(0) { $0 + $1.bytes }) bytes",
            ]
            let width = m.files.map(\.name.count).max() ?? 0
            for f in m.files {
                let range = f.start.map { "  rank \(f.rank ?? -1), elements \($0)..<\($0 + (f.count ?? 0))" } ?? ""
                lines.append("  " + f.name.padding(toLength: width, withPad: " ", startingAt: 0)
                             + String(format: "  %12d bytes  crc32c 0x%08x", f.bytes, f.crc32c) + range)
            }
            Console.out(lines.joined(separator: "\n"))
        }
    }
}
