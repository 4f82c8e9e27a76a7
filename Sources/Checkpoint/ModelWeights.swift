import Foundation
import Model
import Tensor

/// Moves a model's flat buffers to and from safetensors files, tensor by tensor under their
/// Hugging Face names, in the order of the model's `ParameterTable`.
public enum ModelWeights {
    /// Copies every tensor of `table` from `file` into `buffer`; a missing tensor or a wrong
    /// shape is an error naming the tensor. Tensors in the file that the model lacks are ignored
    /// (Hugging Face files may carry buffers such as rotary tables).
    public static func load(_ file: SafeTensorsFile, table: ParameterTable, into buffer: FloatBuffer, prefix: String = "") throws {
        precondition(buffer.count == table.count, "buffer does not match the parameter table")
        try load(file, table: table, into: buffer.pointer, prefix: prefix)
    }

    /// As above, into a flat buffer of `table.count` elements at `pointer`.
    public static func load(_ file: SafeTensorsFile, table: ParameterTable, into pointer: UnsafeMutablePointer<Float>,
                            prefix: String = "") throws {
        for e in table.entries {
            try file.read(prefix + e.name, into: UnsafeMutableBufferPointer(start: pointer + e.offset, count: e.count), shape: e.shape)
        }
    }

    /// Adds every tensor of `table` in `buffer` to `writer` under its name (with `prefix`).
    public static func add(_ buffer: FloatBuffer, table: ParameterTable, to writer: inout SafeTensorsWriter, prefix: String = "") {
        for e in table.entries {
            writer.add(prefix + e.name, shape: e.shape, floats: UnsafeBufferPointer(buffer.slice(e.offset, e.count)))
        }
    }
}
