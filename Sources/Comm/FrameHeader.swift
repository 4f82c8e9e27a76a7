import Common

/// The fixed 64-byte header that starts every frame on the wire (little-endian; see docs/protocol.md).
///
/// A frame is two parts on the transport: this header, then the payload (possibly empty).
/// `FrameHeader.decode` validates every field and both checksums before anyone reads the payload.
public struct FrameHeader: Sendable, Equatable {
    /// "ZTC1" read as a little-endian UInt32.
    public static let magic: UInt32 = 0x3143_545A
    public static let version: UInt8 = 1
    /// Encoded size in bytes.
    public static let size = 64
    /// Upper bound on a payload, so a corrupted length can never make a receiver allocate or read wildly.
    public static let maxPayloadBytes = 1 << 30

    public enum Kind: UInt8, Sendable {
        /// A segment of a collective's buffer.
        case data = 1
        /// "This collective failed": `chunk` holds the blamed rank, the payload a UTF-8 reason.
        case abort = 2
    }

    public enum ElementType: UInt8, Sendable {
        /// Opaque bytes (abort reasons).
        case bytes = 0
        case float32 = 1
        /// bfloat16: the upper half of an IEEE float32, round-to-nearest-even.
        case bfloat16 = 2
        case float64 = 3

        /// Bytes per element.
        public var stride: Int {
            switch self {
            case .bytes: 1
            case .float32: 4
            case .bfloat16: 2
            case .float64: 8
            }
        }
    }

    /// Which collective produced the frame; receivers reject frames of a different collective.
    public enum Operation: UInt8, Sendable {
        case none = 0, allReduce = 1, reduceScatter = 2, allGather = 3, broadcast = 4, scalars = 5,
             barrier = 6, exchange = 7
    }

    /// Flag bit: `payloadCRC` holds the CRC-32C of the payload (else it is 0 and unchecked).
    public static let flagPayloadCRC: UInt8 = 1

    public var kind: Kind
    public var elementType: ElementType
    public var flags: UInt8
    public var operation: Operation
    public var jobID: UInt64
    public var epoch: UInt64
    public var sequence: UInt64
    /// Rank that sent the frame.
    public var sourceRank: UInt32
    /// Ring hop of the collective (0 ..< 2(N-1) for all-reduce).
    public var hop: UInt32
    /// Index of the chunk of the buffer this payload belongs to (blamed rank for `.abort`).
    public var chunk: UInt32
    /// Segment index inside the chunk.
    public var segment: UInt32
    /// Payload length in bytes.
    public var payloadLength: UInt32
    /// CRC-32C of the payload when `flags & flagPayloadCRC`, else 0.
    public var payloadCRC: UInt32

    public init(kind: Kind, elementType: ElementType, flags: UInt8 = 0, operation: Operation,
                jobID: UInt64, epoch: UInt64, sequence: UInt64, sourceRank: UInt32,
                hop: UInt32 = 0, chunk: UInt32 = 0, segment: UInt32 = 0,
                payloadLength: UInt32 = 0, payloadCRC: UInt32 = 0) {
        self.kind = kind
        self.elementType = elementType
        self.flags = flags
        self.operation = operation
        self.jobID = jobID
        self.epoch = epoch
        self.sequence = sequence
        self.sourceRank = sourceRank
        self.hop = hop
        self.chunk = chunk
        self.segment = segment
        self.payloadLength = payloadLength
        self.payloadCRC = payloadCRC
    }

    /// Fills in `payloadLength` and, when `checksum` is true, the payload CRC and its flag.
    public mutating func seal(payload: UnsafeRawBufferPointer, checksum: Bool) {
        payloadLength = UInt32(payload.count)
        if checksum {
            flags |= Self.flagPayloadCRC
            payloadCRC = CRC32C.checksum(payload)
        } else {
            flags &= ~Self.flagPayloadCRC
            payloadCRC = 0
        }
    }

    /// Fills in the payload length and a CRC already known for these exact bytes (a frame forwarded
    /// unchanged), or no CRC when `crc` is nil.
    public mutating func seal(payloadLength length: Int, knownCRC crc: UInt32?) {
        payloadLength = UInt32(length)
        if let crc {
            flags |= Self.flagPayloadCRC
            payloadCRC = crc
        } else {
            flags &= ~Self.flagPayloadCRC
            payloadCRC = 0
        }
    }

    /// Writes the 64 header bytes (including the header CRC over bytes 0..<60) into `out`.
    /// - Precondition: `out.count >= 64`.
    public func encode(into out: UnsafeMutableRawBufferPointer) {
        precondition(out.count >= Self.size, "frame header needs 64 bytes")
        out.storeBytes(of: Self.magic.littleEndian, toByteOffset: 0, as: UInt32.self)
        out.storeBytes(of: Self.version, toByteOffset: 4, as: UInt8.self)
        out.storeBytes(of: kind.rawValue, toByteOffset: 5, as: UInt8.self)
        out.storeBytes(of: elementType.rawValue, toByteOffset: 6, as: UInt8.self)
        out.storeBytes(of: flags, toByteOffset: 7, as: UInt8.self)
        out.storeBytes(of: jobID.littleEndian, toByteOffset: 8, as: UInt64.self)
        out.storeBytes(of: epoch.littleEndian, toByteOffset: 16, as: UInt64.self)
        out.storeBytes(of: sequence.littleEndian, toByteOffset: 24, as: UInt64.self)
        out.storeBytes(of: sourceRank.littleEndian, toByteOffset: 32, as: UInt32.self)
        out.storeBytes(of: hop.littleEndian, toByteOffset: 36, as: UInt32.self)
        out.storeBytes(of: chunk.littleEndian, toByteOffset: 40, as: UInt32.self)
        out.storeBytes(of: segment.littleEndian, toByteOffset: 44, as: UInt32.self)
        out.storeBytes(of: payloadLength.littleEndian, toByteOffset: 48, as: UInt32.self)
        out.storeBytes(of: payloadCRC.littleEndian, toByteOffset: 52, as: UInt32.self)
        out.storeBytes(of: UInt32(operation.rawValue).littleEndian, toByteOffset: 56, as: UInt32.self)
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: out[0..<60]))
        out.storeBytes(of: crc.littleEndian, toByteOffset: 60, as: UInt32.self)
    }

    /// The 64 header bytes as an array (tests, small frames).
    public var encoded: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Self.size)
        bytes.withUnsafeMutableBytes { encode(into: $0) }
        return bytes
    }

    /// Decodes and validates a header against the payload that travelled with it.
    ///
    /// Checks, in order: header length, magic, version, header CRC, kind, element type, flags,
    /// operation, payload length (equal to `payload.count`, at most `maxPayloadBytes`, a multiple
    /// of the element size) and finally the payload CRC. Reads only inside the two buffers.
    ///
    /// With `verifyPayloadCRC: false` the payload is not read at all: the caller takes over the
    /// payload check and must compare its own CRC-32C of the bytes with `payloadCRC` (when the
    /// flag is set) before the data goes anywhere, failing with `.malformedFrame` on a mismatch.
    /// The ring does that in the same pass that reduces or copies the payload
    /// (`CRC32C.accumulate`, `CRC32C.copy`), reading the bytes once instead of twice.
    public static func decode(header: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer,
                              verifyPayloadCRC: Bool = true) throws(CommError) -> FrameHeader {
        func bad(_ why: String) -> CommError { CommError(.malformedFrame, why) }
        guard header.count == size else {
            throw bad("frame header is \(header.count) bytes, expected \(size)")
        }
        let magicValue = UInt32(littleEndian: header.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
        guard magicValue == magic else {
            throw bad("bad magic 0x\(String(magicValue, radix: 16)); not a ZeroTrain comm frame")
        }
        let versionValue = header.load(fromByteOffset: 4, as: UInt8.self)
        guard versionValue == version else {
            throw bad("protocol version \(versionValue), this build speaks \(version); run the same zerotrain on every rank")
        }
        let storedCRC = UInt32(littleEndian: header.loadUnaligned(fromByteOffset: 60, as: UInt32.self))
        let headerCRC = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: header[0..<60]))
        guard storedCRC == headerCRC else { throw bad("header checksum mismatch (corrupted frame)") }
        guard let kind = Kind(rawValue: header.load(fromByteOffset: 5, as: UInt8.self)) else {
            throw bad("unknown message kind \(header.load(fromByteOffset: 5, as: UInt8.self))")
        }
        guard let elementType = ElementType(rawValue: header.load(fromByteOffset: 6, as: UInt8.self)) else {
            throw bad("unknown element type \(header.load(fromByteOffset: 6, as: UInt8.self))")
        }
        let flags = header.load(fromByteOffset: 7, as: UInt8.self)
        guard flags & ~flagPayloadCRC == 0 else { throw bad("unknown flags 0x\(String(flags, radix: 16))") }
        let opRaw = UInt32(littleEndian: header.loadUnaligned(fromByteOffset: 56, as: UInt32.self))
        guard opRaw <= UInt32(UInt8.max), let operation = Operation(rawValue: UInt8(opRaw)) else {
            throw bad("unknown operation \(opRaw)")
        }
        let length = UInt32(littleEndian: header.loadUnaligned(fromByteOffset: 48, as: UInt32.self))
        guard Int(length) <= maxPayloadBytes else { throw bad("payload length \(length) exceeds \(maxPayloadBytes)") }
        guard Int(length) == payload.count else {
            throw bad("header announces \(length) payload bytes, frame carries \(payload.count)")
        }
        guard Int(length) % elementType.stride == 0 else {
            throw bad("payload length \(length) is not a multiple of the \(elementType) size")
        }
        let payloadCRC = UInt32(littleEndian: header.loadUnaligned(fromByteOffset: 52, as: UInt32.self))
        if flags & flagPayloadCRC != 0 {
            guard !verifyPayloadCRC || CRC32C.checksum(payload) == payloadCRC else { throw payloadMismatch() }
        } else {
            guard payloadCRC == 0 else { throw bad("payload CRC present without its flag") }
        }
        return FrameHeader(
            kind: kind, elementType: elementType, flags: flags, operation: operation,
            jobID: UInt64(littleEndian: header.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
            epoch: UInt64(littleEndian: header.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
            sequence: UInt64(littleEndian: header.loadUnaligned(fromByteOffset: 24, as: UInt64.self)),
            sourceRank: UInt32(littleEndian: header.loadUnaligned(fromByteOffset: 32, as: UInt32.self)),
            hop: UInt32(littleEndian: header.loadUnaligned(fromByteOffset: 36, as: UInt32.self)),
            chunk: UInt32(littleEndian: header.loadUnaligned(fromByteOffset: 40, as: UInt32.self)),
            segment: UInt32(littleEndian: header.loadUnaligned(fromByteOffset: 44, as: UInt32.self)),
            payloadLength: length, payloadCRC: payloadCRC)
    }

    /// The error for a payload whose CRC-32C differs from the one in its header.
    public static func payloadMismatch() -> CommError {
        CommError(.malformedFrame, "payload checksum mismatch (corrupted frame)")
    }

    /// Array convenience for `decode(header:payload:)`.
    public static func decode(header: [UInt8], payload: [UInt8]) throws(CommError) -> FrameHeader {
        let result: Result<FrameHeader, CommError> = header.withUnsafeBytes { hb in
            payload.withUnsafeBytes { pb in
                Result { () throws(CommError) -> FrameHeader in try decode(header: hb, payload: pb) }
            }
        }
        return try result.get()
    }
}
