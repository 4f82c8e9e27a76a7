import CZeroMQ
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A libzmq context: owns the I/O threads. Thread-safe (libzmq documents it so), hence Sendable.
///
/// Sockets keep their context alive; the context is terminated when the last reference goes, which
/// cannot block because every `ZMQSocket` closes with LINGER=0 first.
public final class ZMQContext: @unchecked Sendable {  // Safe: `handle` never changes; libzmq contexts are thread-safe.
    let handle: UnsafeMutableRawPointer

    /// - Parameter ioThreads: libzmq I/O threads (zguide: about one per GB/s of traffic). 1 is best
    ///   on small machines.
    public init(ioThreads: Int = 1) throws {
        _ = Self.receiveBufferAllocator
        guard let h = zmq_ctx_new() else { throw ZMQError.last("zmq_ctx_new") }
        handle = h
        if zmq_ctx_set(h, ZMQ_IO_THREADS, Int32(ioThreads)) != 0 {
            let e = ZMQError.last("zmq_ctx_set", "ZMQ_IO_THREADS=\(ioThreads)")
            zmq_ctx_term(h)
            throw e
        }
    }

    /// libzmq mallocs a fresh buffer for every received message (one per ~1 MiB segment) on its I/O
    /// thread, and the collective frees it after reducing from it. With glibc's defaults the
    /// freed megabytes are soon trimmed from the heap (the dynamic trim threshold is only twice the
    /// largest freed block), so the next messages land on fresh pages: the kernel zeroes and maps
    /// them one page fault at a time, about a sixth of every received byte here. Once per process,
    /// before the first context: blocks up to 32 MiB (glibc's own dynamic ceiling) come from the
    /// heap, and up to 64 MiB of free heap stays mapped for reuse. Measured: page faults of a
    /// 64 MiB all-reduce benchmark down from ≈ 4.3·10⁵ to ≈ 1.4·10⁵, the rest being the
    /// benchmark's own first-touch buffers (docs/benchmarks.md). Other allocators are left alone.
    static let receiveBufferAllocator: Bool = {
        #if canImport(Glibc)
        // <malloc.h> is not part of Swift's Glibc module: look mallopt up (RTLD_DEFAULT = NULL).
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        guard let symbol = dlsym(nil, "mallopt") else { return false }
        let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
        let mmapThreshold: Int32 = -3, trimThreshold: Int32 = -1   // M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
        return mallopt(mmapThreshold, 32 << 20) == 1 && mallopt(trimThreshold, 64 << 20) == 1
        #else
        return false
        #endif
    }()

    private let terminated = Atomic<Bool>(false)

    deinit { terminate() }

    /// Terminates the context now (once): returns when every socket of it is closed and their
    /// unsent messages have left or their linger has run out.
    public func terminate() {
        guard !terminated.exchange(true, ordering: .acquiringAndReleasing) else { return }
        while zmq_ctx_term(handle) != 0, zmq_errno() == EINTR {}
    }

    /// libzmq's version, e.g. (4, 3, 4).
    public static var version: (major: Int, minor: Int, patch: Int) {
        var a: Int32 = 0, b: Int32 = 0, c: Int32 = 0
        zmq_version(&a, &b, &c)
        return (Int(a), Int(b), Int(c))
    }

    /// Whether libzmq was built with a capability ("curve", "ipc", ...).
    public static func has(_ capability: String) -> Bool { zmq_has(capability) != 0 }
}
