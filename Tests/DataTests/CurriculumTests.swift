import Data
import Foundation
import Testing

/// Curriculum learning (spec §6.1): documents sorted by difficulty, stages opening at steps.
@Suite struct CurriculumTests {
    /// Document d of `lengths` holds tokens 1000·(d+1) + i, so every token names its document.
    static func documents(_ lengths: [Int]) -> [[Int32]] {
        lengths.enumerated().map { d, n in (0..<n).map { Int32(1000 * (d + 1) + $0) } }
    }
    static func document(of token: Int32) -> Int { Int(token) / 1000 - 1 }

    static func stages(_ pairs: [(Double?, Int)]) -> [CurriculumStage] { pairs.map { CurriculumStage(maxDifficulty: $0.0, opensAt: $0.1) } }

    /// The documents written to `shards` shard files (round-robin in blocks), mapped back.
    static func mapped(_ docs: [[Int32]], shards: Int = 2) throws -> (dir: URL, shards: [TokenShard]) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zt-curriculum-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let per = (docs.count + shards - 1) / shards
        var out: [TokenShard] = []
        for s in 0..<shards {
            let path = dir.appendingPathComponent(String(format: "train-%05d.zts", s)).path
            let w = try TokenShardWriter(path: path, vocabularySize: 65_536, eos: nil)
            for d in docs[(s * per)..<min(docs.count, (s + 1) * per)] { try w.append(document: d) }
            try w.finish()
            out.append(try TokenShard(path: path))
        }
        return (dir, out)
    }

    @Test func planSortsByDifficultyAndCutsTheStages() throws {
        let docs = Self.documents([50, 10, 30, 20, 40])
        let (order, plan) = try CurriculumPlan.sort(difficulty: docs.map { Double($0.count) }, lengths: docs.map(\.count),
                                                    stages: Self.stages([(20, 0), (40, 10), (nil, 30)]), seqLen: 8)
        // Lengths 10, 20 | 30, 40 | 50, in that order.
        #expect(order == [1, 3, 2, 4, 0])
        #expect(plan.tokens == [30, 100, 150])
        #expect(plan.opensAt == [0, 10, 30])
        #expect(plan.stage(atStep: 0) == 0 && plan.stage(atStep: 9) == 0 && plan.stage(atStep: 10) == 1 && plan.stage(atStep: 500) == 2)
        // The mapped stream (documents over two shard files) follows the order, across files.
        let (dir, shards) = try Self.mapped(docs)
        defer { try? FileManager.default.removeItem(at: dir) }
        let stream = MappedTokens(shards: shards, documentOrder: order)
        #expect(stream.count == 150)
        #expect(stream.tokens(0..<150) == order.flatMap { docs[$0] })
        #expect(stream.tokens(25..<35) == Array(order.flatMap { docs[$0] }[25..<35]))
        #expect(MappedTokens(shards: shards).tokens(0..<150) == docs.flatMap { $0 })
        // A last stage with a ceiling leaves the harder documents out; ties keep file order.
        let (capped, cappedPlan) = try CurriculumPlan.sort(difficulty: [1, 1, 5], lengths: [10, 10, 99], stages: Self.stages([(1, 0), (2, 5)]), seqLen: 4)
        #expect(capped == [0, 1] && cappedPlan.tokens == [20, 20])
        // A stage too small for one sequence is an error that says what to change.
        #expect { try CurriculumPlan.sort(difficulty: docs.map { Double($0.count) }, lengths: docs.map(\.count),
                                          stages: Self.stages([(10, 0), (nil, 5)]), seqLen: 16) } throws: {
            ($0 as? DataError)?.message.contains("stages[0]: holds 10 tokens") == true
        }
    }

    @Test func theSamplerDrawsOnlyFromOpenStages() throws {
        let lengths = (0..<40).map { 20 + 7 * (($0 * 13) % 40) }  // 20 … 293 tokens, shuffled
        let docs = Self.documents(lengths)
        let (order, plan) = try CurriculumPlan.sort(difficulty: lengths.map(Double.init), lengths: lengths,
                                                    stages: Self.stages([(100, 0), (200, 20), (nil, 40)]), seqLen: 16)
        let (dir, shards) = try Self.mapped(docs, shards: 3)
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = TokenSource.mapped(MappedTokens(shards: shards, documentOrder: order), plan: plan)
        let sampler = try BatchSampler(source: source, seqLen: 16, batchSize: 4, accumulation: 2, seed: 9)
        var seenByStage = [Set<Int>](repeating: [], count: 3)
        for step in 0..<80 {
            let k = plan.stage(atStep: step)
            for micro in 0..<2 {
                let b = sampler.batch(step: step, micro: micro)
                #expect(Array(b.targets.prefix(15)) == Array(b.inputs[1..<16]))
                for t in b.inputs + b.targets {
                    let d = Self.document(of: t)
                    #expect(Double(lengths[d]) <= [100, 200, .infinity][k], "step \(step): document of length \(lengths[d]) in stage \(k)")
                    seenByStage[k].insert(d)
                }
            }
        }
        // Each stage reaches its harder documents once open.
        #expect(seenByStage[1].contains { lengths[$0] > 100 })
        #expect(seenByStage[2].contains { lengths[$0] > 200 })
        // The same seed gives the same batches; the order depends only on the sample index, so a
        // sampler resumed at step 30 (origin: its samples consumed) continues identically.
        let again = try BatchSampler(source: source, seqLen: 16, batchSize: 4, accumulation: 2, seed: 9)
        again.origin = (30, sampler.position(step: 30))
        for step in 30..<50 { #expect(again.batch(step: step, micro: 1) == sampler.batch(step: step, micro: 1)) }
        // Without a plan, mapped shards sample exactly like the same tokens in memory.
        let plain = try BatchSampler(source: .mapped(MappedTokens(shards: shards), plan: nil), seqLen: 16, batchSize: 4, accumulation: 2, seed: 9)
        let memory = try BatchSampler(source: .stream(docs.flatMap { $0 }), seqLen: 16, batchSize: 4, accumulation: 2, seed: 9)
        for step in [0, 7, 300] { #expect(plain.batch(step: step, micro: 1) == memory.batch(step: step, micro: 1)) }
    }

    @Test func configRulesAreCheckedWithTheirPath() throws {
        var data = DataConfig()
        data.source = "text"
        data.path = "x.txt"
        var c = CurriculumConfig()
        c.stages = Self.stages([(10, 0), (nil, 5)])
        data.curriculum = c
        #expect { try data.validate() } throws: { ($0 as? DataError)?.message.contains("data.curriculum: needs source shards") == true }
        data.source = "shards"
        try data.validate()
        let bad: [([(Double?, Int)], String)] = [
            ([], "stages: name at least one stage"),
            ([(10, 3)], "stages[0].opens_at: the first stage must open at step 0"),
            ([(10, 0), (20, 0)], "stages[1].opens_at: stages must open at increasing steps"),
            ([(nil, 0), (20, 5)], "stages[0].max_difficulty: only the last stage may leave it out"),
            ([(10, 0), (5, 5)], "stages[1].max_difficulty: must grow"),
        ]
        for (stages, message) in bad {
            data.curriculum!.stages = Self.stages(stages)
            #expect { try data.validate() } throws: { ($0 as? DataError)?.message.contains(message) == true }
        }
        data.curriculum!.stages = Self.stages([(10, 0)])
        data.curriculum!.difficulty = "perplexity"
        #expect { try data.validate() } throws: { ($0 as? DataError)?.message.contains("difficulty: must be length or score") == true }
    }

    @Test func shardsWithScoresLoadInScoreOrder() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zt-curriculum-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let shard = dir.appendingPathComponent("train-00000.zts").path
        let w = try TokenShardWriter(path: shard, vocabularySize: 70_000, eos: nil)
        let docs = Self.documents([12, 12, 12, 12])
        for d in docs { try w.append(document: d) }
        try w.finish()
        var data = DataConfig()
        data.source = "shards"
        data.path = dir.path
        data.seqLen = 8
        var c = CurriculumConfig()
        c.difficulty = "score"
        c.stages = Self.stages([(0.5, 0), (nil, 10)])
        data.curriculum = c
        #expect { try TokenSource.load(data) } throws: { ($0 as? DataError)?.message.contains("no difficulty file") == true }
        let side = DifficultyFile.path(forShard: shard)
        #expect(side.hasSuffix("train-00000.difficulty"))
        try DifficultyFile.write([0.9, 0.1, 0.7, 0.3], to: side)
        guard case .mapped(let stream, let plan?) = try TokenSource.load(data) else { Issue.record("not a curriculum source"); return }
        #expect(plan.tokens == [24, 48])
        #expect([0, 12, 24, 36].map { Self.document(of: stream.tokens($0..<($0 + 1))[0]) } == [1, 3, 2, 0])
        // A sidecar of another shard, or a damaged one, is refused.
        try DifficultyFile.write([0.1, 0.2], to: side)
        #expect { try TokenSource.load(data) } throws: { ($0 as? DataError)?.message.contains("holds 2 values; its shard has 4 documents") == true }
        try DifficultyFile.write([0.9, 0.1, 0.7, 0.3], to: side)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: side))
        bytes[40] ^= 0x10
        try bytes.write(to: URL(fileURLWithPath: side))
        #expect { try TokenSource.load(data) } throws: { ($0 as? DataError)?.message.contains("checksum mismatch") == true }
    }
}
