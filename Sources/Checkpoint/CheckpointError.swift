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
        /// A checkpoint folder without its manifest, or a file its manifest lists is missing.
        case incomplete
        /// A file's size or checksum differs from what the manifest records.
        case corrupted
        /// A manifest of a format version this build does not read.
        case unsupportedVersion
        /// An argument outside its range (e.g. `keep` < 1).
        case invalidArgument
    }
    public static func kind(of code: Code) -> ErrorKind { code == .io ? .runtime : .badInput }
}
