import CZeroMQ
#if canImport(Glibc)
import Glibc
#endif

/// Which connections of one bound socket failed their ZMTP/CURVE handshake, from the socket's
/// libzmq monitor events: a state machine fed one event at a time that returns the refusal to log,
/// no sockets, no clock. `ZMQHandshakeWatcher` feeds it.
///
/// libzmq reports a connection as `ACCEPTED(fd)` … `DISCONNECTED(fd)`; in between a successful
/// handshake raises `HANDSHAKE_SUCCEEDED` (which carries no fd) and a failed one
/// `HANDSHAKE_FAILED_PROTOCOL` or `…_NO_DETAIL` (errno) — or nothing at all: a socket with a ZAP
/// domain drops a peer whose greeting is not ZMTP 3 (random bytes, HTTP) without an event. So a
/// connection that disconnects before a handshake succeeded is a failed one. `…_FAILED_AUTH` is a
/// ZAP refusal, which the ZAP handler (`ZMQAuthenticator`) has logged with the key: not logged twice.
struct HandshakeWatch {
    /// Connections accepted whose handshake has not succeeded: fd → peer address (nil: unknown).
    private(set) var unconfirmed: [Int32: String?] = [:]
    /// Why the last handshake failed, for the connection that disconnects next; nil = none failed.
    private var failure: Failure?
    /// Successes that could not be attributed (several handshakes under way): that many
    /// unconfirmed disconnections without a failure event are not logged.
    private var unattributed = 0

    private enum Failure {
        case reason(String)
        /// Refused by the ZAP handler, which logged it.
        case authentication
    }

    /// Accepted connections remembered at most (a flood of half-open ones resets the table).
    static let capacity = 1024

    /// A connection whose handshake failed: the peer's address (nil: not known) and why.
    struct Refusal: Equatable {
        var address: String?
        var reason: String
        /// Without an address: libzmq closed the connection before the watcher could read it (a
        /// socket with a ZAP domain drops a non-ZMTP greeting at once, with a reset).
        var line: String { "\(address ?? "an unknown address (closed before it could be read)"): \(reason)" }
    }

    /// One monitor event; `address` is the peer's address for `ACCEPTED` (`getpeername` on its fd).
    /// Returns the refusal when the event ends a connection whose handshake failed.
    mutating func event(_ kind: Int32, value: UInt32, address: String?) -> Refusal? {
        switch kind {
        case ZMQ_EVENT_ACCEPTED:
            if unconfirmed.count >= Self.capacity { unconfirmed.removeAll() }
            unconfirmed[Int32(bitPattern: value)] = .some(address)
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
            if unconfirmed.count == 1 { unconfirmed.removeAll() } else if unconfirmed.count > 1 { unattributed += 1 }
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
            failure = .reason(Self.describe(protocolError: Int32(bitPattern: value)))
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            failure = .reason("the handshake failed (a peer without CURVE, or one that broke off: \(Self.errorName(Int32(bitPattern: value))))")
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
            failure = .authentication
        case ZMQ_EVENT_DISCONNECTED:
            let entry = unconfirmed.removeValue(forKey: Int32(bitPattern: value))
            let who = entry ?? nil
            if let f = failure {
                failure = nil
                if case .reason(let reason) = f { return Refusal(address: who, reason: reason) }
                return nil
            }
            guard entry != nil else { return nil }   // a connection that was up ended
            if unattributed > 0 {
                unattributed -= 1
                return nil
            }
            return Refusal(address: who, reason: "no ZeroMQ handshake (the peer sent something that is not a ZMTP 3 greeting, or nothing)")
        default:
            break
        }
        return nil
    }

    static func describe(protocolError code: Int32) -> String {
        switch code {
        case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
            "the CURVE handshake did not decrypt (the peer pinned another server key, or sent a forged handshake)"
        case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            "the peer does not speak CURVE (security mechanisms differ)"
        default:
            "a malformed handshake (ZMTP protocol error 0x\(String(UInt32(bitPattern: code), radix: 16)))"
        }
    }

    /// "connection reset by peer (errno 104)".
    static func errorName(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return String(cString: text).lowercased() + " (errno \(code))"
    }
}
