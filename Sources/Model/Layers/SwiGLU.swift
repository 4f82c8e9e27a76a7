import Foundation
import Tensor

/// The elementwise parts of the two MLP types (the projections are `Linear`).
public enum SwiGLU {
    /// gate, up (count) → h = silu(gate) · up. With a `pool`, the elements are split between its
    /// threads (each element's arithmetic is the same, so the result is too).
    public static func forward(gate: UnsafePointer<Float>, up: UnsafePointer<Float>, h: UnsafeMutablePointer<Float>, count: Int,
                               pool: ThreadPool? = nil) {
        Elementwise.split(count, pool) { range in
            Kernels.swiGLUForward(gate: gate + range.lowerBound, up: up + range.lowerBound, h: h + range.lowerBound, count: range.count)
        }
    }

    /// dh → dGate = dh · up · silu′(gate), dUp = dh · silu(gate).
    public static func backward(dh: UnsafePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>,
                                dGate: UnsafeMutablePointer<Float>, dUp: UnsafeMutablePointer<Float>, count: Int,
                                pool: ThreadPool? = nil) {
        Elementwise.split(count, pool) { range in
            let lo = range.lowerBound
            Kernels.swiGLUBackward(dh: dh + lo, gate: gate + lo, up: up + lo, dGate: dGate + lo, dUp: dUp + lo, count: range.count)
        }
    }
}

/// Exact (erf) GELU, as torch.nn.GELU().
public enum GELU {
    /// x (count) → y = x · Φ(x).
    public static func forward(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, count: Int, pool: ThreadPool? = nil) {
        Elementwise.split(count, pool) { range in
            for i in range {
                let v = x[i]
                y[i] = 0.5 * v * (1 + erff(v * 0.70710678118654752))
            }
        }
    }

    /// dy → dx = dy · (Φ(x) + x · φ(x)).
    public static func backward(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, count: Int,
                                pool: ThreadPool? = nil) {
        Elementwise.split(count, pool) { range in
            Kernels.exp(of: range, { -0.5 * x[$0] * x[$0] }) { lo, e, k in
                for j in 0..<k {
                    let i = lo + j, v = x[i]
                    let cdf = 0.5 * (1 + erff(v * 0.70710678118654752))
                    let pdf = e[j] * 0.39894228040143268
                    dx[i] = dy[i] * (cdf + v * pdf)
                }
            }
        }
    }
}
