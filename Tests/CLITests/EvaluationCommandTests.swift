import Checkpoint
import Data
import Evaluation
import Foundation
import Model
import Telemetry
import Testing
import Training
import ZeroTrainTestKit

/// Validation during a real local-cluster job (`training.eval_interval`, `data.validation_fraction`)
/// and `zerotrain eval` on a checkpoint.
@Suite(.serialized) struct EvaluationCommandTests {
    static let qualityTags: Set<String> = ["quality/validation_loss", "quality/perplexity", "quality/next_token_accuracy"]

    /// 8192 bytes of the built-in corpus in lower case without "z", then 1024 bytes of "Z": a
    /// validation fraction of 1/9 holds out exactly the Zs.
    static func markedText() -> String {
        String(BuiltinCorpus.text(bytes: 16_384).lowercased().filter { $0 != "z" }.prefix(8192)) + String(repeating: "Z", count: 1024)
    }
    static let marker = Int32(UInt8(ascii: "Z"))

    static func config(data: URL, accumulation: Int, steps: Int = 6, checkpoints: URL? = nil) -> String {
        """
        model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 2, max_seq_len: 64}
        training: {lr: 0.003, warmup_steps: 2, total_steps: \(steps), micro_batch_size: 2, gradient_accumulation_steps: \(accumulation), threads: 1, log_interval: 50, checkpoint_interval: 0, eval_interval: 3, eval_sequences: 9\(checkpoints.map { ", checkpoint_dir: \($0.path)" } ?? "")}
        data: {source: text, path: \(data.path), seq_len: 32, validation_fraction: \(1.0 / 9)}
        cluster: {heartbeat_interval_ms: 200, heartbeat_timeout_ms: 5000}
        """
    }

    /// Trains a teacher (`model` as YAML flow mappings' contents) into root/teacher; returns its
    /// checkpoint folder and config file.
    func teacher(_ root: URL, model: String, steps: Int, warmup: Int) throws -> (directory: URL, config: URL) {
        let directory = root.appendingPathComponent("teacher"), config = root.appendingPathComponent("teacher.yaml")
        try CLI.write("""
            model: {\(model), max_seq_len: 64}
            training: {lr: 0.003, warmup_steps: \(warmup), total_steps: \(steps), micro_batch_size: 4, threads: 1, checkpoint_dir: \(directory.path)}
            data: {seq_len: 32}
            """, to: config)
        let trained = try CLI.run(["train", "--config", config.path])
        try #require(trained.status == 0, "\(trained.stderr)")
        return (directory, config)
    }

    func local(_ root: URL, _ label: String, _ config: String, workers: Int) throws -> URL {
        let file = root.appendingPathComponent("\(label).yaml")
        try CLI.write(config, to: file)
        let run = root.appendingPathComponent(label)
        let r = try CLI.run(["local", "--config", file.path, "--workers", String(workers), "--run-dir", run.path])
        try #require(r.status == 0, "\(label): \(r.stderr)")
        return run
    }

    @Test func validationIsReportedByTheClusterOnHeldOutTokens() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let data = root.appendingPathComponent("marked.txt")
        try CLI.write(Self.markedText(), to: data)
        let two = try local(root, "w2", Self.config(data: data, accumulation: 1), workers: 2)

        // The coordinator's token file: training tokens without a single held-out one.
        let file = try SafeTensorsFile(contentsOf: two.appendingPathComponent("tokens.safetensors"))
        let train = try file.int32s("tokens"), validation = try file.int32s("validation")
        #expect(train.count == 8192 && !train.contains(Self.marker))
        #expect(validation == Array(repeating: Self.marker, count: 1024))

        // metrics.jsonl: the quality scalars after updates 3 and 6 only, 9 sequences of 32 tokens.
        let records = try String(contentsOf: two.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
            .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        #expect(records.count == 6)
        var reported: [Int: [String: Double]] = [:]
        for r in records {
            let scalars = try #require(r["scalars"] as? [String: Double])
            let quality = scalars.filter { Self.qualityTags.contains($0.key) }
            if !quality.isEmpty {
                reported[r["step"] as! Int] = quality
                #expect(r["validation_tokens"] as? Int == 9 * 32)
                #expect(abs((r["validation_loss"] as! Double) - quality["quality/validation_loss"]!) <= 1e-12)
            }
        }
        #expect(reported.keys.sorted() == [2, 5])
        for (step, q) in reported {
            #expect(Set(q.keys) == Self.qualityTags, "step \(step)")
            #expect(abs(q["quality/perplexity"]! - exp(q["quality/validation_loss"]!)) <= 1e-9 * q["quality/perplexity"]!)
            #expect(q["quality/next_token_accuracy"]! >= 0 && q["quality/next_token_accuracy"]! <= 1)
        }
        // The TensorBoard event file has the same tags at the same steps.
        let names = try FileManager.default.contentsOfDirectory(atPath: two.path).filter { $0.contains("tfevents") }
        let events = try EventFileWriter.read(path: two.appendingPathComponent(try #require(names.first)).path).dropFirst()
        let withQuality = events.filter { e in e.scalars.contains { Self.qualityTags.contains($0.tag) } }
        #expect(withQuality.map(\.step) == [2, 5])
        for e in withQuality {
            let loss = try #require(e.scalars.first { $0.tag == "quality/validation_loss" }?.value)
            #expect(loss == Float(reported[Int(e.step)]!["quality/validation_loss"]!))
        }

        // One worker with the job's global batch reports the same validation loss.
        let one = try local(root, "w1", Self.config(data: data, accumulation: 2), workers: 1)
        let oneRecords = try String(contentsOf: one.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
            .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        #expect(oneRecords.filter { $0["validation_loss"] != nil }.count == 2)
        for r in oneRecords {
            guard let loss = r["validation_loss"] as? Double else { continue }
            let theirs = try #require(reported[r["step"] as! Int]?["quality/validation_loss"])
            #expect(abs(loss - theirs) <= 1e-5 * theirs, "step \(r["step"]!): \(loss) vs \(theirs)")
        }

        // At ZeRO stage 3 every rank's evaluation forward gathers the parameters; the same figures.
        let stage3 = try local(root, "w2-s3", Self.config(data: data, accumulation: 1) + "\nzero: {stage: 3}\n", workers: 2)
        let s3 = try String(contentsOf: stage3.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
            .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        #expect(s3.filter { $0["validation_loss"] != nil }.count == 2)
        for r in s3 {
            guard let loss = r["validation_loss"] as? Double else { continue }
            let theirs = try #require(reported[r["step"] as! Int]?["quality/validation_loss"])
            #expect(abs(loss - theirs) <= 1e-5 * theirs, "stage 3, step \(r["step"]!): \(loss) vs \(theirs)")
        }
    }

    /// TensorBoard's own reader (scripts/check_tensorboard.py) finds the quality tags at the evaluated steps.
    @Test(.enabled(if: Python.hasTensorBoard, "needs Python with tensorboard: set ZEROTRAIN_PYTHON"))
    func tensorBoardReadsTheQualityTags() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let data = root.appendingPathComponent("marked.txt")
        try CLI.write(Self.markedText(), to: data)
        let run = try local(root, "tb", Self.config(data: data, accumulation: 1), workers: 2)
        let r = Python.run(["scripts/check_tensorboard.py", run.path])
        #expect(r.status == 0, "\(r.output)")
        let json = try #require(r.output.split(separator: "\n").last)
        let read = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: [Int]])
        for tag in Self.qualityTags { #expect(read[tag] == [2, 5], "\(tag): \(read[tag] ?? [])") }
        #expect(read["train/loss"] == Array(0..<6))
    }

    @Test func evalCommandScoresACheckpoint() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let data = root.appendingPathComponent("marked.txt")
        try CLI.write(Self.markedText(), to: data)
        let checkpoints = root.appendingPathComponent("ck")
        let cfg = root.appendingPathComponent("train.yaml")
        try CLI.write(Self.config(data: data, accumulation: 1, steps: 6, checkpoints: checkpoints)
            .replacingOccurrences(of: "eval_interval: 3", with: "eval_interval: 6"), to: cfg)
        let trained = try CLI.run(["train", "--config", cfg.path])
        try #require(trained.status == 0, "\(trained.stderr)")
        let metrics = try String(contentsOf: checkpoints.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
        let last = try JSONDecoder().decode(StepMetricsProbe.self, from: Data(try #require(metrics.last).utf8))

        // LM metrics on the held-out Zs equal the run's last validation (same windows, same weights).
        let zs = root.appendingPathComponent("zs.txt")
        try CLI.write(String(repeating: "Z", count: 1024), to: zs)
        let lm = try CLI.run(["eval", "--checkpoint", checkpoints.path, "--data", zs.path, "--max-sequences", "9", "--json"])
        try #require(lm.status == 0, "\(lm.stderr)")
        let lmResult = try JSONSerialization.jsonObject(with: Data(lm.stdout.utf8)) as! [String: Double]
        #expect(lmResult["tokens"] == 9 * 32 && lmResult["sequences"] == 9)
        #expect(abs(lmResult["loss"]! - last.validation_loss) <= 1e-5 * last.validation_loss, "\(lmResult) vs \(last.validation_loss)")
        #expect(abs(lmResult["perplexity"]! - exp(lmResult["loss"]!)) <= 1e-9 * lmResult["perplexity"]!)

        // Task metrics: greedy answers to prompts, scored against references; the figures are the
        // metrics of the predictions written out.
        let tasks = root.appendingPathComponent("tasks.jsonl")
        try CLI.write("""
            {"prompt": "the old king sees ", "reference": "the golden crown"}
            {"prompt": "a hungry fox ", "references": ["follows a letter", "finds the open door"]}
            {"prompt": "the queen loves ", "reference": "an honest friend"}

            """, to: tasks)
        let predictions = root.appendingPathComponent("predictions.jsonl")
        let task = try CLI.run(["eval", "--checkpoint", checkpoints.path, "--data", tasks.path, "--max-new-tokens", "12", "--stop", ".",
                                "--predictions", predictions.path, "--json"])
        try #require(task.status == 0, "\(task.stderr)")
        let taskResult = try JSONSerialization.jsonObject(with: Data(task.stdout.utf8)) as! [String: Double]
        let written = try String(contentsOf: predictions, encoding: .utf8).split(separator: "\n")
            .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        #expect(written.count == 3 && taskResult["pairs"] == 3)
        let scores = TaskScores(predictions: written.map { $0["prediction"] as! String }, references: written.map { $0["references"] as! [String] })
        #expect(abs(taskResult["exact_match"]! - scores.exactMatch) < 1e-9 && abs(taskResult["f1"]! - scores.f1) < 1e-9)
        #expect(abs(taskResult["bleu"]! - scores.bleu.score) < 1e-9)
        #expect(written.allSatisfy { ($0["prediction"] as! String).count <= 12 })
    }

    struct StepMetricsProbe: Decodable { let validation_loss: Double }

    func expectExit2(_ args: [String], mentions text: String) throws {
        let r = try CLI.run(args)
        #expect(r.status == 2, "exit \(r.status) for \(args): \(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1 && r.stderr.hasPrefix("zerotrain: error: ") && r.stderr.contains(text),
                "stderr: \(r.stderr)")
    }

    /// Distillation on the cluster: 2 workers equal 1 worker with the same global batch, and the
    /// teacher (a checkpoint of a wider model) changes the losses.
    @Test func distillationOnTheClusterTwoWorkersEqualOne() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let teacherDir = try teacher(root, model: "num_layers: 2, hidden_size: 48, num_attention_heads: 4", steps: 10, warmup: 2).directory
        func student(_ accumulation: Int, teacher: Bool) -> String {
            """
            model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 2, max_seq_len: 64}
            training: {lr: 0.003, warmup_steps: 2, total_steps: 5, micro_batch_size: 2, gradient_accumulation_steps: \(accumulation), threads: 1, checkpoint_interval: 0\(teacher ? ", distillation: {teacher: \(teacherDir.path), temperature: 2, alpha: 0.7}" : "")}
            data: {seq_len: 32}
            cluster: {heartbeat_interval_ms: 200, heartbeat_timeout_ms: 5000}
            """
        }
        func losses(_ run: URL) throws -> [Double] {
            try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
                .map { (try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any])["loss"] as! Double }
        }
        let two = try losses(local(root, "d2", student(1, teacher: true), workers: 2))
        let one = try losses(local(root, "d1", student(2, teacher: true), workers: 1))
        let plain = try losses(local(root, "p1", student(2, teacher: false), workers: 1))
        #expect(two.count == 5 && one.count == 5 && plain.count == 5)
        for (x, y) in zip(two, one) { #expect(abs(x - y) <= 1e-5 * abs(y), "\(x) vs \(y)") }
        #expect(zip(one, plain).allSatisfy { $0 != $1 }, "the teacher changed nothing: \(one) vs \(plain)")
    }

    /// A teacher sharded with ZeRO-3 across the 2 workers (the default at zero.stage 3) gives the
    /// losses of the whole teacher on every rank bit for bit (its gathered regions hold the same
    /// values), and each rank's ledger holds about half the teacher's fp32 weights instead of all.
    @Test func aShardedTeacherEqualsTheWholeTeacherWithHalfItsWeights() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let (teacherDir, teacherConfig) = try teacher(root, model: "num_layers: 3, hidden_size: 64, num_attention_heads: 4", steps: 3, warmup: 1)
        let teacherParameters = ParameterTable(config: try TrainConfig.parse(text: String(contentsOf: teacherConfig, encoding: .utf8)).model).count
        func student(shard: String) -> String {
            """
            model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 2, max_seq_len: 64}
            training: {lr: 0.003, warmup_steps: 2, total_steps: 4, micro_batch_size: 2, threads: 1, checkpoint_interval: 0, distillation: {teacher: \(teacherDir.path), temperature: 2, alpha: 0.7\(shard)}}
            data: {seq_len: 32}
            zero: {stage: 3, param_persistence_threshold: 0}
            cluster: {heartbeat_interval_ms: 200, heartbeat_timeout_ms: 5000}
            """
        }
        let sharded = try local(root, "sharded", student(shard: ""), workers: 2)
        let whole = try local(root, "whole", student(shard: ", shard: false"), workers: 2)
        func records(_ run: URL) throws -> [[String: Any]] {
            try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
                .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        }
        let (a, b) = (try records(sharded), try records(whole))
        #expect(a.count == 4 && b.count == 4)
        for (x, y) in zip(a, b) {
            let (lx, ly) = (x["loss"] as! Double, y["loss"] as! Double)
            #expect(lx.bitPattern == ly.bitPattern, "sharded teacher: loss \(lx), whole teacher: \(ly)")
        }
        func peaks(_ record: [String: Any]) -> [[String: Int]] {
            (record["memory_per_rank"] as! [[String: Any]]).map { $0["peak"] as! [String: Int] }
        }
        let (small, large) = (peaks(a.last!), peaks(b.last!))
        #expect(small.count == 2 && large.count == 2)
        for (s, l) in zip(small, large) {
            // The whole teacher is 4 bytes per parameter in `params`; sharded, half of it (± the
            // ring's rounding), its regions entered in `gathered` while they are in use.
            let saved = Double((l["params"] ?? 0) - (s["params"] ?? 0)), half = 4.0 * Double(teacherParameters) / 2
            #expect(abs(saved - half) <= 0.02 * half, "params saved by sharding: \(saved), expected ≈ \(half)")
            #expect((s["gathered"] ?? 0) > (l["gathered"] ?? 0), "sharded \(s) vs whole \(l)")
        }
    }

    /// A distillation teacher with another vocabulary (the reference dense model's 64 tokens
    /// against the byte-level student's 256) stops `train` and `local` at once.
    @Test func teacherWithAnotherVocabularyIsExit2() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let cfg = root.appendingPathComponent("c.yaml")
        try CLI.write("""
            model: {num_layers: 1, hidden_size: 16, num_attention_heads: 2, max_seq_len: 16}
            training: {total_steps: 1, warmup_steps: 0, micro_batch_size: 1, threads: 1, distillation: {teacher: \(Fixtures.reference("dense").path), temperature: 2, alpha: 0.5}}
            data: {seq_len: 8}
            """, to: cfg)
        try expectExit2(["train", "--config", cfg.path], mentions: "has a vocabulary of 64 tokens, the student 256")
        try expectExit2(["local", "--config", cfg.path, "--workers", "1", "--run-dir", root.appendingPathComponent("run").path],
                        mentions: "share one vocabulary")
    }

    @Test func badEvalInputs() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let ck = root.appendingPathComponent("ck")
        let cfg = root.appendingPathComponent("c.yaml")
        try CLI.write("""
            model: {num_layers: 1, hidden_size: 16, num_attention_heads: 2, max_seq_len: 16}
            training: {total_steps: 1, warmup_steps: 0, micro_batch_size: 1, threads: 1, checkpoint_dir: \(ck.path)}
            data: {seq_len: 8}
            """, to: cfg)
        try #require(try CLI.run(["train", "--config", cfg.path]).status == 0)
        let missing = root.appendingPathComponent("missing.jsonl")
        try CLI.write("{\"prompt\": \"q\", \"reference\": \"a\"}\n{\"prompt\": \"q2\"}\n", to: missing)
        try expectExit2(["eval", "--checkpoint", ck.path, "--data", missing.path], mentions: "missing.jsonl:2: no field \"reference\"")
        let noPrompt = root.appendingPathComponent("noprompt.jsonl")
        try CLI.write("{\"question\": \"q\", \"reference\": \"a\"}\n", to: noPrompt)
        try expectExit2(["eval", "--checkpoint", ck.path, "--data", noPrompt.path], mentions: "noprompt.jsonl:1: no string field \"prompt\"")
        let ok = root.appendingPathComponent("ok.jsonl")
        try CLI.write("{\"prompt\": \"q\", \"reference\": \"a\"}\n", to: ok)
        try expectExit2(["eval", "--checkpoint", ck.path, "--data", ok.path, "--smooth", "laplace"], mentions: "unknown BLEU smoothing \"laplace\"")
        try expectExit2(["eval", "--checkpoint", ck.path, "--data", ok.path, "--format", "csv"], mentions: "--format must be")
        try expectExit2(["eval", "--checkpoint", root.appendingPathComponent("none").path, "--data", ok.path], mentions: "none")
        let tiny = root.appendingPathComponent("tiny.txt")
        try CLI.write("abc", to: tiny)
        try expectExit2(["eval", "--checkpoint", ck.path, "--data", tiny.path], mentions: "one sequence needs seq_len + 1")
    }
}
