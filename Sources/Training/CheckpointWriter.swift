import Checkpoint
import Common
import Foundation

/// A rank's background checkpoint writer: one thread that writes shard snapshots one at a time
/// while the rank trains on. `submit` hands it a snapshot and returns at once, unless the
/// previous one is still being written: then it waits for that (back-pressure: at most one
/// snapshot in host memory besides the one being taken), and says how long it waited.
public final class CheckpointWriter: Sendable {
    public typealias Completion = @Sendable (Result<ShardRecord, any Error>) -> Void
    private struct Job: Sendable { let snapshot: ShardSnapshot; let folder: URL; let done: Completion }
    private struct State { var job: Job?; var busy = false; var closed = false }
    private let state = Monitor(State())

    /// - Parameter pauseAfterWrite: fault injection (the chaos test): milliseconds between writing
    ///   a shard file and reporting it, widening the window of a kill during a save.
    public init(rank: Int, pauseAfterWrite pause: Double = 0) {
        let state = self.state
        let thread = Thread {
            while let job = state.wait({ s -> Job?? in
                if let j = s.job { s.job = nil; s.busy = true; return .some(j) }
                return s.closed ? .some(nil) : nil
            }) {
                let result = Result { try job.snapshot.write(into: job.folder) }
                if pause > 0 { usleep(useconds_t(pause * 1000)) }
                job.done(result)
                state.withLock { $0.busy = false }
            }
        }
        thread.name = "zerotrain-ckpt-\(rank)"
        thread.start()
    }

    deinit { close() }

    /// Queues `snapshot` to be written into `folder`; `done` runs on the writer's thread.
    /// Returns the seconds spent waiting for the previous write.
    @discardableResult
    public func submit(_ snapshot: ShardSnapshot, into folder: URL, done: @escaping Completion) -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        let job = Job(snapshot: snapshot, folder: folder, done: done)
        _ = state.wait { s -> Bool? in
            guard s.job == nil && !s.busy else { return nil }
            s.job = job
            return true
        }
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    /// Waits until every submitted snapshot is written.
    public func waitIdle() { _ = state.wait { s -> Bool? in s.job == nil && !s.busy ? true : nil } }

    /// Stops the thread once the queued write is done.
    public func close() { state.withLock { $0.closed = true } }
}
