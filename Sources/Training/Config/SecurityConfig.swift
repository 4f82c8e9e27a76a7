import Common

/// The `security:` section: CURVE authentication and encryption of the control plane and the ring
/// (docs/security.md). Without it, daemons listen on loopback only unless `--insecure-listen`.
/// Paths are relative to the working directory of the process that reads them.
public struct SecurityConfig: ConfigSection, Equatable {
    /// The coordinator's CURVE public key, pinned by workers: the Z85 text (40 characters) or the
    /// path of the `.pub` file `zerotrain keygen` wrote.
    public var coordinatorPublicKey: String?
    /// The coordinator admits only workers whose public key is in this file (one Z85 key per line,
    /// `#` comments).
    public var allowedWorkers: String?
    /// This process's secret key file (`zerotrain keygen`; mode 0600, refused if others can read it).
    public var secretKeyFile: String?
    /// Encrypt the ring links (gradients, parameters) with CURVE. false: ring links are still
    /// admitted only from the predecessor's address, but travel in the clear (trusted networks).
    public var encryptDataPlane = true
    /// A job token that workers send with their registration; the coordinator refuses any other
    /// (guards against joining the wrong job). Not a secret on its own: the keys are.
    public var jobToken: String?

    public init() {}

    public static let fields: [ConfigField<Self>] = [
        .init("coordinator_public_key", \.coordinatorPublicKey), .init("allowed_workers", \.allowedWorkers),
        .init("secret_key_file", \.secretKeyFile), .init("encrypt_data_plane", \.encryptDataPlane),
        .init("job_token", \.jobToken),
    ]

    public func validate(path p: String = "security") throws {
        func fail(_ f: String, _ rule: String) -> ConfigError { ConfigError("\(p).\(f): \(rule)") }
        for (key, value) in [("coordinator_public_key", coordinatorPublicKey), ("allowed_workers", allowedWorkers),
                             ("secret_key_file", secretKeyFile), ("job_token", jobToken)] {
            if let value, value.isEmpty { throw fail(key, "must not be empty") }
        }
        if let t = jobToken, t.utf8.count > 256 { throw fail("job_token", "must be at most 256 bytes, got \(t.utf8.count)") }
    }
}
