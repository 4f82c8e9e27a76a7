import Tensor

/// Token embedding lookup.
public enum Embedding {
    /// tokens (rows) → x (rows, C) = table[token].
    public static func forward(tokens: UnsafeBufferPointer<Int32>, table: UnsafePointer<Float>,
                               x: UnsafeMutablePointer<Float>, channels c: Int) {
        for (n, t) in tokens.enumerated() {
            (x + n * c).update(from: table + Int(t) * c, count: c)
        }
    }

    /// dx (rows, C) → dTable[token] += dx[row], rows in order (deterministic).
    public static func backward(tokens: UnsafeBufferPointer<Int32>, dx: UnsafePointer<Float>,
                                dTable: UnsafeMutablePointer<Float>, channels c: Int) {
        for (n, t) in tokens.enumerated() {
            Kernels.add(dx + n * c, into: dTable + Int(t) * c, count: c)
        }
    }
}
