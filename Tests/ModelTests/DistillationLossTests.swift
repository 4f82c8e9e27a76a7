import Foundation
import Model
import Tensor
import Testing
import ZeroTrainTestKit

/// The distillation loss α · T² · KL(softmax(t/T) ‖ softmax(s/T)) / rows + (1 − α) · CE and its
/// gradient with respect to the student's logits: by hand, against PyTorch's
/// `KLDivLoss(reduction="batchmean")` (Tests/Fixtures/distillation/kd.json,
/// scripts/make-distillation-fixture.py), and by finite differences.
@Suite struct DistillationLossTests {
    let pool = ThreadPool(threads: 1)

    /// loss and dLoss/ds of `rows` rows, as the trainer combines them.
    func combined(student: [Float], teacher: [Float], labels: [Int32], rows: Int, vocab: Int, temperature: Float, alpha: Float,
                  chunkRows: Int? = nil) -> (loss: Double, grad: [Float]) {
        let lse = FloatBuffer(count: rows), d = FloatBuffer(count: rows * vocab)
        let ce = student.withUnsafeBufferPointer { s in
            labels.withUnsafeBufferPointer { t in
                CrossEntropy.forward(logits: s.baseAddress!, targets: t, logSumExp: lse.pointer, rows: rows, vocab: vocab, pool: pool)
            }
        }
        student.withUnsafeBufferPointer { s in
            labels.withUnsafeBufferPointer { t in
                CrossEntropy.backward(logits: s.baseAddress!, targets: t, logSumExp: lse.pointer, dLogits: d.pointer, rows: rows,
                                      vocab: vocab, scale: 1 - alpha, pool: pool)
            }
        }
        let step = chunkRows ?? rows
        var kl: Double = 0
        student.withUnsafeBufferPointer { s in
            teacher.withUnsafeBufferPointer { t in
                for start in stride(from: 0, to: rows, by: step) {
                    let r = min(step, rows - start)
                    kl += DistillationLoss.forward(student: s.baseAddress! + start * vocab, teacher: t.baseAddress! + start * vocab, rows: r,
                                                   vocab: vocab, temperature: temperature, dLogits: d.pointer + start * vocab,
                                                   gradScale: alpha * temperature / Float(rows), pool: pool)
                }
            }
        }
        let loss = Double(alpha) * Double(temperature * temperature) * kl / Double(rows) + Double(1 - alpha) * Double(ce)
        return (loss, d.toArray())
    }

    @Test func handComputedCase() {
        // One row, V = 2: student logits (0, 0), teacher (ln 3, 0), label 0, T = 2, α = 0.5.
        // t/T = (ln 3 / 2, 0) → p_t = (√3, 1) / (√3 + 1); p_s = (1/2, 1/2).
        let r3 = 3.0.squareRoot()
        let pt = [r3 / (r3 + 1), 1 / (r3 + 1)]
        let kl = pt[0] * log(pt[0] / 0.5) + pt[1] * log(pt[1] / 0.5)
        let expected = 0.5 * 4 * kl + 0.5 * log(2.0)
        let (loss, grad) = combined(student: [0, 0], teacher: [Float(log(3.0)), 0], labels: [0], rows: 1, vocab: 2, temperature: 2, alpha: 0.5)
        #expect(abs(loss - expected) < 1e-6, "\(loss) vs \(expected)")
        // d/ds = α · T · (p_s − p_t) + (1 − α) · (softmax(s) − onehot).
        let g0 = 0.5 * 2 * (0.5 - pt[0]) + 0.5 * (0.5 - 1), g1 = 0.5 * 2 * (0.5 - pt[1]) + 0.5 * 0.5
        #expect(abs(Double(grad[0]) - g0) < 1e-6 && abs(Double(grad[1]) - g1) < 1e-6, "\(grad) vs \([g0, g1])")
        // Identical distributions: no divergence, no gradient from it.
        let same = combined(student: [1, 2, 3], teacher: [1, 2, 3], labels: [2], rows: 1, vocab: 3, temperature: 3, alpha: 1)
        #expect(abs(same.loss) < 1e-7 && same.grad.allSatisfy { abs($0) < 1e-7 })
    }

    @Test func matchesPyTorchKLDivLossBatchmean() throws {
        let url = Fixtures.root.appendingPathComponent("distillation/kd.json")
        let cases = try #require((try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])?["cases"] as? [[String: Any]])
        #expect(cases.count == 4)
        for c in cases {
            let rows = c["rows"] as! Int, vocab = c["vocab"] as! Int
            let s = (c["student"] as! [Double]).map(Float.init), t = (c["teacher"] as! [Double]).map(Float.init)
            let labels = (c["labels"] as! [Int]).map(Int32.init)
            let temperature = Float(c["temperature"] as! Double), alpha = Float(c["alpha"] as! Double)
            for chunk in [nil, 3] as [Int?] {
                let (loss, grad) = combined(student: s, teacher: t, labels: labels, rows: rows, vocab: vocab, temperature: temperature,
                                            alpha: alpha, chunkRows: chunk)
                let expected = c["loss"] as! Double
                #expect(abs(loss - expected) <= 1e-5 * max(1, abs(expected)), "rows \(rows) V \(vocab) T \(temperature): \(loss) vs \(expected)")
                let reference = c["grad"] as! [Double]
                let worst = zip(grad, reference).map { abs(Double($0) - $1) }.max()!
                #expect(worst <= 1e-6, "rows \(rows) V \(vocab): gradient off by \(worst)")
            }
        }
    }

    @Test func gradientMatchesFiniteDifferences() {
        let rows = 3, vocab = 5
        let rng = Philox(seed: 7)
        var s = [Float](repeating: 0, count: rows * vocab), t = s
        s.withUnsafeMutableBufferPointer { rng.fillNormal($0, mean: 0, std: 1.5, stream: 1) }
        t.withUnsafeMutableBufferPointer { rng.fillNormal($0, mean: 0, std: 2, stream: 2) }
        let labels: [Int32] = [1, 4, 0]
        let (_, grad) = combined(student: s, teacher: t, labels: labels, rows: rows, vocab: vocab, temperature: 1.7, alpha: 0.6)
        let h: Float = 1e-2
        for i in 0..<(rows * vocab) {
            var plus = s, minus = s
            plus[i] += h
            minus[i] -= h
            let lp = combined(student: plus, teacher: t, labels: labels, rows: rows, vocab: vocab, temperature: 1.7, alpha: 0.6).loss
            let lm = combined(student: minus, teacher: t, labels: labels, rows: rows, vocab: vocab, temperature: 1.7, alpha: 0.6).loss
            let numeric = (lp - lm) / Double(2 * h)
            #expect(abs(numeric - Double(grad[i])) <= 2e-4, "logit \(i): analytic \(grad[i]) numeric \(numeric)")
        }
    }
}
