/// An owned, 64-byte aligned (or more), zero-initialised block of `Float`s — or a view of memory
/// another object owns (a shared-memory mapping), kept alive as long as the view.
///
/// The model's parameters, gradients and optimizer states each live in one `FloatBuffer`
/// (see DESIGN.md, "flat buffers with a named table"); activations and scratch space use
/// them too. Hot loops take `pointer` / `buffer` and index it directly.
public final class FloatBuffer: @unchecked Sendable {  // Safe: fields immutable; users split the elements between threads.
    /// Number of `Float` elements.
    public let count: Int
    /// Base address; valid for the buffer's lifetime.
    public let pointer: UnsafeMutablePointer<Float>
    /// What owns the memory when the buffer does not (nil: the buffer allocated it and frees it).
    private let owner: (any AnyObject & Sendable)?

    /// - Parameter alignment: of the base address, in bytes (a power of two ≥ 64; 4096 for direct I/O).
    public init(count: Int, alignment: Int = 64) {
        precondition(count >= 0, "FloatBuffer count must be non-negative")
        self.count = count
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: max(64, alignment))
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        self.pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        owner = nil
    }

    /// A view of `count` elements at `pointer`, which `owner` owns and keeps valid while it lives.
    public init(viewing pointer: UnsafeMutablePointer<Float>, count: Int, owner: any AnyObject & Sendable) {
        precondition(count >= 0, "FloatBuffer count must be non-negative")
        self.count = count
        self.pointer = pointer
        self.owner = owner
    }

    /// A copy of `values`.
    public convenience init(_ values: [Float]) {
        self.init(count: values.count)
        values.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { pointer.update(from: base, count: values.count) }
        }
    }

    deinit { if owner == nil { UnsafeMutableRawPointer(pointer).deallocate() } }

    /// The whole buffer.
    @inlinable public var buffer: UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: pointer, count: count)
    }

    /// `count` elements starting at `offset`.
    @inlinable public func slice(_ offset: Int, _ length: Int) -> UnsafeMutableBufferPointer<Float> {
        precondition(offset >= 0 && length >= 0 && offset + length <= count, "slice out of range")
        return UnsafeMutableBufferPointer(start: pointer + offset, count: length)
    }

    /// Sets every element to zero.
    public func zero() { pointer.update(repeating: 0, count: count) }

    /// Copies of the elements, for tests and I/O.
    public func toArray() -> [Float] { Array(buffer) }

    /// Copies `other` (same count) into this buffer.
    public func copy(from other: FloatBuffer) {
        precondition(other.count == count, "copy between buffers of different sizes")
        pointer.update(from: other.pointer, count: count)
    }
}
