import Comm
import Common
import Foundation
import Synchronization

/// N ranks' ring links in one process, for the tests.
///
/// `links[r]` carries frames from rank r to rank r+1. Payloads are copied on send, so borrowed
/// payloads are released immediately. `kill(rank:)` simulates a dead process: its peers see
/// `.peerLost` once they drained what it sent before dying.
public final class InMemoryFabric: Sendable {
    /// Frames queued on one link; `head` is the next to receive.
    struct Link {
        var frames: [(header: [UInt8], payload: [UInt8])] = []
        var head = 0
    }

    public let worldSize: Int
    let links: [Monitor<Link>]
    private let dead = Mutex<Set<Int>>([])

    public init(worldSize: Int) {
        precondition(worldSize >= 1, "worldSize must be at least 1")
        self.worldSize = worldSize
        links = (0..<worldSize).map { _ in Monitor(Link()) }
    }

    /// The transport endpoint of `rank`. Use each one from a single thread.
    public func transport(rank: Int) -> InMemoryTransport {
        precondition((0..<worldSize).contains(rank), "rank \(rank) outside 0..<\(worldSize)")
        return InMemoryTransport(fabric: self, rank: rank)
    }

    /// Marks `rank` dead: its successor's receives and its predecessor's sends fail with `.peerLost`.
    public func kill(rank: Int) {
        _ = dead.withLock { $0.insert(rank) }
        // Wakes the receivers waiting on every link, so they see it.
        for link in links { link.withLock { _ in } }
    }

    func isDead(_ rank: Int) -> Bool { dead.withLock { $0.contains(rank) } }

    /// Appends raw bytes to the link into `rank` as if its predecessor had sent them
    /// (stale-epoch and corruption tests).
    public func inject(into rank: Int, header: [UInt8], payload: [UInt8]) {
        links[(rank - 1 + worldSize) % worldSize].withLock { $0.frames.append((header, payload)) }
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
        fabric.links[rank].withLock { $0.frames.append((header.encoded, payload)) }
    }

    public func receive<R>(deadline: ContinuousClock.Instant,
                           _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> R) throws -> R {
        guard !isClosed else { throw CommError(.closed, "in-memory transport of rank \(rank) is closed") }
        let next = fabric.links[predecessor].wait(until: deadline) { link -> Result<(header: [UInt8], payload: [UInt8]), CommError>? in
            guard link.head < link.frames.count else {
                return fabric.isDead(predecessor) ? .failure(CommError(.peerLost, "rank \(predecessor) is gone", peer: predecessor)) : nil
            }
            let frame = link.frames[link.head]
            link.frames[link.head] = ([], [])
            link.head += 1
            if link.head > 1024 {
                link.frames.removeFirst(link.head)
                link.head = 0
            }
            return .success(frame)
        }
        guard let next else {
            throw CommError(.timeout, "no frame from rank \(predecessor) before the deadline", peer: predecessor)
        }
        let frame = try next.get()
        return try frame.header.withUnsafeBytes { h in
            try frame.payload.withUnsafeBytes { p in try body(h, p) }
        }
    }

    public func close() { isClosed = true }
}
