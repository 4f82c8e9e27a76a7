import Bench
import Comm
import CommZMQ
import Foundation

/// Test hook around a transport: after `stallAfter` received frames it reports `stalled` on stdout
/// and stops responding, so a test can SIGKILL the rank in the middle of a collective.
public final class StallingTransport: Transport {
    let inner: ZMQTransport
    /// Received frames after which the next receive stalls; nil = never. Setting it restarts the count.
    public var stallAfter: Int? { didSet { received = 0 } }
    private var received = 0

    public init(_ inner: ZMQTransport) { self.inner = inner }

    public func send(header: FrameHeader, payload: UnsafeRawBufferPointer, release: SendRelease,
                     deadline: ContinuousClock.Instant) throws {
        try inner.send(header: header, payload: payload, release: release, deadline: deadline)
    }

    public func send(payloadByteCount: Int, deadline: ContinuousClock.Instant,
                     fill: (UnsafeMutableRawBufferPointer) -> FrameHeader) throws {
        try inner.send(payloadByteCount: payloadByteCount, deadline: deadline, fill: fill)
    }

    public func receive<R>(deadline: ContinuousClock.Instant,
                           _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> R) throws -> R {
        if let stallAfter, received >= stallAfter {
            var event = RankReply(ok: true)
            event.event = "stalled"
            RankWorker.writeLine(event)
            Thread.sleep(forTimeInterval: 60)
            throw CommError(.timeout, "stalled by the test hook and never killed")
        }
        received += 1
        return try inner.receive(deadline: deadline, body)
    }

    public func trySend(header: FrameHeader, payload: [UInt8]) { inner.trySend(header: header, payload: payload) }

    public func discardPendingSends() { inner.discardPendingSends() }

    public func close() { inner.close() }
}
