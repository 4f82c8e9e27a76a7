import Foundation

/// A fixed set of threads for row-parallel kernels.
///
/// `parallelFor(n)` splits 0..<n into one contiguous range per thread (a static split, so the
/// work each thread does — and any per-thread partial result — is the same run after run).
/// The calling thread takes the first range. Calls must not nest. Kernels that use the pool
/// give every row the same arithmetic regardless of the split, so results do not depend on
/// the thread count. The threads stop when the pool is released.
///
/// Not `Sendable`: one thread at a time may run jobs on a pool (its owner, e.g. a rank's training
/// thread); a second caller would overwrite the running job.
public final class ThreadPool {
    public let size: Int
    private let state: State

    /// - Parameter threads: total threads including the caller (≥ 1).
    public init(threads: Int) {
        size = max(1, threads)
        state = State()
        for index in 1..<size {
            let state = self.state
            let thread = Thread { state.workerLoop(index: index) }
            thread.name = "zerotrain-compute-\(index)"
            thread.stackSize = 8 << 20
            thread.start()
        }
    }

    deinit { state.stop() }

    /// Runs `body(t)` for every thread index t in 0..<size, concurrently; returns when all are done.
    public func runOnAll(_ body: (Int) -> Void) {
        if size == 1 { body(0); return }
        withoutActuallyEscaping(body) { escaping in state.run(escaping, workers: size - 1) }
    }

    /// Runs `body` over a static split of 0..<n into at most `size` ranges of at least `minChunk` items.
    public func parallelFor(_ n: Int, minChunk: Int = 1, _ body: (Range<Int>) -> Void) {
        if n <= 0 { return }
        let parts = min(size, max(1, n / max(1, minChunk)))
        if parts == 1 { body(0..<n); return }
        runOnAll { t in
            guard t < parts else { return }
            let lo = n * t / parts, hi = n * (t + 1) / parts
            if lo < hi { body(lo..<hi) }
        }
    }

    private final class State: @unchecked Sendable {  // Safe: fields are only touched with `condition` locked.
        private let condition = NSCondition()
        private var generation = 0
        private var pending = 0
        private var job: ((Int) -> Void)?
        private var stopping = false

        func run(_ work: @escaping (Int) -> Void, workers: Int) {
            condition.lock()
            job = work
            pending = workers
            generation &+= 1
            condition.broadcast()
            condition.unlock()
            work(0)
            condition.lock()
            while pending > 0 { condition.wait() }
            job = nil
            condition.unlock()
        }

        func stop() {
            condition.lock()
            stopping = true
            condition.broadcast()
            condition.unlock()
        }

        func workerLoop(index: Int) {
            var seen = 0
            while true {
                condition.lock()
                while generation == seen && !stopping { condition.wait() }
                if stopping { condition.unlock(); return }
                seen = generation
                var work = job
                condition.unlock()
                work?(index)
                // Drop our reference before reporting done: the caller's
                // withoutActuallyEscaping checks that no copy outlives the call.
                work = nil
                condition.lock()
                pending -= 1
                if pending == 0 { condition.broadcast() }
                condition.unlock()
            }
        }
    }
}
