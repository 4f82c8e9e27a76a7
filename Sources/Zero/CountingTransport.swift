import Comm
import Synchronization

/// A transport that forwards to another and counts the payload bytes it sends, per collective
/// operation — the communication accounting reported with each step's metrics.
///
/// Like every transport it is used by one thread, the rank's communication thread; other threads
/// read the totals through `counts`.
public final class CountingTransport: Transport {
    private let inner: any Transport
    /// Payload bytes sent so far, by operation name (allReduce, reduceScatter, allGather, allReduceScalars, …).
    public let counts = ByteCounts()

    public init(_ inner: any Transport) { self.inner = inner }

    private func count(_ header: FrameHeader, _ bytes: Int) {
        counts.add(bytes, to: ProcessGroup.name(of: header.operation))
    }

    public func send(header: FrameHeader, payload: UnsafeRawBufferPointer, release: SendRelease,
                     deadline: ContinuousClock.Instant) throws {
        count(header, payload.count)
        try inner.send(header: header, payload: payload, release: release, deadline: deadline)
    }

    public func send(payloadByteCount: Int, deadline: ContinuousClock.Instant,
                     fill: (UnsafeMutableRawBufferPointer) -> FrameHeader) throws {
        var header: FrameHeader?
        try inner.send(payloadByteCount: payloadByteCount, deadline: deadline) { out in
            let h = fill(out)
            header = h
            return h
        }
        if let header { count(header, payloadByteCount) }
    }

    public func receive<R>(deadline: ContinuousClock.Instant,
                           _ body: (_ header: UnsafeRawBufferPointer, _ payload: UnsafeRawBufferPointer) throws -> R) throws -> R {
        try inner.receive(deadline: deadline, body)
    }

    public func trySend(header: FrameHeader, payload: [UInt8]) { inner.trySend(header: header, payload: payload) }
    public func discardPendingSends() { inner.discardPendingSends() }
    public func close() { inner.close() }
}

/// Byte totals by name, added to by one thread and read by others.
public final class ByteCounts: Sendable {
    private let totals = Mutex<[String: Int]>([:])

    public init() {}

    public func add(_ bytes: Int, to name: String) { totals.withLock { $0[name, default: 0] += bytes } }

    /// The totals so far.
    public var values: [String: Int] { totals.withLock { $0 } }
}
