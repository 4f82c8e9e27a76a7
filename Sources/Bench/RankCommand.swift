import Comm

/// One line of JSON from a launcher (`zerotrain bench comm`, the multi-process tests) to a rank
/// worker process (`RankWorker`).
///
/// Commands every `RankWorker` serves: `bind` (rank, worldSize, epoch, jobID, endpoint; replies
/// with the bound endpoint), `connect` (successor endpoint; forms the `ProcessGroup`), `bench`
/// (timed runs), `exit`. A worker may serve more through its command handler: the test kit's rank
/// process adds `run` (one collective checked against the reference; seed, average, root,
/// stallAfterFrames).
public struct RankCommand: Codable, Sendable {
    public var cmd: String
    public var rank: Int?
    public var worldSize: Int?
    public var epoch: UInt64?
    public var jobID: UInt64?
    public var endpoint: String?
    public var successor: String?
    public var kind: CollectiveBenchmark.Kind?
    /// `bench`: bytes; `run`: elements.
    public var count: Int?
    /// `run`: seed of the deterministic inputs.
    public var seed: UInt64?
    /// `run`: average instead of sum.
    public var average: Bool?
    public var bfloat16: Bool?
    /// `run`: broadcast root.
    public var root: Int?
    public var timeoutMs: Int?
    /// Test kit's `run`: after this many received frames, report `stalled` and stop (until killed).
    public var stallAfterFrames: Int?
    public var checksum: Bool?
    /// `bind`: kernel SNDBUF/RCVBUF bytes (ZMQTransport.Options.kernelBufferBytes).
    public var socketBufferBytes: Int32?
    /// `connect`: ProcessGroup.Options.segmentBytes.
    public var segmentBytes: Int?
    public var warmup: Int?
    public var iterations: Int?

    /// `bind`: libzmq I/O threads of the rank's context (default 1; the first bind decides).
    public var ioThreads: Int?
    /// `bind`: CURVE on the ring link with this Z85 secret key, admitting only `predecessorPublicKey`.
    public var curveSecretKey: String?
    public var predecessorPublicKey: String?
    /// `connect`: the successor's CURVE public key (with `curveSecretKey`).
    public var successorPublicKey: String?

    public init(cmd: String) { self.cmd = cmd }
}

/// One line of JSON back from the worker.
public struct RankReply: Codable, Sendable {
    public var ok: Bool
    /// `stalled` for the test kit's stall hook; nil for replies.
    public var event: String?
    public var endpoint: String?
    /// `run`: result digest as hex.
    public var digest: String?
    public var seconds: Double?
    public var times: [Double]?
    public var error: String?
    public var code: String?
    public var peer: Int?
    public var operation: String?
    public var sequence: UInt64?
    public var droppedFrames: Int?

    public init(ok: Bool) { self.ok = ok }

    init(_ error: Error) {
        ok = false
        if let e = error as? CommError {
            self.error = e.description
            code = e.code.rawValue
            peer = e.peer
            operation = e.operation
            sequence = e.sequence
        } else {
            self.error = "\(error)"
        }
    }
}
