import Tensor

/// Layer normalisation: y = w · (x − mean) · rstd + b.
public enum LayerNorm {
    /// x (rows, C) → y (rows, C); saves mean and rstd (rows) for backward.
    public static func forward(x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
                               y: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
                               rows: Int, channels c: Int, eps: Float, pool: ThreadPool) {
        pool.parallelFor(rows, minChunk: 64) { range in
            for n in range {
                let xr = x + n * c, yr = y + n * c
                var m: Float = 0
                for i in 0..<c { m += xr[i] }
                m /= Float(c)
                var v: Float = 0
                for i in 0..<c { let d = xr[i] - m; v += d * d }
                v /= Float(c)
                let r = 1 / (v + eps).squareRoot()
                mean[n] = m
                rstd[n] = r
                for i in 0..<c { yr[i] = (xr[i] - m) * r * weight[i] + bias[i] }
            }
        }
    }

    /// dy (rows, C) → dx (+= with `accumulate`), dWeight += Σ dy·x̂, dBias += Σ dy.
    public static func backward(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>,
                                dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>,
                                rows: Int, channels c: Int, accumulate: Bool, pool: ThreadPool) {
        pool.parallelFor(rows, minChunk: 64) { range in
            for n in range {
                let xr = x + n * c, dyr = dy + n * c, dxr = dx + n * c
                let m = mean[n], r = rstd[n]
                var sumG: Float = 0, sumGX: Float = 0
                for i in 0..<c {
                    let g = dyr[i] * weight[i]
                    sumG += g
                    sumGX += g * (xr[i] - m) * r
                }
                let a = sumG / Float(c), b = sumGX / Float(c)
                for i in 0..<c {
                    let xhat = (xr[i] - m) * r
                    let g = r * (dyr[i] * weight[i] - a - xhat * b)
                    dxr[i] = accumulate ? dxr[i] + g : g
                }
            }
        }
        for n in 0..<rows {
            let xr = x + n * c, dyr = dy + n * c
            let m = mean[n], r = rstd[n]
            for i in 0..<c {
                dWeight[i] += dyr[i] * (xr[i] - m) * r
                dBias[i] += dyr[i]
            }
        }
    }
}
