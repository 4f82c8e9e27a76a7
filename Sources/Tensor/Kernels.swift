import CKernels

/// Vectorised elementwise kernels and reductions over raw fp32 pointers.
///
/// Every kernel processes 16 lanes at a time with `SIMD16<Float>` (unaligned loads), then a
/// scalar tail. They allocate nothing and are safe to call from any thread on disjoint memory.
public enum Kernels {
    public typealias V = SIMD16<Float>

    @inline(__always) @usableFromInline
    static func load(_ p: UnsafePointer<Float>) -> V {
        UnsafeRawPointer(p).loadUnaligned(as: V.self)
    }

    @inline(__always) @usableFromInline
    static func store(_ v: V, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self)
    }

    /// dst[i] += src[i]
    @inlinable
    public static func add(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, count n: Int) {
        var i = 0
        while i + 16 <= n { store(load(dst + i) + load(src + i), dst + i); i += 16 }
        while i < n { dst[i] += src[i]; i += 1 }
    }

    /// out[i] = a[i] + b[i]
    @inlinable
    public static func add(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, count n: Int) {
        var i = 0
        while i + 16 <= n { store(load(a + i) + load(b + i), out + i); i += 16 }
        while i < n { out[i] = a[i] + b[i]; i += 1 }
    }

    /// dst[i] += alpha · src[i]
    @inlinable
    public static func axpy(_ alpha: Float, _ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, count n: Int) {
        let va = V(repeating: alpha)
        var i = 0
        while i + 16 <= n { store(load(dst + i) + va * load(src + i), dst + i); i += 16 }
        while i < n { dst[i] += alpha * src[i]; i += 1 }
    }

    /// dst[i] *= s
    @inlinable
    public static func scale(_ dst: UnsafeMutablePointer<Float>, by s: Float, count n: Int) {
        let vs = V(repeating: s)
        var i = 0
        while i + 16 <= n { store(load(dst + i) * vs, dst + i); i += 16 }
        while i < n { dst[i] *= s; i += 1 }
    }

    /// Σ a[i]·b[i], accumulated in 16 fp32 lanes.
    @inlinable
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count n: Int) -> Float {
        var acc = V(repeating: 0)
        var i = 0
        while i + 16 <= n { acc += load(a + i) * load(b + i); i += 16 }
        var s = acc.sum()
        while i < n { s += a[i] * b[i]; i += 1 }
        return s
    }

    /// Σ a[i]², accumulated in Double (each square is exact in Double), so the sum is the same to
    /// within Double rounding however the elements are split between ranks and threads — a
    /// gradient norm, and the clip coefficient rounded to Float from it, do not depend on the layout.
    @inlinable
    public static func sumOfSquares(_ a: UnsafePointer<Float>, count n: Int) -> Double {
        var acc0 = SIMD8<Double>(repeating: 0), acc1 = SIMD8<Double>(repeating: 0)
        var i = 0
        while i + 16 <= n {
            let x = SIMD8<Double>(UnsafeRawPointer(a + i).loadUnaligned(as: SIMD8<Float>.self))
            let y = SIMD8<Double>(UnsafeRawPointer(a + i + 8).loadUnaligned(as: SIMD8<Float>.self))
            acc0 += x * x
            acc1 += y * y
            i += 16
        }
        var total = (acc0 + acc1).sum()
        while i < n { total += Double(a[i]) * Double(a[i]); i += 1 }
        return total
    }

    /// True if every element is finite.
    @inlinable
    public static func allFinite(_ a: UnsafePointer<Float>, count n: Int) -> Bool {
        var acc = V(repeating: 0)
        var i = 0
        // x - x is 0 for finite x and NaN for ±inf/NaN, so the sum is NaN iff any is non-finite.
        while i + 16 <= n { let x = load(a + i); acc += (x - x); i += 16 }
        var s = acc.sum()
        while i < n { s += a[i] - a[i]; i += 1 }
        return s == 0
    }

    /// y[i] = expf(x[i]) for i < n, equal to libm's expf bit for bit, eight lanes at a time where
    /// the CPU has AVX-512 (see CKernels). `x` and `y` may be the same.
    public static func exp(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count n: Int) {
        if n > 0 { zt_exp_f32(x, y, n) }
    }

    /// SwiGLU's forward (h = gate · σ(gate) · up) over `n` elements, with AVX-512 where the CPU has
    /// it (see CKernels: the same bits either way).
    public static func swiGLUForward(gate: UnsafePointer<Float>, up: UnsafePointer<Float>, h: UnsafeMutablePointer<Float>, count n: Int) {
        if n > 0 { zt_swiglu_forward(gate, up, h, n) }
    }

    /// SwiGLU's backward: dUp = dh · gate · σ(gate), dGate = dh · up · σ(gate) · (1 + gate · (1 − σ(gate))).
    public static func swiGLUBackward(dh: UnsafePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>,
                                      dGate: UnsafeMutablePointer<Float>, dUp: UnsafeMutablePointer<Float>, count n: Int) {
        if n > 0 { zt_swiglu_backward(dh, gate, up, dGate, dUp, n) }
    }

    /// One AdamW update of `n` elements (the arithmetic is Optim's `AdamW`; this is its kernel,
    /// with AVX-512 where the CPU has it — Swift's SIMD16 compiles to SSE2 lanes and a scalar
    /// square root). Each gradient is multiplied by `gradientScale` as it is read.
    public static func adamW(parameters p: UnsafeMutablePointer<Float>, gradients g: UnsafePointer<Float>,
                             m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, count n: Int,
                             gradientScale: Float, stepSize: Float, bc2Sqrt: Float, decay: Float,
                             beta2: Float, oneMinusBeta1: Float, oneMinusBeta2: Float, eps: Float) {
        if n > 0 { zt_adamw_update(p, g, m, v, n, gradientScale, stepSize, bc2Sqrt, decay, beta2, oneMinusBeta1, oneMinusBeta2, eps) }
    }

    /// Whether `exp`, `swiGLUForward`/`swiGLUBackward` and `adamW` run AVX-512 lanes; tests set it
    /// false to check the portable loops give the same bits.
    public static var vectorised: Bool {
        get { zt_kernels_vectorised() != 0 }
        set { _ = zt_kernels_set_vectorised(newValue ? 1 : 0) }
    }

    /// Elements of the stack chunk `exp(of:)` hands its body.
    public static let expChunk = 512

    /// Calls `body(lo, e)` for consecutive chunks lo..<lo+k of `range` (k ≤ `expChunk`), with
    /// e[j] = expf(argument(lo + j)) for j < k in stack memory: the vectorised exp for loops that
    /// cannot write it into their own buffers.
    @inline(__always)
    public static func exp(of range: Range<Int>, _ argument: (Int) -> Float,
                           _ body: (_ lo: Int, _ e: UnsafeMutablePointer<Float>, _ count: Int) -> Void) {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: expChunk) { scratch in
            let e = scratch.baseAddress!
            var lo = range.lowerBound
            while lo < range.upperBound {
                let k = Swift.min(expChunk, range.upperBound - lo)
                for j in 0..<k { e[j] = argument(lo + j) }
                exp(e, into: e, count: k)
                body(lo, e, k)
                lo += k
            }
        }
    }

    /// In-place softmax of one row of `n` elements; returns the row's max and log-sum-exp.
    @discardableResult
    public static func softmaxRow(_ x: UnsafeMutablePointer<Float>, count n: Int) -> (max: Float, logSumExp: Float) {
        var m = -Float.infinity
        for i in 0..<n { m = Swift.max(m, x[i]) }
        for i in 0..<n { x[i] = x[i] - m }
        exp(x, into: x, count: n)
        var sum: Float = 0
        for i in 0..<n { sum += x[i] }
        let inv = 1 / sum
        scale(x, by: inv, count: n)
        return (m, m + logf(sum))
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
