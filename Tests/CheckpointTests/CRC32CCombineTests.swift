import Common
import Testing

/// `CRC32C.combine` gives the CRC of a concatenation from its pieces' (the shard writer builds the
/// whole file's CRC from its blocks').
@Suite struct CRC32CCombineTests {
    @Test(arguments: [0, 1, 7, 8, 1000, 4097, 65_536])
    func combineEqualsOnePass(cut: Int) {
        let bytes = (0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 7) }
        let whole = bytes.withUnsafeBytes { CRC32C.software($0) }
        let a = bytes[..<cut].withUnsafeBytes { CRC32C.checksum($0) }
        let b = bytes[cut...].withUnsafeBytes { CRC32C.checksum($0) }
        #expect(CRC32C.combine(a, b, lengthB: bytes.count - cut) == whole)
        #expect(CRC32C.combine(whole, 0, lengthB: 0) == whole)
    }
}
