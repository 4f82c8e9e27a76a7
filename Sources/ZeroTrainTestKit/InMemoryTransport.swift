import Comm
import Foundation

/// N ranks' ring links in one process, for the tests.
///
/// `links[r]` carries frames from rank r to rank r+1. Payloads are copied on send, so borrowed
/// payloads are released immediately. `kill(rank:)` simulates a dead process: its peers see
/// `.peerLost` once they drained what it sent before dying.
public final class InMemoryFabric: @unchecked Sendable {
    final class Link: @unchecked Sendable {
        let condition = NSCondition()
        var frames: [(header: [UInt8], payload: [UInt8])] = []
        var head = 0
    }

    public let worldSize: Int
    let links: [Link]
    private let stateLock = NSLock()
    private var dead: Set<Int> = []

    public init(worldSize: Int) {
        precondition(worldSize >= 1, "worldSize must be at least 1")
        self.worldSize = worldSize
        links = (0..<worldSize).map { _ in Link() }
    }

    /// The transport endpoint of `rank`. Use each one from a single thread.
    public func transport(rank: Int) -> InMemoryTransport {
        precondition((0..<worldSize).contains(rank), "rank \(rank) outside 0..<\(worldSize)")
        return InMemoryTransport(fabric: self, rank: rank)
    }

    /// Marks `rank` dead: its successor's receives and its predecessor's sends fail with `.peerLost`.
    public func kill(rank: Int) {
        stateLock.lock()
        dead.insert(rank)
        stateLock.unlock()
        for link in links {
            link.condition.lock()
            link.condition.broadcast()
            link.condition.unlock()
        }
    }

    func isDead(_ rank: Int) -> Bool {
        stateLock.lock()
        defer { stateLock.unlock() }
        return dead.contains(rank)
    }

    /// Appends raw bytes to the link into `rank` as if its predecessor had sent them
    /// (stale-epoch and corruption tests).
    public func inject(into rank: Int, header: [UInt8], payload: [UInt8]) {
        let link = links[(rank - 1 + worldSize) % worldSize]
        link.condition.lock()
        link.frames.append((header, payload))
        link.condition.broadcast()
        link.condition.unlock()
    }
}

/// One rank's view of an `InMemoryFabric`.
public final class InMemoryTransport: Transport {
    let fabric: InMemoryFabric
    public let rank: Int
    private var isClosed = false

    init(fabric: InMemoryFabric, rank: Int) {
        self.fabric = fabric
        self.rank = rank
    }

    private var successor: Int { (rank + 1) % fabric.worldSize }
    private var predecessor: Int { (rank - 1 + fabric.worldSize) % fabric.worldSize }

    public func send(header: FrameHeader, payload: UnsafeRawBufferPointer, release: SendRelease,
                     deadline: ContinuousClock.Instant) throws {
        defer { release() }
        try enqueue(header: header, payload: Array(payload))
    }

    public func send(payloadByteCount: Int, deadline: ContinuousClock.Instant,
                     fill: (UnsafeMutableRawBufferPointer) -> FrameHeader) throws {
        var bytes = [UInt8](repeating: 0, count: payloadByteCount)
        let header = bytes.withUnsafeMutableBytes { fill($0) }
        try enqueue(header: header, payload: bytes)
    }

    public func trySend(header: FrameHeader, payload: [UInt8]) {
        try? enqueue(header: header, payload: payload)
    }

    private func enqueue(header: FrameHeader, payload: [UInt8]) throws {
        guard !isClosed else { throw CommError(.closed, "in-memory transport of rank \(rank) is closed") }
        if fabric.isDead(successor) {
            throw CommError(.peerLost, "rank \(successor) is gone", peer: successor)
        }
        let link = fabric.links[rank]
        link.condition.lock()
        link.frames.append((header.encoded, payload))
        link.condition.broadcast()
        link.condition.unlock()
    }

    public func receive<R>(deadline: ContinuousClock.Instant,
                           _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> R) throws -> R {
        guard !isClosed else { throw CommError(.closed, "in-memory transport of rank \(rank) is closed") }
        let link = fabric.links[predecessor]
        link.condition.lock()
        while link.head == link.frames.count {
            if fabric.isDead(predecessor) {
                link.condition.unlock()
                throw CommError(.peerLost, "rank \(predecessor) is gone", peer: predecessor)
            }
            let remaining = ContinuousClock.now.duration(to: deadline)
            if remaining <= .zero {
                link.condition.unlock()
                throw CommError(.timeout, "no frame from rank \(predecessor) before the deadline", peer: predecessor)
            }
            let (s, atto) = remaining.components
            _ = link.condition.wait(until: Date(timeIntervalSinceNow: min(Double(s) + Double(atto) * 1e-18, 0.05)))
        }
        let frame = link.frames[link.head]
        link.frames[link.head] = ([], [])
        link.head += 1
        if link.head > 1024 {
            link.frames.removeFirst(link.head)
            link.head = 0
        }
        link.condition.unlock()
        return try frame.header.withUnsafeBytes { h in
            try frame.payload.withUnsafeBytes { p in try body(h, p) }
        }
    }

    public func close() { isClosed = true }
}
