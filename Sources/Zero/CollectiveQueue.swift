import Comm
import Common
import Foundation

/// A rank's collectives, run one after another on its communication thread.
///
/// The thread owns the rank's `ProcessGroup` (ZeroMQ sockets belong to one thread). It builds it
/// first, from the transport `openTransport` returns, wrapped in a `CountingTransport` so every
/// payload byte is counted by collective. The training thread queues collectives with `submit`
/// and waits for them with `wait`; the time it spends waiting is the step's exposed communication.
/// Every rank must queue the same collectives in the same order. After a failure nothing more
/// runs: every later wait rethrows the first error.
public final class CollectiveQueue: Sendable {
    public let rank: Int
    public let worldSize: Int
    /// Deadline of every collective, from when it starts.
    public let timeout: Duration

    /// Who the rank is in the ring and how it reaches its neighbours.
    public struct Membership: Sendable {
        public let rank: Int, worldSize: Int
        /// The membership epoch and the job, stamped on every frame.
        public let epoch: UInt64, jobID: UInt64
        public init(rank: Int, worldSize: Int, epoch: UInt64, jobID: UInt64) {
            self.rank = rank
            self.worldSize = worldSize
            self.epoch = epoch
            self.jobID = jobID
        }
    }

    public typealias Job = @Sendable (ProcessGroup) throws -> Void

    private struct State {
        var jobs: [Job?] = []   // nil = stop
        var submitted = 0
        var completed = 0
        var started = false
        var failure: (any Error)?
        var exposedSeconds = 0.0
        var sent: ByteCounts?
    }
    private let state = Monitor(State())

    /// Starts the communication thread, which opens the transport (`openTransport` runs there)
    /// and forms the group; `waitUntilReady` reports how that went.
    /// The wire format of gradient all-reduces and reduce-scatters (`zero.reduce_dtype`).
    public let gradientWire: ProcessGroup.WireFormat

    public init(membership m: Membership, timeout: Duration, options: ProcessGroup.Options = ProcessGroup.Options(),
                gradientWire: ProcessGroup.WireFormat = .float32,
                openTransport: @escaping @Sendable () throws -> any Transport) {
        self.gradientWire = gradientWire
        rank = m.rank
        worldSize = m.worldSize
        self.timeout = timeout
        let state = self.state
        let thread = Thread {
            let group: ProcessGroup
            let counter: CountingTransport
            do {
                counter = CountingTransport(try openTransport())
            } catch {
                state.withLock { $0.failure = error }
                return
            }
            do {
                group = try ProcessGroup(rank: m.rank, worldSize: m.worldSize, transport: counter, epoch: m.epoch,
                                         jobID: m.jobID, options: options)
            } catch {
                counter.close()
                state.withLock { $0.failure = error }
                return
            }
            state.withLock { $0.started = true; $0.sent = counter.counts }
            Self.run(group, state: state)
            counter.close()
        }
        thread.name = "zerotrain-comm-\(m.rank)"
        thread.start()
    }

    private static func run(_ group: ProcessGroup, state: Monitor<State>) {
        while true {
            let (job, failed) = state.wait { s -> (job: Job?, failed: Bool)? in
                s.jobs.isEmpty ? nil : (s.jobs.removeFirst(), s.failure != nil)
            }
            guard let job else { return }
            var error: (any Error)?
            if !failed {
                do { try job(group) } catch let e { error = e }
            }
            state.withLock { s in
                s.completed += 1
                if s.failure == nil, let error { s.failure = error }
            }
        }
    }

    /// Blocks until the group is formed; rethrows why it could not be.
    public func waitUntilReady() throws {
        try state.wait { s -> Result<Void, any Error>? in
            if let f = s.failure { return .failure(f) }
            return s.started ? .success(()) : nil
        }.get()
    }

    /// Ends the communication thread after the jobs queued so far; it closes the transport.
    public func shutdown() {
        state.withLock { $0.jobs.append(nil) }
    }

    /// Queues `body` behind everything queued before; returns a ticket for `wait`.
    @discardableResult
    public func submit(_ body: @escaping Job) -> Int {
        state.withLock { s in
            s.submitted += 1
            s.jobs.append(body)
            return s.submitted
        }
    }

    /// Blocks until the job of `ticket` (and so every job before it) has run; rethrows the first
    /// failure. The wait counts as exposed communication.
    public func wait(_ ticket: Int) throws {
        let start = ContinuousClock.now
        try state.wait { s -> Result<Void, any Error>? in
            if let f = s.failure { return .failure(f) }
            guard s.completed >= ticket else { return nil }
            s.exposedSeconds += (ContinuousClock.now - start).seconds
            return .success(())
        }.get()
    }

    /// Runs `body` on the communication thread and returns its result.
    public func perform<R: Sendable>(_ body: @escaping @Sendable (ProcessGroup) throws -> R) throws -> R {
        let result = Monitor<R?>(nil)
        try wait(submit { group in
            let r = try body(group)
            result.withLock { $0 = r }
        })
        return result.withLock { $0! }
    }

    /// Element-wise sums of small values across ranks (bitwise identical on every rank).
    public func allReduceScalars(_ values: [Double]) throws -> [Double] {
        guard worldSize > 1 else { return values }
        let timeout = self.timeout
        return try perform { group in try group.allReduceScalars(values, op: .sum, deadline: .now + timeout) }
    }

    /// Element-wise maxima of small values across ranks (bitwise identical on every rank).
    public func allReduceMaxScalars(_ values: [Double]) throws -> [Double] {
        guard worldSize > 1 else { return values }
        let timeout = self.timeout
        return try perform { group in try group.allReduceMaxScalars(values, deadline: .now + timeout) }
    }

    /// In place: every rank's shard of `buffer` (`RingLayout.shardRange`) is copied to every rank.
    public func allGather(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        guard worldSize > 1 else { return }
        let timeout = self.timeout
        // Safe: the caller's buffer is left to the communication thread until `wait` below returns.
        nonisolated(unsafe) let target = buffer
        try wait(submit { group in try group.allGather(target, deadline: .now + timeout) })
    }

    /// In place: every rank's `buffer` becomes `root`'s.
    public func broadcast(_ buffer: UnsafeMutableBufferPointer<Float>, root: Int) throws {
        guard worldSize > 1 else { return }
        let timeout = self.timeout
        // Safe: the caller's buffer is left to the communication thread until `wait` below returns.
        nonisolated(unsafe) let target = buffer
        try wait(submit { group in try group.broadcast(target, root: root, deadline: .now + timeout) })
    }

    /// Queues a ring exchange — `send` to the successor, the predecessor's bytes into `receive`
    /// (equal sizes) — and returns at once: it runs on the communication thread behind the
    /// collectives queued before and ahead of those queued after, overlapping the caller's
    /// compute. `done` runs there when it has completed (a failure fails the queue, so the
    /// rank's next collective reports it). The caller keeps both buffers alive until then.
    public func exchangeInBackground(send: UnsafeRawBufferPointer, receive: UnsafeMutableRawBufferPointer,
                                     done: @escaping @Sendable () -> Void) {
        let timeout = self.timeout
        // Safe: the caller's buffers are left to the communication thread until `done` runs.
        nonisolated(unsafe) let (out, into) = (send, receive)
        submit { group in
            try group.exchange(send: out, receive: into, checksum: true, deadline: .now + timeout)
            done()
        }
    }

    /// Seconds the training thread has waited for collectives so far.
    public var exposedCommunicationSeconds: Double { state.withLock { $0.exposedSeconds } }

    /// Payload bytes sent so far, by collective (`allReduce`, `reduceScatter`, …).
    public var bytesSent: [String: Int] { state.withLock { $0.sent }?.values ?? [:] }
}
