import Common

/// Errors of the Checkpoint module: reading and writing safetensors files, checkpoints and
/// Hugging Face folders. A file that cannot be read or written is a runtime failure (`io`);
/// one that is missing or is not what it should be is bad input.
public typealias CheckpointError = DomainError<CheckpointErrors>
public enum CheckpointErrors: ErrorDomain {
    public enum Code: String, Sendable {
        /// Reading or writing failed (the file exists but the I/O did not work).
        case io
        /// A file or checkpoint the user named does not exist.
        case notFound
        case malformed, missingTensor, shapeMismatch, unsupportedDType, incompatible
    }
    public static func kind(of code: Code) -> ErrorKind { code == .io ? .runtime : .badInput }
}
