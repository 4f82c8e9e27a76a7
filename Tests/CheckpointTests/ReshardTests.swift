import Checkpoint
import Foundation
import Testing

/// Resharding is reading other ranges: a checkpoint written by N ranks restores onto M ranks,
/// and whatever N was, the M ranks get the same bits.
@Suite struct ReshardTests {
    @Test(arguments: [1, 2, 3])
    func writtenByTwoOrThreeRanksReadByM(m: Int) throws {
        let count = 4099
        let state = ShardFixture.state(count: count, salt: 21)
        var restored: [Int: [[UInt32]]] = [:]
        for n in [2, 3] {
            let dir = ShardFixture.tempDir()
            defer { try? FileManager.default.removeItem(at: dir) }
            try ShardFixture.save(state, store: CheckpointStore(directory: dir), step: 9, ranks: n)
            let reader = try CheckpointReader<ShardFixture.Config>(dir)
            #expect(reader.manifest.shards.count == n && reader.elementCount == count)
            var all: [[UInt32]] = []
            for range in ShardFixture.partition(count, ranks: m) {
                for t in ShardTensor.allCases {
                    let bits = try ShardFixture.read(reader, t, range, pieces: 1)
                    #expect(bits == state.bits(t, range), "N=\(n) M=\(m) \(t) \(range)")
                    all.append(bits)
                }
            }
            restored[n] = all
        }
        #expect(restored[2] == restored[3])
    }
}
