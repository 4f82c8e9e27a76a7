import Common

/// The one error type of the communication layer.
///
/// Every failure of a collective names the operation, its sequence number in the epoch and the
/// rank this rank was waiting for (`peer`), so a log line is enough to find the culprit.
public struct CommError: ZeroTrainError, Sendable, Equatable {
    /// What went wrong, coarse enough to branch on.
    public enum Code: String, Sendable, Equatable {
        /// A deadline passed while waiting for `peer`.
        case timeout
        /// The transport saw the connection to `peer` drop (process died, host gone).
        case peerLost
        /// Another rank aborted this collective and told us; `peer` is the rank it blames.
        case peerAborted
        /// A frame failed validation (magic, version, lengths, checksum ...).
        case malformedFrame
        /// A valid frame that does not fit the schedule (different collective, size or hop).
        case protocolMismatch
        /// A frame from a newer membership epoch arrived: this group is stale.
        case epochAhead
        /// The group failed earlier; re-form it with a new epoch.
        case groupFailed
        /// A socket, endpoint or option could not be set up.
        case transport
        /// The caller passed arguments that cannot work (wrong rank, root, sizes).
        case invalidArgument
        /// The transport was closed.
        case closed
    }

    public var code: Code
    /// Human-readable explanation with what to do next.
    public var message: String
    /// The collective (`allReduce`, `broadcast` ...) or `nil` outside one.
    public var operation: String?
    /// Sequence number of the collective inside its epoch.
    public var sequence: UInt64?
    /// Membership epoch of the group that failed.
    public var epoch: UInt64?
    /// The rank this rank waited for, or the rank blamed for the failure.
    public var peer: Int?
    /// What caused it (e.g. the `ZMQError` of `zmq_msg_send: Resource temporarily unavailable (errno 11)`).
    public var cause: (any Error)?

    public init(_ code: Code, _ message: String, operation: String? = nil, sequence: UInt64? = nil,
                epoch: UInt64? = nil, peer: Int? = nil, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.operation = operation
        self.sequence = sequence
        self.epoch = epoch
        self.peer = peer
        self.cause = cause
    }

    /// The cause as one line of text.
    public var underlying: String? { cause.map { Self.oneLine($0) } }

    /// A wrong argument is the caller's to fix; everything else is a failure while running.
    public var kind: ErrorKind { code == .invalidArgument ? .badInput : .runtime }

    /// Equal when everything but the cause is, and the causes read the same.
    public static func == (a: CommError, b: CommError) -> Bool {
        a.code == b.code && a.message == b.message && a.operation == b.operation && a.sequence == b.sequence
            && a.epoch == b.epoch && a.peer == b.peer && a.underlying == b.underlying
    }

    public var description: String {
        var s = "comm error [\(code.rawValue)]"
        if let operation { s += " in \(operation)" }
        if let sequence { s += " #\(sequence)" }
        if let epoch { s += " (epoch \(epoch))" }
        if let peer { s += " peer rank \(peer)" }
        s += ": \(message)"
        if let underlying { s += " (cause: \(underlying))" }
        return s
    }
}
