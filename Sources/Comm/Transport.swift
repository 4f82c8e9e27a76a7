/// One rank's two links of a ring: frames go to the successor `(rank + 1) % N` and come from the
/// predecessor `(rank - 1 + N) % N`.
///
/// Collectives are schedules over this protocol (`ProcessGroup`); ZeroMQ (`CommZMQ.ZMQTransport`)
/// implements it, and so does the test kit's in-memory fabric (ZeroTrainTestKit). An instance is
/// used by one thread at a time (the thread that runs the collectives): sockets are not thread-safe.
///
/// Every method throws `CommError`: `.timeout` when `deadline` passes, `.peerLost` when the link's
/// peer disappeared (its `peer` is the predecessor for receives, the successor for sends),
/// `.closed` after `close()`.
public protocol Transport: AnyObject {
    /// Sends a frame whose payload is *borrowed*: the transport may read `payload` until it calls
    /// `release` (possibly later, from another thread). The caller must not modify or free the
    /// bytes before that. `release` is called exactly once, also when the send fails.
    func send(header: FrameHeader, payload: UnsafeRawBufferPointer, release: SendRelease,
              deadline: ContinuousClock.Instant) throws

    /// Sends a frame whose payload the transport allocates: `fill` writes exactly
    /// `payloadByteCount` bytes into it and returns the header to send with it. Used for small
    /// frames and for payloads converted on the way out (bf16).
    func send(payloadByteCount: Int, deadline: ContinuousClock.Instant,
              fill: (UnsafeMutableRawBufferPointer) -> FrameHeader) throws

    /// Waits for the next frame from the predecessor and hands its raw header and payload bytes to
    /// `body`. The bytes are valid only during `body` (they may live in the transport's receive
    /// buffer, so reduce straight from them).
    func receive<R>(deadline: ContinuousClock.Instant,
                    _ body: (_ header: UnsafeRawBufferPointer, _ payload: UnsafeRawBufferPointer) throws -> R) throws -> R

    /// Best-effort, non-blocking-ish send used to spread an abort; never throws.
    func trySend(header: FrameHeader, payload: [UInt8])

    /// Drops every queued send (running their releases) so a failed collective can hand its
    /// buffer back to the caller. The send link may be unusable afterwards; the group is failed anyway.
    func discardPendingSends()

    /// Closes the links. Pending sends are dropped (their releases still run).
    func close()
}

extension Transport {
    /// Transports that copy payloads on send have nothing to discard.
    public func discardPendingSends() {}
}

/// The "you may reuse these bytes now" signal for a borrowed send payload.
public struct SendRelease: Sendable {
    let ledger: SendLedger?
    let index: Int

    /// A release that tracks nothing (the caller does not care when the bytes are free).
    public static let untracked = SendRelease(ledger: nil, index: 0)

    init(ledger: SendLedger?, index: Int) {
        self.ledger = ledger
        self.index = index
    }

    /// Marks the payload as no longer used by the transport. Thread-safe; call exactly once.
    public func callAsFunction() { ledger?.markReleased(index) }
}
