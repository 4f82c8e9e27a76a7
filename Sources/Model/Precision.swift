/// The arithmetic of the model's matrix products (`training.precision`).
///
/// bf16 is mixed precision: the linear layers' products (attention projections, MLP and expert
/// weights, LM head) take bf16 operands and accumulate in fp32; the master weights, gradients,
/// norms, softmax, attention, the MoE router, the loss and the optimizer stay fp32.
public enum Precision: String, Sendable, CaseIterable {
    case fp32, bf16
}
