import CZeroMQ
import Comm
import Common
#if canImport(Glibc)
import Glibc
#endif

/// A failed libzmq call: the function, what it was doing, and `errno` with libzmq's text for it.
public struct ZMQError: ZeroTrainError, Sendable {
    /// `zmq_errno()` right after the failing call (EAGAIN, EINTR, ETERM, EADDRINUSE, ...).
    public let errno: Int32
    /// The libzmq function, e.g. `zmq_bind`.
    public let function: String
    /// What the call was for, e.g. the endpoint.
    public let context: String

    public init(errno: Int32, function: String, context: String) {
        self.errno = errno
        self.function = function
        self.context = context
    }

    /// Captures `zmq_errno()` now.
    static func last(_ function: String, _ context: String = "") -> ZMQError {
        ZMQError(errno: zmq_errno(), function: function, context: context)
    }

    /// libzmq's text for `errno` (system errors included).
    public var reason: String { String(cString: zmq_strerror(errno)) }

    public enum Code: String, Sendable { case call }
    public var code: Code { .call }
    public var message: String { description }
    public var cause: (any Error)? { nil }
    public var kind: ErrorKind { .runtime }

    public var wouldBlock: Bool { errno == EAGAIN }
    public var interrupted: Bool { errno == EINTR }
    /// The context was shut down: close the socket.
    public var terminated: Bool { errno == ETERM }

    public var description: String {
        "\(function)\(context.isEmpty ? "" : "(\(context))") failed: \(reason) (errno \(errno))"
    }

    /// Any error from this module's wrapper as the communication layer's error type.
    static func commError(_ error: any Error, _ what: String, peer: Int? = nil) -> CommError {
        if let e = error as? ZMQError { return e.commError(what, peer: peer) }
        if let e = error as? CommError { return e }
        return CommError(.transport, what, peer: peer, cause: error)
    }

    /// The same failure as the communication layer's error type.
    public func commError(_ what: String, peer: Int? = nil) -> CommError {
        CommError(terminated ? .closed : .transport, what, peer: peer, cause: self)
    }
}
