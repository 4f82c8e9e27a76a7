import Foundation
import Model
import Tensor
import Testing
import ZeroTrainTestKit

/// int8 dynamic quantization against PyTorch's `quantize_dynamic` (Tests/Fixtures/quantization,
/// made by scripts/fixtures/quantize_dynamic.py with torch's x86/fbgemm engine): the int8
/// weights and scales, and the quantized Linear's outputs, within one quantization step.
@Suite struct QuantizedLinearTests {
    struct Granularity: Decodable {
        let weight_int8: [Int]
        let scales: [Float]
        let output: [Float]
    }

    struct Case: Decodable {
        let name: String
        let rows: Int, `in`: Int, out: Int
        let weight: [Float], input: [Float]
        let input_scale: Float, input_zero_point: Int32
        let per_tensor: Granularity, per_channel: Granularity
    }

    struct File: Decodable { let torch: String; let cases: [Case] }

    static let fixture: File = {
        let url = Fixtures.root.appendingPathComponent("quantization/quantize_dynamic.json")
        return try! JSONDecoder().decode(File.self, from: Data(contentsOf: url))
    }()

    @Test(arguments: [false, true], GEMMBackend.allCases)
    func matchesPyTorchQuantizeDynamic(perChannel: Bool, backend: GEMMBackend) {
        let saved = GEMM.backend
        GEMM.backend = backend
        defer { GEMM.backend = saved }
        for c in Self.fixture.cases {
            let torch = perChannel ? c.per_channel : c.per_tensor
            // Weights: the same int8 values (at most one step apart) and scales.
            var q = [Int8](repeating: 0, count: c.out * c.in)
            let scales = c.weight.withUnsafeBufferPointer { w in
                q.withUnsafeMutableBufferPointer {
                    Quantization.quantizeWeights(w.baseAddress!, rows: c.out, cols: c.in, perChannel: perChannel, into: $0.baseAddress!)
                }
            }
            #expect(scales.count == torch.scales.count, "\(c.name)")
            for (s, t) in zip(scales, torch.scales) { #expect(abs(s - t) <= 1e-6 * t, "\(c.name): scale \(s) vs torch \(t)") }
            let weightSteps = zip(q, torch.weight_int8).map { abs(Int($0) - $1) }
            #expect(weightSteps.allSatisfy { $0 == 0 }, "\(c.name): \(weightSteps.filter { $0 > 0 }.count) int8 weights differ from torch's")
            // Activation parameters: ChooseQuantizationParams(reduce_range) as torch used them.
            let lo = c.input.min()!, hi = c.input.max()!
            let p = Quantization.activationParameters(min: lo, max: hi)
            #expect(p == QuantizationParameters(scale: c.input_scale, zeroPoint: c.input_zero_point), "\(c.name)")
            // Outputs: within one quantization step (scale_x · scale_w) of torch's.
            let y = FloatBuffer(count: c.rows * c.out)
            let scratch = Int8Scratch()
            q.withUnsafeBufferPointer { qp in
                scales.withUnsafeBufferPointer { sp in
                    c.input.withUnsafeBufferPointer { x in
                        c.weight.withUnsafeBufferPointer { w in
                            Linear.forward(x: x.baseAddress!, weight: w.baseAddress!, y: y.pointer, rows: c.rows, inFeatures: c.in,
                                           outFeatures: c.out,
                                           int8: Int8Operands(weight: qp.baseAddress!, scales: sp.baseAddress!, perChannel: perChannel,
                                                              scratch: scratch))
                        }
                    }
                }
            }
            var worstSteps: Float = 0
            for i in 0..<(c.rows * c.out) {
                let step = c.input_scale * torch.scales[perChannel ? i % c.out : 0]
                worstSteps = max(worstSteps, abs(y.pointer[i] - torch.output[i]) / step)
            }
            #expect(worstSteps <= 1, "\(c.name): output \(worstSteps) quantization steps from torch's")
        }
    }

    static func tinyConfig(moe: Bool, tied: Bool = false) -> ModelConfig {
        var c = ModelConfig()
        c.numLayers = 2
        c.hiddenSize = 32
        c.numAttentionHeads = 4
        c.numKeyValueHeads = 2
        c.vocabSize = 64
        c.maxSeqLen = 16
        c.tieEmbeddings = tied
        if moe {
            var m = ModelConfig.MoEConfig()
            m.numExperts = 4
            m.topK = 2
            m.numSharedExperts = 1
            c.moeConfig = m
        }
        return c
    }

    /// A Transformer in int8 runs every quantized Linear in int8: its logits equal a forward whose
    /// fp32 weights are the dequantized int8 ones up to activation rounding, and differ from fp32.
    @Test(arguments: [(false, false), (true, false), (false, true)])
    func transformerRunsItsLinearsInInt8(moe: Bool, tied: Bool) throws {
        let pool = ThreadPool(threads: 1)
        let config = Self.tinyConfig(moe: moe, tied: tied)
        let fp32 = try Transformer(config: config, pool: pool)
        fp32.initializeParameters(seed: 5)
        let int8 = try Transformer(config: config, pool: pool, precision: .int8)
        int8.parameters.copy(from: fp32.parameters)
        let tokens: [Int32] = (0..<12).map { Int32(($0 * 7 + 3) % 64) }
        #expect(throws: (any Error).self) { try int8.forward(inputs: tokens, targets: nil, batch: 1, seqLen: 12) }
        int8.quantize(perChannel: false)
        let expectedCount = QuantizedWeights.quantizedEntries(int8.table, config: config).count
        #expect(int8.quantized!.weights.count == expectedCount)
        #expect(!int8.quantized!.weights.contains { $0.entry.kind == .router })
        try fp32.forward(inputs: tokens, targets: nil, batch: 1, seqLen: 12)
        try int8.forward(inputs: tokens, targets: nil, batch: 1, seqLen: 12)
        let a = Array(fp32.logits), b = Array(int8.logits)
        let diff = zip(a, b).map { abs($0 - $1) }.max()!
        let size = a.map(abs).max()!
        #expect(diff > 0, "the int8 forward gave fp32's logits: its Linears did not run in int8")
        // 7-bit activations (reduce_range) on random weights: a few percent of the largest logit.
        #expect(diff < 0.1 * size, "int8 logits \(diff) away from fp32 (largest \(size))")
        #expect(throws: (any Error).self) { try int8.backward() }
    }
}
