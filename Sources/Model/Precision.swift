/// The arithmetic of the model's matrix products (`training.precision`, and `int8` for inference).
///
/// bf16 is mixed precision: the linear layers' products (attention projections, MLP and expert
/// weights, LM head) take bf16 operands and accumulate in fp32; the master weights, gradients,
/// norms, softmax, attention, the MoE router, the loss and the optimizer stay fp32.
///
/// int8 is dynamic quantization for inference (PyTorch's `quantize_dynamic`): the same linear
/// layers multiply int8 weights (`QuantizedWeights`) by their inputs quantized to uint8 per call,
/// accumulate in int32 and write fp32; everything else stays fp32. It does not train.
public enum Precision: String, Sendable, CaseIterable {
    case fp32, bf16, int8

    /// False for int8, which has forward only.
    public var trains: Bool { self != .int8 }
}
