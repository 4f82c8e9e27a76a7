import ArgumentParser
import Checkpoint
import Foundation
import Tensor
import Training

struct Train: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model in this process.",
        discussion: "Ctrl-C or SIGTERM stops at the next update, writing a checkpoint when training.checkpoint_dir is set.")

    @Option(name: .long, help: "Config file: YAML (model/training/data) or a Hugging Face config.json.")
    var config: String?

    @Option(name: .long, help: "Resume from a checkpoint directory (or one of its step-N folders).")
    var resume: String?

    @Option(name: .long, help: "Override data.path with this file (source text unless --data-source says otherwise).")
    var data: String?

    @Option(name: .long, help: "Override data.source (builtin, text, jsonl, tokens).")
    var dataSource: String?

    @Option(name: .long, help: "Override training.checkpoint_dir.")
    var checkpointDir: String?

    @Option(name: .long, help: "Override training.threads.")
    var threads: Int?

    func run() async throws {
        try await runReportingErrors {
            var cfg: TrainConfig
            if let config {
                cfg = try TrainConfig.load(path: config)
            } else if let resume, resume != "auto" {
                cfg = try CheckpointReader<TrainConfig>(URL(fileURLWithPath: resume)).manifest.config
            } else {
                throw ValidationError("give --config FILE (or --resume DIR)")
            }
            if let data {
                cfg.data.path = data
                cfg.data.source = dataSource ?? (data.hasSuffix(".jsonl") ? "jsonl" : data.hasSuffix(".safetensors") ? "tokens" : "text")
            } else if let dataSource {
                cfg.data.source = dataSource
            }
            if let checkpointDir { cfg.training.checkpointDir = checkpointDir }
            if let threads { cfg.training.threads = threads }
            try cfg.validate()
            var resume = self.resume
            if resume == "auto" {
                // The newest checkpoint of training.checkpoint_dir that verifies, or a fresh start.
                guard let dir = cfg.training.checkpointDir else {
                    throw ValidationError("--resume auto needs training.checkpoint_dir (or --checkpoint-dir)")
                }
                resume = try CheckpointStore(directory: URL(fileURLWithPath: dir))
                    .latestVerified(as: TrainConfig.self, warn: { Console.out("--resume auto: " + $0) })?.path
                if resume == nil { Console.out("--resume auto: no checkpoint in \(dir) yet; starting from the beginning") }
            }
            let stop = StopFlag(), config = cfg, resumeFrom = resume
            // Ctrl-C or SIGTERM: the run checkpoints at the next update boundary and exits 130.
            let code = try await runAsService("train", body: {
                let trainer = try Trainer(config: config)
                Console.out("compute: \(GEMM.summary(backend: config.training.gemm, precision: config.training.precision.rawValue)), \(config.training.threads) thread(s)")
                if let resumeFrom {
                    try trainer.resume(from: URL(fileURLWithPath: resumeFrom))
                    Console.out("resumed at step \(trainer.step) from \(resumeFrom)")
                }
                var run = TrainingRun(trainer: trainer, output: Console.out)
                run.shouldStop = { stop.isRaised }
                return try run.run() == .finished ? 0 : 130
            }, stop: { stop.raise() })
            if code != 0 { throw ExitCode(code) }
        }
    }
}
