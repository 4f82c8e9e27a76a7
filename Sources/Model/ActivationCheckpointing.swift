/// Activation recomputation (`training.activation_checkpointing`): which block activations a
/// forward keeps for backward.
///
/// `.none` keeps every block's. `.everyK(K)` keeps only the input of every block and one group of
/// K blocks' activations: backward runs each group's forward again, from its saved input, just
/// before the group's backward (the last group's activations are still in place). `.everyK(1)` is
/// `every_layer`. The gradients are the same bits as without recomputation.
public enum ActivationCheckpointing: Sendable, Equatable {
    case none
    case everyK(Int)

    public static let everyLayer = ActivationCheckpointing.everyK(1)

    /// Sets of per-block buffers a model of `layers` blocks allocates.
    public func slots(layers: Int) -> Int {
        switch self {
        case .none: layers
        case .everyK(let k): max(1, min(k, layers))
        }
    }

    /// The blocks in groups, in order: one group of all blocks without recomputation.
    public func groups(layers: Int) -> [Range<Int>] {
        let k = slots(layers: layers)
        return stride(from: 0, to: layers, by: k).map { $0..<min($0 + k, layers) }
    }
}
