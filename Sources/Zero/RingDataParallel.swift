import Comm
import Foundation
import Tensor

/// ZeRO stage 0 (plain data parallelism): gradients averaged by ring all-reduce in buckets that
/// start while backward is still running.
///
/// A dedicated communication thread owns the `ProcessGroup` (ZeroMQ sockets belong to one thread),
/// created there by `makeGroup`. The training thread hands it ready gradient ranges; adjacent
/// ranges are merged until a bucket reaches `bucketElements`, then the bucket's all-reduce is queued.
/// Buckets are cut at the same places on every rank (they depend only on the parameter table and
/// the bucket size), and each ring all-reduce is bitwise identical on every rank.
public final class RingDataParallel: GradientSync, @unchecked Sendable {
    public let rank: Int
    public let worldSize: Int
    public let bucketElements: Int
    /// Deadline of every collective.
    public let timeout: Duration

    private let gradients: UnsafeMutablePointer<Float>
    private let gradientCount: Int
    private let condition = NSCondition()
    private var jobs: [Job] = []
    private var pendingBuckets = 0
    private var failure: Error?
    private var stopping = false
    private var scalarResult: [Double]?
    private var pending: Range<Int>?
    private var started = false
    /// Statistics for the time split: seconds the training thread waited in finishGradients.
    public private(set) var exposedCommunicationSeconds = 0.0

    private enum Job { case reduce(Range<Int>), scalars([Double]), run((ProcessGroup) throws -> Void), stop }
    /// `run` jobs queued and finished so far (they finish in queue order).
    private var submitted = 0
    private var completed = 0

    /// - Parameters:
    ///   - gradients: the flat gradient buffer (must outlive this object).
    ///   - makeGroup: builds the process group on the communication thread; the closure it returns
    ///     runs there when the thread ends (to close the transport on the thread that used it).
    public init(rank: Int, worldSize: Int, gradients: FloatBuffer, bucketElements: Int, timeout: Duration,
                makeGroup: @escaping @Sendable () throws -> (ProcessGroup, @Sendable () -> Void)) {
        self.rank = rank
        self.worldSize = worldSize
        self.gradients = gradients.pointer
        self.gradientCount = gradients.count
        self.bucketElements = max(1, bucketElements)
        self.timeout = timeout
        let thread = Thread { [self] in self.communicationLoop(makeGroup) }
        thread.name = "zerotrain-comm-\(rank)"
        thread.start()
    }

    /// Ends the communication thread (its group and sockets close there).
    public func shutdown() {
        condition.lock()
        jobs.append(.stop)
        condition.broadcast()
        condition.unlock()
    }

    /// Waits until the group is formed (or failed to form).
    public func waitUntilReady() throws {
        condition.lock()
        defer { condition.unlock() }
        while !started && failure == nil { condition.wait() }
        if let failure { throw failure }
    }

    public func gradientsReady(_ range: Range<Int>) {
        guard worldSize > 1, !range.isEmpty else { return }
        if let p = pending, p.lowerBound == range.upperBound {
            pending = range.lowerBound..<p.upperBound
        } else if let p = pending, p.upperBound == range.lowerBound {
            pending = p.lowerBound..<range.upperBound
        } else {
            if let p = pending { enqueue(p) }
            pending = range
        }
        if let p = pending, p.count >= bucketElements {
            enqueue(p)
            pending = nil
        }
    }

    public func finishGradients() throws {
        guard worldSize > 1 else { return }
        if let p = pending { enqueue(p); pending = nil }
        let start = ContinuousClock.now
        condition.lock()
        defer { condition.unlock() }
        while pendingBuckets > 0 && failure == nil { condition.wait() }
        exposedCommunicationSeconds += (ContinuousClock.now - start).seconds
        if let failure { throw failure }
    }

    public func allReduceScalars(_ values: [Double]) throws -> [Double] {
        guard worldSize > 1 else { return values }
        condition.lock()
        defer { condition.unlock() }
        if let failure { throw failure }
        scalarResult = nil
        jobs.append(.scalars(values))
        condition.broadcast()
        while scalarResult == nil && failure == nil { condition.wait() }
        if let failure { throw failure }
        return scalarResult!
    }

    public func shardRange(count: Int) -> Range<Int> {
        RingLayout.shardRange(count: count, rank: rank, worldSize: worldSize)
    }

    public func reduceScatterGradients() throws -> Range<Int> {
        let count = gradientCount
        guard worldSize > 1 else { return 0..<count }
        let g = UnsafeMutableBufferPointer(start: gradients, count: count)
        let timeout = self.timeout
        nonisolated(unsafe) let buffer = g
        try perform { group in
            _ = try group.reduceScatter(buffer, op: .average, deadline: .now + timeout)
        }
        return shardRange(count: count)
    }

    public func allGather(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        guard worldSize > 1 else { return }
        let timeout = self.timeout
        nonisolated(unsafe) let b = buffer
        try perform { group in try group.allGather(b, deadline: .now + timeout) }
    }

    /// Runs `body` on the communication thread with the group and waits for it.
    private func perform(_ body: @escaping (ProcessGroup) throws -> Void) throws {
        try wait(submit(body))
    }

    /// Queues `body` to run on the communication thread with the group, after everything queued
    /// before it; returns a ticket for `wait`. Every rank must queue the same collectives in the
    /// same order.
    public func submit(_ body: @escaping (ProcessGroup) throws -> Void) -> Int {
        condition.lock()
        defer { condition.unlock() }
        submitted += 1
        jobs.append(.run(body))
        condition.broadcast()
        return submitted
    }

    /// Blocks until the job of `ticket` (and every job queued before it) has run; rethrows the
    /// first communication failure. The wait counts as exposed communication time.
    public func wait(_ ticket: Int) throws {
        let start = ContinuousClock.now
        condition.lock()
        defer { condition.unlock() }
        while completed < ticket && failure == nil { condition.wait() }
        exposedCommunicationSeconds += (ContinuousClock.now - start).seconds
        if let failure { throw failure }
    }

    private func enqueue(_ range: Range<Int>) {
        condition.lock()
        jobs.append(.reduce(range))
        pendingBuckets += 1
        condition.broadcast()
        condition.unlock()
    }

    private func communicationLoop(_ makeGroup: () throws -> (ProcessGroup, @Sendable () -> Void)) {
        let group: ProcessGroup
        let teardown: @Sendable () -> Void
        do {
            (group, teardown) = try makeGroup()
        } catch {
            condition.lock()
            failure = error
            condition.broadcast()
            condition.unlock()
            return
        }
        condition.lock()
        started = true
        condition.broadcast()
        condition.unlock()
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            let failed = failure != nil
            condition.unlock()
            switch job {
            case .stop:
                teardown()
                return
            case .reduce(let range):
                if !failed {
                    do {
                        try group.allReduce(UnsafeMutableBufferPointer(start: gradients + range.lowerBound, count: range.count),
                                            op: .average, deadline: .now + timeout)
                    } catch {
                        fail(error)
                    }
                }
                condition.lock()
                pendingBuckets -= 1
                condition.broadcast()
                condition.unlock()
            case .run(let body):
                if !failed {
                    do { try body(group) } catch { fail(error) }
                }
                condition.lock()
                completed += 1
                condition.broadcast()
                condition.unlock()
            case .scalars(let values):
                do {
                    let result = try group.allReduceScalars(values, op: .sum, deadline: .now + timeout)
                    condition.lock()
                    scalarResult = result
                    condition.broadcast()
                    condition.unlock()
                } catch {
                    fail(error)
                }
            }
        }
    }

    private func fail(_ error: Error) {
        condition.lock()
        if failure == nil { failure = error }
        condition.broadcast()
        condition.unlock()
    }
}

extension Duration {
    /// The duration in seconds, as a Double.
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
