import CDNNL

/// The threads of one device for row-parallel kernels: an OpenMP team, the same threads oneDNN's
/// matrix products run on (see `OneDNN`), so kernels and products never compete for cores.
///
/// The thread that creates a pool owns it: its OpenMP width is set to the pool's size, so a
/// product it calls outside a job uses the whole team. `parallelFor(n)` splits 0..<n into one
/// contiguous range per thread index (a static split, so the work each index does — and any
/// per-index partial result — is the same run after run, whatever threads the runtime supplies).
/// The calling thread takes index 0. A job started inside another job runs its indices one after
/// another on the calling thread. Kernels that use the pool give every row the same arithmetic
/// regardless of the split, so results do not depend on the thread count.
///
/// Not `Sendable`: one thread at a time may run jobs on a pool (its owner, e.g. a rank's training thread).
public final class ThreadPool {
    public let size: Int

    /// - Parameter threads: total threads including the caller (≥ 1).
    public init(threads: Int) {
        size = max(1, threads)
        _ = OneDNN.engine  // sets one level of parallelism before the first team starts
        omp_set_num_threads(Int32(size))
    }

    /// Runs `body(t)` for every thread index t in 0..<size, concurrently; returns when all are done.
    public func runOnAll(_ body: (Int) -> Void) {
        if size == 1 { body(0); return }
        withoutActuallyEscaping(body) { escaping in
            var job = Job(body: escaping, size: size)
            withUnsafeMutablePointer(to: &job) { pointer in
                GOMP_parallel({ raw in
                    let job = raw!.assumingMemoryBound(to: Job.self)
                    var t = Int(omp_get_thread_num())
                    let step = max(1, Int(omp_get_num_threads()))
                    while t < job.pointee.size {
                        job.pointee.body(t)
                        t += step
                    }
                }, pointer, UInt32(size), 0)
            }
        }
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

    private struct Job {
        let body: (Int) -> Void
        let size: Int
    }
}
