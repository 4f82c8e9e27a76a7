/// An owned, 64-byte aligned, zero-initialised block of `count` elements of a plain type: the
/// low-precision copies and scratch (bf16 bit patterns, fp8 codes). `FloatBuffer` is the fp32 one,
/// with its views and slices.
public final class AlignedBuffer<Element: BitwiseCopyable>: @unchecked Sendable {  // Safe: fields immutable; users split the elements between threads.
    public let count: Int
    public let pointer: UnsafeMutablePointer<Element>

    public init(count: Int) {
        precondition(count >= 0, "an aligned buffer's count must be non-negative")
        self.count = count
        let bytes = max(count, 1) * MemoryLayout<Element>.stride
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        pointer = raw.bindMemory(to: Element.self, capacity: max(count, 1))
    }

    deinit { UnsafeMutableRawPointer(pointer).deallocate() }
}

/// bf16 values as raw bit patterns (oneDNN's bf16 operands).
public typealias BFloat16Buffer = AlignedBuffer<UInt16>

/// fp8 codes (e4m3 or e5m2, `FP8Format`).
public typealias FP8Buffer = AlignedBuffer<UInt8>
