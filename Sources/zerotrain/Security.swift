import ArgumentParser
import Cluster
import Comm
import CommZMQ
import Foundation
import Training

struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a CURVE key pair (Z85): DIR/NAME.key (secret) and DIR/NAME.pub (public), mode 0600.",
        discussion: "The coordinator's .pub goes into workers' security.coordinator_public_key; each worker's .pub into the coordinator's allowed_workers file (docs/security.md).")

    @Option(name: .long, help: "Directory to write into (created, mode 0700).")
    var out: String

    @Option(name: .long, help: "File name stem (default zerotrain).")
    var name = "zerotrain"

    func run() throws {
        try runReportingErrors {
            guard !name.isEmpty, !name.contains("/") else { throw ValidationError("--name \(name): expected a file name without /") }
            let pair = try SecurityResolver.bad { try ZMQCurveKeyPair.generate() }
            let files = try SecurityResolver.bad { try ZMQKeyFile.write(pair, directory: URL(fileURLWithPath: out), name: name) }
            Console.out("wrote \(files.secret.path) (secret, mode 0600) and \(files.public.path)")
            Console.out("public key \(pair.publicKey)")
        }
    }
}

/// Turns the `security:` section (and a worker's flags) into the network's keys, and enforces
/// "without keys, loopback only".
enum SecurityResolver {
    /// Runs `body`, turning a key-file or config problem into a bad-input error (exit 2).
    static func bad<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as CommError { throw ValidationError(e.message) }
    }

    /// A Z85 key, or the path of a file holding one.
    static func publicKey(_ text: String, field: String) throws -> String {
        if ZMQCurveKeyPair.isZ85Key(text) { return text }
        let keys = try bad { try ZMQKeyFile.keys(at: text) }
        guard keys.count == 1 else { throw ValidationError("\(field): \(text) holds \(keys.count) keys, expected one") }
        return keys[0]
    }

    /// The coordinator's keys: its secret and the allow-list (nil without a `security:` section).
    static func coordinator(_ s: SecurityConfig?) throws -> ZMQNetwork.Security? {
        guard let s, s.secretKeyFile != nil || s.allowedWorkers != nil else { return nil }
        guard let secret = s.secretKeyFile else { throw ValidationError("security.secret_key_file: the coordinator needs its key pair (zerotrain keygen)") }
        guard let list = s.allowedWorkers else { throw ValidationError("security.allowed_workers: the coordinator needs the file of worker public keys it admits") }
        var security = ZMQNetwork.Security(keys: try bad { try ZMQKeyFile.secret(at: secret) })
        security.allowedWorkers = Set(try bad { try ZMQKeyFile.keys(at: list) })
        if security.allowedWorkers.isEmpty { throw ValidationError("security.allowed_workers: \(list) lists no key; no worker could join") }
        security.encryptDataPlane = s.encryptDataPlane
        return security
    }

    /// A worker's keys: its secret and the coordinator's pinned public key.
    static func worker(_ s: SecurityConfig?) throws -> ZMQNetwork.Security? {
        guard let s, s.secretKeyFile != nil || s.coordinatorPublicKey != nil else { return nil }
        guard let secret = s.secretKeyFile else { throw ValidationError("--secret-key-file (security.secret_key_file): the worker needs its key pair (zerotrain keygen)") }
        guard let pinned = s.coordinatorPublicKey else { throw ValidationError("--coordinator-key (security.coordinator_public_key): the worker must pin the coordinator's public key") }
        var security = ZMQNetwork.Security(keys: try bad { try ZMQKeyFile.secret(at: secret) })
        security.coordinatorKey = try publicKey(pinned, field: "security.coordinator_public_key")
        security.encryptDataPlane = s.encryptDataPlane
        return security
    }

    /// Without keys a daemon binds only to loopback (or ipc/inproc); `--insecure-listen` allows
    /// more, with a warning. `what` names the flag for the message.
    static func checkListen(host: String?, secured: Bool, insecure: Bool, what: String) throws {
        guard !secured, let host, !isLoopback(host) else { return }
        guard insecure else {
            throw ValidationError("\(what): \(host) is not a loopback address, and no security: keys are configured; configure keys (docs/security.md) or pass --insecure-listen to accept anyone who reaches it")
        }
        Console.out("warning: \(what) \(host) without keys (--insecure-listen): anyone who reaches it can join the job or inject into the ring")
    }

    /// The host of `tcp://HOST:PORT` (nil for ipc:// and inproc://).
    static func tcpHost(_ endpoint: String) -> String? {
        guard endpoint.hasPrefix("tcp://") else { return nil }
        var host = String(endpoint.dropFirst(6))
        if let colon = host.lastIndex(of: ":") { host = String(host[..<colon]) }
        return host.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }
}

/// `zerotrain local --curve`: a key pair for the coordinator and one per worker slot, generated for
/// the job in RUN_DIR/keys (secrets mode 0600, the folder 0700), and the allow-list of the workers'
/// keys. A replacement worker reuses its slot's key. Regenerated for every run.
enum LocalKeys {
    struct Files: Sendable {
        var coordinatorSecret: String
        var coordinatorPublic: String
        var allowList: String
        var workerSecrets: [String]
    }

    static func generate(in directory: URL, workers: Int) throws -> Files {
        try? FileManager.default.removeItem(at: directory)
        return try SecurityResolver.bad {
            let coordinator = try ZMQCurveKeyPair.generate()
            let c = try ZMQKeyFile.write(coordinator, directory: directory, name: "coordinator")
            var secrets: [String] = [], list = "# the workers of this zerotrain local job (zerotrain local --curve)\n"
            for slot in 0..<workers {
                let pair = try ZMQCurveKeyPair.generate()
                secrets.append(try ZMQKeyFile.write(pair, directory: directory, name: "worker-\(slot)").secret.path)
                list += "\(pair.publicKey)  # worker \(slot)\n"
            }
            let allow = directory.appendingPathComponent("allowed-workers")
            try list.write(to: allow, atomically: true, encoding: .utf8)
            return Files(coordinatorSecret: c.secret.path, coordinatorPublic: c.public.path, allowList: allow.path, workerSecrets: secrets)
        }
    }
}
