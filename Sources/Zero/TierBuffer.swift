import CNUMA
import Foundation

/// Where a buffer of model state lives (DeepSpeed's offload targets).
public enum MemoryTier: String, Codable, Sendable, CaseIterable {
    /// The device's own memory (its budget is the `device:` config).
    case device
    /// Host memory of the worker, on the NUMA node of the device's threads where libnuma can place it.
    case host
    /// A memory-mapped file on local disk (the NVMe tier); the kernel pages it in and out.
    case disk
}

extension OffloadTier {
    /// The tier state offloaded this way lives in (`none` stays on the device).
    public var memoryTier: MemoryTier {
        switch self {
        case .none: .device
        case .host: .host
        case .disk: .disk
        }
    }
}

/// An owned, zero-initialised block of `Float`s in one memory tier. Device and host buffers are
/// ordinary anonymous memory (host buffers through `numa_alloc_local` on multi-node machines);
/// a disk buffer is a file under `directory`, mapped shared, deleted again when the buffer goes.
public final class TierBuffer: @unchecked Sendable {  // Safe: fields immutable; users split the elements between threads.
    public let tier: MemoryTier
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>
    private let bytes: Int
    private let release: () -> Void
    /// The backing file of a disk buffer.
    public let file: URL?

    /// - Parameter directory: where a disk buffer's file goes (created if missing).
    public init(count: Int, tier: MemoryTier, directory: URL? = nil, name: String = "state") throws {
        self.tier = tier
        self.count = count
        bytes = max(count, 1) * MemoryLayout<Float>.stride
        switch tier {
        case .host where NUMAPlacement.nodeCount > 1:
            let size = bytes
            guard let raw = numa_alloc_local(size) else {
                throw ZeroError(.runtime, "cannot allocate \(ByteSize.format(size)) of host memory for offloaded \(name)")
            }
            raw.initializeMemory(as: UInt8.self, repeating: 0, count: size)
            pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
            file = nil
            release = { numa_free(raw, size) }
        case .device, .host:
            let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
            raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
            pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
            file = nil
            release = { raw.deallocate() }
        case .disk:
            let dir = directory ?? FileManager.default.temporaryDirectory.appendingPathComponent("zerotrain-offload")
            let url = dir.appendingPathComponent("\(name)-\(getpid())-\(UUID().uuidString.prefix(8)).bin")
            do {
                try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            } catch {
                throw ZeroError(.runtime, "cannot create the offload folder \(dir.path) for \(name): \((error as NSError).localizedDescription)")
            }
            let fd = open(url.path, O_RDWR | O_CREAT | O_TRUNC, 0o600)
            guard fd >= 0 else {
                throw ZeroError(.runtime, "cannot create offload file \(url.path): \(String(cString: strerror(errno)))")
            }
            defer { close(fd) }
            let size = bytes
            guard ftruncate(fd, off_t(size)) == 0 else {
                let reason = String(cString: strerror(errno))
                unlink(url.path)
                throw ZeroError(.runtime, "cannot size offload file \(url.path) to \(ByteSize.format(size)): \(reason)")
            }
            let mapped = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
            guard let mapped, mapped != MAP_FAILED else {
                let reason = String(cString: strerror(errno))
                unlink(url.path)
                throw ZeroError(.runtime, "cannot map offload file \(url.path): \(reason)")
            }
            pointer = mapped.bindMemory(to: Float.self, capacity: max(count, 1))
            file = url
            let path = url.path
            release = { munmap(mapped, size); unlink(path) }
        }
    }

    deinit { release() }

    /// Disk tier: asks the kernel to start reading the file's pages in now (MADV_WILLNEED), so the
    /// read overlaps whatever the caller does before touching the buffer. Other tiers: nothing.
    public func prefetch() {
        guard tier == .disk else { return }
        _ = madvise(UnsafeMutableRawPointer(pointer), bytes, MADV_WILLNEED)
    }

    @inlinable public var buffer: UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: pointer, count: count)
    }
}
