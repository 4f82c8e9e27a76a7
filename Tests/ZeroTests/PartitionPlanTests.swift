import Comm
import Foundation
import Model
import Testing
import Training
@testable import Zero

/// Small models the plans are checked on: dense, MoE with layernorm and tied embeddings.
enum Models {
    static func dense(layers: Int = 2, hidden: Int = 64, heads: Int = 4, vocab: Int = 256) -> ModelConfig {
        var c = ModelConfig.defaults
        c.numLayers = layers
        c.hiddenSize = hidden
        c.numAttentionHeads = heads
        c.vocabSize = vocab
        return c
    }

    static var moe: ModelConfig {
        var c = dense(layers: 2, hidden: 32, heads: 4, vocab: 300)
        c.moeConfig = ModelConfig.MoEConfig(numExperts: 4, topK: 2, numSharedExperts: 1)
        c.norm = "layernorm"
        c.tieEmbeddings = true
        return c
    }

    static func load(_ name: String) throws -> ModelConfig {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return try TrainConfig.load(path: repo.appendingPathComponent("configs/\(name)").path).model
    }
}

@Suite struct PartitionPlanTests {
    /// Every flat element is in exactly one piece, each piece lies inside its shard at the right
    /// place, and the shards are RingLayout's.
    func checkCoverage(_ plan: PartitionPlan) throws {
        try plan.validate()
        var seen = [UInt8](repeating: 0, count: plan.totalCount)
        for t in plan.tensors {
            var next = 0
            for p in t.pieces {
                #expect(p.offsetInTensor == next)
                let s = RingLayout.shardRange(count: plan.totalCount, rank: p.shard, worldSize: plan.worldSize)
                #expect(p.offsetInShard >= 0 && p.offsetInShard + p.count <= s.count)
                #expect(s.lowerBound + p.offsetInShard == t.offset + p.offsetInTensor)
                for e in (t.offset + p.offsetInTensor)..<(t.offset + p.offsetInTensor + p.count) { seen[e] += 1 }
                next += p.count
            }
            #expect(next == t.count, "\(t.name)")
            let shards = t.pieces.map(\.shard)
            #expect(shards == shards.sorted() && Set(shards).count == shards.count, "\(t.name): one piece per shard, ascending")
        }
        #expect(seen.allSatisfy { $0 == 1 }, "every element covered exactly once")
        for r in 0..<plan.worldSize {
            #expect(plan.shardRange(r) == RingLayout.shardRange(count: plan.totalCount, rank: r, worldSize: plan.worldSize))
        }
    }

    @Test(arguments: [1, 2, 3, 4, 7, 64, 1000])
    func denseModelCoveredExactlyOnce(worldSize: Int) throws {
        let table = ParameterTable(config: Models.dense())
        let plan = PartitionPlan(table: table, worldSize: worldSize)
        #expect(plan.totalCount == table.count && plan.tensors.count == table.entries.count)
        try checkCoverage(plan)
        try plan.validate(against: table)
    }

    @Test(arguments: [1, 3, 5, 16])
    func moeModelCoveredExactlyOnce(worldSize: Int) throws {
        let table = ParameterTable(config: Models.moe)
        try checkCoverage(PartitionPlan(table: table, worldSize: worldSize))
    }

    /// Pieces copied out of the shards reassemble each tensor bit for bit.
    @Test(arguments: [1, 2, 5, 13])
    func piecesReassembleTensors(worldSize: Int) throws {
        let table = ParameterTable(config: Models.dense(layers: 3, hidden: 32, heads: 2, vocab: 100))
        let plan = PartitionPlan(table: table, worldSize: worldSize)
        let flat = (0..<table.count).map { Float($0) * 0.5 - 7 }
        let shards = (0..<worldSize).map { Array(flat[plan.shardRange($0)]) }
        for e in table.entries {
            let t = try #require(plan.placement(named: e.name))
            var rebuilt = [Float](repeating: .nan, count: t.count)
            for p in t.pieces {
                for i in 0..<p.count { rebuilt[p.offsetInTensor + i] = shards[p.shard][p.offsetInShard + i] }
            }
            #expect(rebuilt == Array(flat[e.offset..<(e.offset + e.count)]), "\(e.name)")
        }
    }

    /// More ranks than elements in some tensors (and than all of them): tiny tensors land in one
    /// shard, big ones straddle many, and surplus ranks get empty shards.
    @Test func moreRanksThanTensorElements() throws {
        let tensors: [(name: String, shape: [Int])] = [("a", [3]), ("b", [10, 100]), ("c", [2]), ("empty", [0, 4]), ("d", [1])]
        for n in [16, 500, 1006, 1007, 5000] {
            let plan = PartitionPlan(tensors: tensors, worldSize: n)
            try checkCoverage(plan)
            #expect(plan.placement(named: "empty")?.pieces.isEmpty == true)
            let b = try #require(plan.placement(named: "b"))
            #expect(b.pieces.count > 1, "a 1000-element tensor straddles shards at N = \(n)")
            if n > plan.totalCount {
                #expect(plan.shardRange(n - 1).isEmpty)
                #expect(plan.contents(ofShard: n - 1).isEmpty)
                #expect(plan.largestShardCount == 1)
            }
        }
    }

    @Test func oneRankHoldsEverythingInPlace() throws {
        let table = ParameterTable(config: Models.moe)
        let plan = PartitionPlan(table: table, worldSize: 1)
        try checkCoverage(plan)
        for (t, e) in zip(plan.tensors, table.entries) {
            #expect(t.pieces == [PartitionPlan.Piece(shard: 0, offsetInShard: e.offset, offsetInTensor: 0, count: e.count)])
        }
        #expect(plan.shardRange(0) == 0..<table.count)
    }

    /// `contents(ofShard:)` lists exactly the pieces of that shard, in shard order, tiling it.
    @Test(arguments: [1, 4, 9])
    func shardContentsTileTheShard(worldSize: Int) throws {
        let plan = PartitionPlan(table: ParameterTable(config: Models.dense()), worldSize: worldSize)
        for r in 0..<worldSize {
            var next = 0
            for (ti, p) in plan.contents(ofShard: r) {
                #expect(p.shard == r && p.offsetInShard == next)
                #expect(plan.tensors[ti].pieces.contains(p))
                next += p.count
            }
            #expect(next == plan.shardRange(r).count)
            for e in plan.shardRange(r) where e % 97 == 0 { #expect(plan.shard(ofElement: e) == r) }
        }
    }

    @Test func allocationIsAlignedAndCoversTheLargestShard() {
        for (total, n) in [(100, 3), (16, 1), (17, 16), (1_000_003, 8)] {
            let plan = PartitionPlan(tensors: [("x", [total])], worldSize: n)
            #expect(plan.largestShardCount == plan.shardRange(0).count)
            #expect(plan.allocationCount % PartitionPlan.alignment == 0)
            #expect(plan.allocationCount >= plan.largestShardCount && plan.allocationCount - plan.largestShardCount < PartitionPlan.alignment)
        }
    }

    @Test func codableRoundTripAndTamperDetection() throws {
        let table = ParameterTable(config: Models.dense())
        let plan = PartitionPlan(table: table, worldSize: 3)
        let data = try JSONEncoder().encode(plan)
        let back = try JSONDecoder().decode(PartitionPlan.self, from: data)
        #expect(back == plan)
        try back.validate(against: table)

        // A plan for another world size or model is refused.
        var json = try #require(String(data: data, encoding: .utf8))
        json = json.replacingOccurrences(of: "\"worldSize\":3", with: "\"worldSize\":4")
        let tampered = try JSONDecoder().decode(PartitionPlan.self, from: Data(json.utf8))
        #expect(throws: ZeroError.self) { try tampered.validate() }
        let other = ParameterTable(config: Models.dense(layers: 3))
        #expect(throws: ZeroError.self) { try plan.validate(against: other) }
    }

    /// A 70B plan over 1024 ranks is only arithmetic: one piece per (tensor, shard) it touches.
    @Test func seventyBillionPlanIsCheap() throws {
        let table = ParameterTable(config: try Models.load("llama-70b.yaml"))
        let plan = PartitionPlan(table: table, worldSize: 1024)
        #expect(plan.totalCount == 68_976_648_192)
        let pieces = plan.tensors.reduce(0) { $0 + $1.pieces.count }
        #expect(pieces <= table.entries.count + 1024 - 1)
        try plan.validate(against: table)
        #expect(plan.contents(ofShard: 512).reduce(0) { $0 + $1.piece.count } == plan.shardRange(512).count)
    }
}
