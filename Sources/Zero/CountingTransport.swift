import Comm
import Foundation

/// A transport that forwards to another and counts the payload bytes it sends, per collective
/// operation — the communication accounting reported with each step's metrics.
public final class CountingTransport: Transport, @unchecked Sendable {
    private let inner: any Transport
    private let lock = NSLock()
    private var sent: [String: Int] = [:]

    public init(_ inner: any Transport) { self.inner = inner }

    /// Bytes sent so far, by operation name (allReduce, reduceScatter, allGather, allReduceScalars, …).
    public var bytesSent: [String: Int] {
        lock.lock()
        defer { lock.unlock() }
        return sent
    }

    private func count(_ header: FrameHeader, _ bytes: Int) {
        lock.lock()
        sent[ProcessGroup.name(of: header.operation), default: 0] += bytes
        lock.unlock()
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
