import Checkpoint
import Data
import Foundation
import Model
import Tensor
import Testing
import ZeroTrainTestKit
import Training

/// The train_dense reference: 8 AdamW steps with cosine warmup, clipping and 2-step accumulation.
@Suite struct ReferenceTrainingTests {
    struct Log: Decodable { let step: Int; let loss: Double; let lr: Double; let grad_norm: Double }
    struct Reference: Decodable { let log: [Log] }

    static func referenceConfig() throws -> TrainConfig {
        let dir = Fixtures.reference("train_dense")
        var config = try TrainConfig.load(path: dir.appendingPathComponent("config.json").path)
        config.training.optim.lr = 0.03
        config.training.optim.betas = [0.9, 0.95]
        config.training.optim.eps = 1e-8
        config.training.optim.weightDecay = 0.1
        config.training.optim.warmupSteps = 2
        config.training.optim.numCycles = 0.5
        config.training.optim.gradClip = 1.0
        config.training.totalSteps = 8
        config.training.microBatchSize = 2
        config.training.gradientAccumulationSteps = 2
        config.training.threads = 2
        config.training.initFrom = dir.path
        config.data.source = "tokens"
        config.data.path = dir.appendingPathComponent("batch.safetensors").path
        config.data.seqLen = 16
        return config
    }

    @Test func trajectoryMatchesPyTorch() throws {
        let dir = Fixtures.reference("train_dense")
        let reference = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: dir.appendingPathComponent("train.json")))
        let trainer = try Trainer(config: try Self.referenceConfig())
        for expected in reference.log {
            let m = try trainer.trainStep()
            #expect(m.step == expected.step)
            #expect(abs(Double(m.loss) - expected.loss) <= 1e-4, "step \(m.step): loss \(m.loss) vs \(expected.loss)")
            #expect(abs(m.lr - expected.lr) <= 1e-9 * max(1, expected.lr), "step \(m.step): lr \(m.lr) vs \(expected.lr)")
            #expect(abs(m.gradNorm - expected.grad_norm) <= 1e-4 * expected.grad_norm, "step \(m.step): grad_norm \(m.gradNorm) vs \(expected.grad_norm)")
        }
        let final = try SafeTensorsFile(contentsOf: dir.appendingPathComponent("final.safetensors"))
        for e in trainer.model.table.entries {
            let ref = try final.floats(e.name)
            var worst: Float = 0
            for (x, y) in zip(trainer.model.parameters.slice(e.offset, e.count), ref) { worst = max(worst, abs(x - y)) }
            #expect(worst <= 1e-4, "final \(e.name): max abs error \(worst)")
        }
    }

    /// `training.init_from` a sharded Hugging Face folder (index + shard files) starts from the
    /// same parameters as from the single file, and trains identically.
    @Test func initFromAShardedFolderEqualsTheSingleFile() throws {
        let sharded = FileManager.default.temporaryDirectory.appendingPathComponent("zt-init-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: sharded) }
        let source = Fixtures.reference("train_dense")
        let model = try CheckpointStore.huggingFaceConfig(source)
        let weights = try HuggingFaceFolder(source)
        let files = try HuggingFaceExport.write(model: model, table: ParameterTable(config: model), to: sharded, dtype: .f32,
                                                maxShardBytes: 4096) { try weights.read($0, into: $1) }
        #expect(files.count > 4)
        var config = try Self.referenceConfig()
        let single = try Trainer(config: config)
        config.training.initFrom = sharded.path
        let split = try Trainer(config: config)
        #expect(single.model.parameters.toArray() == split.model.parameters.toArray())
        for _ in 0..<2 { #expect(try single.trainStep().loss == split.trainStep().loss) }
    }
}
