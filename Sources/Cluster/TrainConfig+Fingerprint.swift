import Foundation
import Training

extension TrainConfig {
    /// FNV-1a 64 of the config's canonical JSON: equal configs, equal fingerprints.
    public var fingerprint: String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        let data = (try? e.encode(self)) ?? Data()
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
