import Tensor

/// How elementwise passes (the MLP's activations, bf16 conversions) split their elements: between
/// a pool's threads in chunks of at least `minChunk` (fewer elements are not worth waking the team
/// for), or all on the caller.
enum Elementwise {
    static let minChunk = 16_384

    @inline(__always) static func split(_ count: Int, _ pool: ThreadPool?, minChunk: Int = minChunk, _ body: (Range<Int>) -> Void) {
        guard let pool else { body(0..<count); return }
        pool.parallelFor(count, minChunk: minChunk, body)
    }

    /// out = a + b over `count` elements (`Kernels.add`), split as `split` does.
    static func add(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, count: Int, pool: ThreadPool?) {
        split(count, pool) { Kernels.add(a + $0.lowerBound, b + $0.lowerBound, out: out + $0.lowerBound, count: $0.count) }
    }
}
