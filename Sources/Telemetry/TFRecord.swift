import Common

/// TFRecord framing, as TensorBoard's event files use it (tensorboard `summary/writer/record_writer.py`):
/// `u64 len | u32 masked_crc32c(len bytes) | data[len] | u32 masked_crc32c(data)`, little-endian.
public enum TFRecord {
    /// The CRC-32C TensorFlow stores: rotated right by 15 bits, plus a constant.
    public static func maskedCRC(_ bytes: [UInt8]) -> UInt32 {
        let crc = CRC32C.checksum(bytes)
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }

    /// One framed record.
    public static func frame(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(data.count + 16)
        let length = littleEndian(UInt64(data.count))
        out += length
        out += littleEndian(maskedCRC(length))
        out += data
        out += littleEndian(maskedCRC(data))
        return out
    }

    public enum ReadError: Error, Equatable {
        case truncated(offset: Int)
        case lengthChecksum(offset: Int)
        case dataChecksum(offset: Int)
    }

    /// Every record's data in `bytes`, checking both checksums of each.
    public static func records(_ bytes: [UInt8]) throws(ReadError) -> [[UInt8]] {
        var records: [[UInt8]] = []
        var at = 0
        while at < bytes.count {
            guard bytes.count - at >= 12 else { throw .truncated(offset: at) }
            let lengthBytes = Array(bytes[at..<at + 8])
            guard readUInt32(bytes, at + 8) == maskedCRC(lengthBytes) else { throw .lengthChecksum(offset: at) }
            let length = lengthBytes.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
            guard length <= UInt64(bytes.count - at - 16) else { throw .truncated(offset: at) }
            let start = at + 12, end = start + Int(length)
            let data = Array(bytes[start..<end])
            guard readUInt32(bytes, end) == maskedCRC(data) else { throw .dataChecksum(offset: at) }
            records.append(data)
            at = end + 4
        }
        return records
    }

    static func littleEndian<T: FixedWidthInteger>(_ x: T) -> [UInt8] {
        (0..<(T.bitWidth / 8)).map { UInt8(truncatingIfNeeded: x >> (8 * $0)) }
    }

    static func readUInt32(_ b: [UInt8], _ at: Int) -> UInt32 {
        (0..<4).reduce(UInt32(0)) { $0 | UInt32(b[at + $1]) << (8 * UInt32($1)) }
    }
}
