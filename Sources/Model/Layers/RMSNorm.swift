import Tensor

/// Root-mean-square normalisation (Llama): y = w · x · rstd, rstd = 1/√(mean(x²) + eps).
public enum RMSNorm {
    /// x (rows, C) → y (rows, C); saves rstd (rows) for backward.
    public static func forward(x: UnsafePointer<Float>, weight: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                               rstd: UnsafeMutablePointer<Float>, rows: Int, channels c: Int, eps: Float, pool: ThreadPool) {
        pool.parallelFor(rows, minChunk: 64) { range in
            for n in range {
                let xr = x + n * c, yr = y + n * c
                let ms = Kernels.dot(xr, xr, count: c) / Float(c)
                let r = 1 / (ms + eps).squareRoot()
                rstd[n] = r
                for i in 0..<c { yr[i] = weight[i] * (xr[i] * r) }
            }
        }
    }

    /// dy (rows, C) → dx (rows, C) (+= with `accumulate`), dWeight (C) += Σ_rows dy · x · rstd.
    public static func backward(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                rstd: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>,
                                rows: Int, channels c: Int, accumulate: Bool, pool: ThreadPool) {
        pool.parallelFor(rows, minChunk: 64) { range in
            for n in range {
                let xr = x + n * c, dyr = dy + n * c, dxr = dx + n * c
                let r = rstd[n]
                var dot: Float = 0   // Σ (dy·w) · x̂
                for i in 0..<c { dot += dyr[i] * weight[i] * xr[i] * r }
                let mean = dot / Float(c)
                for i in 0..<c {
                    let g = r * (dyr[i] * weight[i] - xr[i] * r * mean)
                    dxr[i] = accumulate ? dxr[i] + g : g
                }
            }
        }
        for n in 0..<rows {
            let xr = x + n * c, dyr = dy + n * c
            let r = rstd[n]
            for i in 0..<c { dWeight[i] += dyr[i] * (xr[i] * r) }
        }
    }
}
