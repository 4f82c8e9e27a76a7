/// The arithmetic of the model's matrix products (`training.precision`, and `int8` for inference).
///
/// bf16, fp16 and fp8 are mixed precision: the linear layers' products (attention projections,
/// MLP and expert weights, LM head) read low-precision copies of the weights and take their input
/// (forward) or output gradient (backward) rounded to the same format; the master weights,
/// gradients, norms, softmax, attention, the MoE router, the loss and the optimizer stay fp32.
/// - bf16: bf16 operands, fp32 accumulation, on oneDNN (AVX512_BF16 where the CPU has it).
/// - fp16: operands rounded to IEEE fp16 and multiplied in fp32 (no CPU here multiplies fp16);
///   the trainer scales the loss dynamically so that small gradients survive fp16's range.
/// - fp8: simulated — weights and inputs rounded to e4m3, output gradients to e5m2, each tensor
///   with its own delayed scale (`FP8Scaling`), multiplied in fp32; no speedup, the format's
///   numerics only.
///
/// int8 is dynamic quantization for inference (PyTorch's `quantize_dynamic`): the same linear
/// layers multiply int8 weights (`QuantizedWeights`) by their inputs quantized to uint8 per call,
/// accumulate in int32 and write fp32; everything else stays fp32. It does not train.
public enum Precision: String, Sendable, CaseIterable, Codable {
    case fp32, bf16, fp16, fp8, int8

    /// False for int8, which has forward only.
    public var trains: Bool { self != .int8 }

    /// The training precisions, as a config error lists them.
    public static var trainingNames: String { "fp32, bf16, fp16 or fp8" }

    /// Mixed precision: fp32 master weights, products on low-precision weight copies.
    public var isMixed: Bool { self == .bf16 || self == .fp16 || self == .fp8 }

    /// Bytes per element of the weight copies the products read (0: they read the fp32 weights).
    public var weightCopyBytes: Int {
        switch self {
        case .bf16, .fp16: 2
        case .fp8: 1
        case .fp32, .int8: 0
        }
    }
}
