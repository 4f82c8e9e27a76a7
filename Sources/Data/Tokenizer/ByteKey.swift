/// A byte string as a dictionary key, hashed in one call over its bytes: `[UInt8]`'s own
/// `Hashable` feeds the hasher byte by byte, which dominated BPE training and encoding.
public struct ByteKey: Hashable, Sendable {
    public let bytes: [UInt8]

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = Array(bytes) }

    public func hash(into hasher: inout Hasher) {
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }

    public static func == (a: ByteKey, b: ByteKey) -> Bool { a.bytes == b.bytes }
}
