import Comm
import CZeroMQ
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A CURVE key pair in Z85 text (40 characters each).
public struct ZMQCurveKeyPair: Sendable, Equatable {
    public let publicKey: String
    public let secretKey: String

    public init(publicKey: String, secretKey: String) {
        self.publicKey = publicKey
        self.secretKey = secretKey
    }

    /// A fresh random key pair (needs libzmq built with CURVE, see `ZMQContext.has("curve")`).
    public static func generate() throws -> ZMQCurveKeyPair {
        var pub = [CChar](repeating: 0, count: 41), sec = [CChar](repeating: 0, count: 41)
        if zmq_curve_keypair(&pub, &sec) != 0 { throw ZMQError.last("zmq_curve_keypair") }
        return ZMQCurveKeyPair(publicKey: Self.text(pub), secretKey: Self.text(sec))
    }

    /// The pair of a Z85 secret key (its public key is derived from it).
    public init(secretKey: String) throws {
        guard Self.isZ85Key(secretKey) else { throw CommError(.invalidArgument, "not a Z85 CURVE key (40 characters of the Z85 alphabet)") }
        var pub = [CChar](repeating: 0, count: 41)
        if zmq_curve_public(&pub, secretKey) != 0 { throw ZMQError.last("zmq_curve_public") }
        self.init(publicKey: Self.text(pub), secretKey: secretKey)
    }

    private static func text(_ chars: [CChar]) -> String {
        String(decoding: chars.prefix(40).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The 85 characters of ZeroMQ's Z85 alphabet (rfc.zeromq.org/spec/32).
    static let z85Alphabet = Set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#".utf8)

    /// Whether `text` is a 32-byte key in Z85 (40 characters of the alphabet).
    public static func isZ85Key(_ text: String) -> Bool {
        text.utf8.count == 40 && text.utf8.allSatisfy(z85Alphabet.contains)
    }

    /// The Z85 text of a raw 32-byte key (what a ZAP request carries).
    static func z85(raw: UnsafeRawBufferPointer) -> String? {
        guard raw.count == 32 else { return nil }
        var out = [CChar](repeating: 0, count: 41)
        guard zmq_z85_encode(&out, raw.bindMemory(to: UInt8.self).baseAddress, 32) != nil else { return nil }
        return text(out)
    }

    /// A short, stable name of a public key for logs: its first 12 Z85 characters.
    public static func fingerprint(_ publicKey: String) -> String { String(publicKey.prefix(12)) + "…" }
}

/// Key files: a secret key file holds one Z85 secret key line, a public key file one Z85 public
/// key line, an allow-list one public key per line. Comments: lines starting with "# ", and text
/// after a key and whitespace starting with `#` (Z85 keys may contain `#`, never a space); blank
/// lines are skipped.
/// `zerotrain keygen` writes them with mode 0600.
public enum ZMQKeyFile {
    /// Writes `DIR/NAME.key` (the secret) and `DIR/NAME.pub` (the public key), both mode 0600.
    /// Refuses to overwrite an existing secret.
    public static func write(_ pair: ZMQCurveKeyPair, directory: URL, name: String) throws -> (secret: URL, public: URL) {
        let fm = FileManager.default
        // Parents as usual; the key folder itself 0700.
        try fm.createDirectory(at: directory.deletingLastPathComponent(), withIntermediateDirectories: true)
        if !fm.fileExists(atPath: directory.path) {
            try fm.createDirectory(at: directory, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        }
        let secret = directory.appendingPathComponent(name + ".key"), pub = directory.appendingPathComponent(name + ".pub")
        guard !fm.fileExists(atPath: secret.path) else {
            throw CommError(.invalidArgument, "\(secret.path) exists already; remove it or choose another --out")
        }
        try create(secret, "# ZeroTrain CURVE secret key (Z85); keep it private\n\(pair.secretKey)\n")
        try create(pub, "# ZeroTrain CURVE public key (Z85): put it on the coordinator's allow-list, or pin it as security.coordinator_public_key\n\(pair.publicKey)\n")
        return (secret, pub)
    }

    private static func create(_ url: URL, _ text: String) throws {
        let fd = open(url.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CommError(.invalidArgument, "cannot create \(url.path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        fchmod(fd, 0o600)   // whatever the umask
        let bytes = Array(text.utf8)
        guard Glibc.write(fd, bytes, bytes.count) == bytes.count, fsync(fd) == 0 else {
            throw CommError(.invalidArgument, "cannot write \(url.path): \(String(cString: strerror(errno)))")
        }
    }

    /// The key lines of a file (comments and blank lines dropped), each checked to be Z85.
    public static func keys(at path: String) throws -> [String] {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw CommError(.invalidArgument, "\(path): cannot read the key file")
        }
        var keys: [String] = []
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            // Z85 has '#' in its alphabet: a comment is a line that starts with "# " (or is "#"),
            // or text after the key and whitespace.
            let tokens = raw.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            guard let first = tokens.first, first != "#" else { continue }
            if first.hasPrefix("#") && first.utf8.count != 40 { continue }
            guard tokens.count == 1 || tokens[1].hasPrefix("#") else {
                throw CommError(.invalidArgument, "\(path):\(n + 1): expected one key per line, then optionally whitespace and a # comment")
            }
            let key = String(first)
            guard ZMQCurveKeyPair.isZ85Key(key) else {
                throw CommError(.invalidArgument, "\(path):\(n + 1): not a Z85 CURVE key (40 characters of the Z85 alphabet): \(key.prefix(48))")
            }
            keys.append(key)
        }
        return keys
    }

    /// The key pair of a secret key file; refused when the file is readable by others than its owner.
    public static func secret(at path: String) throws -> ZMQCurveKeyPair {
        var st = stat()
        guard stat(path, &st) == 0 else { throw CommError(.invalidArgument, "\(path): cannot read the secret key file (\(String(cString: strerror(errno))))") }
        guard st.st_mode & 0o077 == 0 else {
            throw CommError(.invalidArgument, "\(path): the secret key file is readable by others (mode \(String(st.st_mode & 0o777, radix: 8))); chmod 600 it")
        }
        let keys = try keys(at: path)
        guard keys.count == 1 else { throw CommError(.invalidArgument, "\(path): expected exactly one secret key line, found \(keys.count)") }
        return try ZMQCurveKeyPair(secretKey: keys[0])
    }
}
