import Foundation
import Tensor

/// The elementwise parts of the two MLP types (the projections are `Linear`).
public enum SwiGLU {
    @inline(__always) static func sigmoid(_ x: Float) -> Float { 1 / (1 + expf(-x)) }

    /// gate, up (count) → h = silu(gate) · up. With a `pool`, the elements are split between its
    /// threads (each element's arithmetic is the same, so the result is too).
    public static func forward(gate: UnsafePointer<Float>, up: UnsafePointer<Float>, h: UnsafeMutablePointer<Float>, count: Int,
                               pool: ThreadPool? = nil) {
        Elementwise.split(count, pool) { range in
            for i in range {
                let g = gate[i]
                h[i] = g * sigmoid(g) * up[i]
            }
        }
    }

    /// dh → dGate = dh · up · silu′(gate), dUp = dh · silu(gate).
    public static func backward(dh: UnsafePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>,
                                dGate: UnsafeMutablePointer<Float>, dUp: UnsafeMutablePointer<Float>, count: Int,
                                pool: ThreadPool? = nil) {
        Elementwise.split(count, pool) { range in
            for i in range {
                let g = gate[i], s = sigmoid(g)
                let silu = g * s
                dUp[i] = dh[i] * silu
                dGate[i] = dh[i] * up[i] * s * (1 + g * (1 - s))
            }
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
            for i in range {
                let v = x[i]
                let cdf = 0.5 * (1 + erff(v * 0.70710678118654752))
                let pdf = expf(-0.5 * v * v) * 0.39894228040143268
                dx[i] = dy[i] * (cdf + v * pdf)
            }
        }
    }
}
