import Model
import Tensor

/// One sequence's keys and values, every layer: position p of layer l at slot p % capacity of
/// `keys`/`values` (layers, capacity, kvHeads·headDim). A full-attention model needs a slot per
/// position of the sequence; a sliding-window model of window W needs W (the cache rolls: a new
/// position overwrites the one W back, which no later query sees).
public final class KVCache {
    public let layers: Int, capacity: Int, kvDim: Int
    public let keys: FloatBuffer, values: FloatBuffer
    /// Positions seen so far (0 ..< length); the next token goes to position `length`.
    public internal(set) var length = 0

    /// A cache for a sequence of up to `positions` positions of `config`'s model.
    public init(config: ModelConfig, positions: Int) {
        layers = config.numLayers
        kvDim = config.kvHeads * config.headSize
        capacity = max(1, min(positions, config.window ?? positions))
        keys = FloatBuffer(count: layers * capacity * kvDim)
        values = FloatBuffer(count: layers * capacity * kvDim)
    }

    /// Layer `l`'s keys (capacity, kvDim).
    @inline(__always) func keys(layer l: Int) -> UnsafeMutablePointer<Float> { keys.pointer + l * capacity * kvDim }
    @inline(__always) func values(layer l: Int) -> UnsafeMutablePointer<Float> { values.pointer + l * capacity * kvDim }

    /// Stores layer `l`'s keys and values of the `count` new positions length ..< length + count
    /// (rows of kvDim); only the last `capacity` of them can still be read.
    func store(layer l: Int, keys newKeys: UnsafePointer<Float>, values newValues: UnsafePointer<Float>, count: Int) {
        for r in max(0, count - capacity)..<count {
            let slot = (length + r) % capacity
            (keys(layer: l) + slot * kvDim).update(from: newKeys + r * kvDim, count: kvDim)
            (values(layer: l) + slot * kvDim).update(from: newValues + r * kvDim, count: kvDim)
        }
    }

    /// Bytes held.
    public var bytes: Int { 8 * layers * capacity * kvDim }
}
