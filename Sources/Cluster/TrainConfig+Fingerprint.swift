import Foundation
import Training

extension TrainConfig {
    /// FNV-1a 64 of the canonical JSON of what defines the computation — model, data and the
    /// optimisation settings — leaving out where files go, logging, threads and the cluster section,
    /// which a coordinator and its workers may legitimately set differently.
    public var fingerprint: String {
        var c = self
        c.training.checkpointDir = nil
        c.training.metricsFile = nil
        c.training.logInterval = 1
        c.training.threads = 1
        c.training.checkpointInterval = 0
        c.cluster = ClusterConfig()
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        let data = (try? e.encode(c)) ?? Data()
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in data { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return String(h, radix: 16)
    }
}

/// FNV-1a 64 over a tensor's bytes (the divergence guard compares these across ranks).
public func tensorChecksum(_ values: UnsafeBufferPointer<Float>) -> UInt64 {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for v in values {
        var bits = v.bitPattern
        for _ in 0..<4 {
            h = (h ^ UInt64(bits & 0xFF)) &* 0x0000_0100_0000_01B3
            bits >>= 8
        }
    }
    return h
}
