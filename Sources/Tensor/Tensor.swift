/// A view of fp32 elements in a `FloatBuffer`: an offset, a shape and row-major strides.
///
/// Views are cheap values; the buffer owns the memory. Layers work on raw pointers with the
/// shape contract in their doc comment; `Tensor` is what the tables, I/O and tests pass around.
public struct Tensor: Sendable {
    public let storage: FloatBuffer
    public let offset: Int
    public let shape: [Int]
    public let strides: [Int]

    /// A fresh zero tensor of `shape`.
    public init(zeros shape: [Int]) {
        let n = shape.reduce(1, *)
        self.init(storage: FloatBuffer(count: n), offset: 0, shape: shape)
    }

    /// A tensor holding `values` with `shape`.
    public init(_ values: [Float], shape: [Int]) {
        precondition(values.count == shape.reduce(1, *), "values do not fill shape \(shape)")
        self.init(storage: FloatBuffer(values), offset: 0, shape: shape)
    }

    /// A contiguous row-major view of `storage` starting at `offset`.
    public init(storage: FloatBuffer, offset: Int, shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        let n = shape.reduce(1, *)
        precondition(offset >= 0 && offset + n <= storage.count, "view out of range")
        self.storage = storage
        self.offset = offset
        self.shape = shape
        self.strides = Tensor.rowMajorStrides(shape)
    }

    public static func rowMajorStrides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var s = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[i] = s
            s *= shape[i]
        }
        return strides
    }

    public var count: Int { shape.reduce(1, *) }
    public var rank: Int { shape.count }

    /// The elements as a mutable buffer (views are always contiguous).
    @inlinable public var buffer: UnsafeMutableBufferPointer<Float> { storage.slice(offset, count) }
    @inlinable public var pointer: UnsafeMutablePointer<Float> { storage.pointer + offset }

    /// Element at a multi-index.
    public subscript(_ index: Int...) -> Float {
        get { pointer[linearIndex(index)] }
        nonmutating set { pointer[linearIndex(index)] = newValue }
    }

    private func linearIndex(_ index: [Int]) -> Int {
        precondition(index.count == shape.count, "index rank \(index.count) for shape \(shape)")
        var o = 0
        for (i, v) in index.enumerated() {
            precondition(v >= 0 && v < shape[i], "index \(index) out of shape \(shape)")
            o += v * strides[i]
        }
        return o
    }

    /// The same elements with another shape of equal size.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        return Tensor(storage: storage, offset: offset, shape: newShape)
    }

    public func toArray() -> [Float] { Array(buffer) }
}
