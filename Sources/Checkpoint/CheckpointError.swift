/// Errors of the Checkpoint module: reading and writing safetensors files and checkpoints.
public struct CheckpointError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        case io, malformed, missingTensor, shapeMismatch, unsupportedDType, incompatible
    }
    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
