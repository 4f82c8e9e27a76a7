/// One file of a checkpoint, as the manifest lists it: a rank's shard file or the Hugging Face config.
public struct CheckpointFile: Codable, Sendable, Equatable {
    /// "shard-00001-of-00002.safetensors" or "config.json".
    public var name: String
    /// The rank that wrote it (shard files only).
    public var rank: Int?
    /// The element range `start ..< start + count` of the flat buffers it holds (shard files only).
    public var start: Int?, count: Int?
    /// Size of the file in bytes.
    public var bytes: Int
    /// CRC-32C of the whole file.
    public var crc32c: UInt32
    /// Shard files: the size in bytes of the blocks `blockCRC32C` covers (the last one may be shorter).
    public var blockBytes: Int?
    /// Shard files: CRC-32C of bytes `k·blockBytes ..< min((k+1)·blockBytes, bytes)` for each block k.
    public var blockCRC32C: [UInt32]?
    /// Shard files: `ShardTensor.rawValue` → byte offset in the file of that tensor's first element.
    public var dataOffsets: [String: Int]?

    enum CodingKeys: String, CodingKey {
        case name, rank, start, count, bytes, crc32c
        case blockBytes = "block_bytes", blockCRC32C = "block_crc32c", dataOffsets = "data_offsets"
    }

    public init(name: String, rank: Int? = nil, start: Int? = nil, count: Int? = nil, bytes: Int, crc32c: UInt32,
                blockBytes: Int? = nil, blockCRC32C: [UInt32]? = nil, dataOffsets: [String: Int]? = nil) {
        self.name = name
        self.rank = rank
        self.start = start
        self.count = count
        self.bytes = bytes
        self.crc32c = crc32c
        self.blockBytes = blockBytes
        self.blockCRC32C = blockCRC32C
        self.dataOffsets = dataOffsets
    }

    /// Whether this is a rank's shard (it has an element range).
    public var isShard: Bool { start != nil }
}
