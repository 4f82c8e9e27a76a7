import Model

/// One tensor's place in the flat buffers, as the manifest records it (the `ParameterTable` entry
/// without the model): with the shard files' element ranges, the checkpoint's partition plan.
public struct TensorLayout: Codable, Sendable, Equatable {
    /// Hugging Face name.
    public var name: String
    /// Shape as Hugging Face stores it.
    public var shape: [Int]
    /// First element in the flat buffer.
    public var offset: Int

    public init(name: String, shape: [Int], offset: Int) {
        self.name = name
        self.shape = shape
        self.offset = offset
    }

    public init(_ entry: ParameterEntry) { self.init(name: entry.name, shape: entry.shape, offset: entry.offset) }

    /// Elements.
    public var count: Int { shape.reduce(1, *) }

    /// The layout of every tensor of `table`, in its order.
    public static func layouts(of table: ParameterTable) -> [TensorLayout] { table.entries.map(TensorLayout.init) }
}
