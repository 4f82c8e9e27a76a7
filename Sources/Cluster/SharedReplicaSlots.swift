import Foundation
import Glibc
import Synchronization
import Tensor
import Training

/// Same-host replicas in shared memory (fault_tolerance.replica_transport auto).
///
/// When a rank's ring successor runs on the same host (the same kernel boot and the same
/// /dev/shm), the replica need not travel: the rank takes its snapshot straight into a file in
/// /dev/shm, and the successor maps that file. The pages are shared, so a refresh costs the
/// snapshot copy and a 64-byte notice on the ring instead of sending the shard through loopback TCP
/// with a CRC at both ends, and the host holds the shard once instead of twice. A mapping
/// outlives the process that made it, so when the rank is killed its successor still holds the
/// shard, exactly as it would hold a copy received over the network.
///
/// Each rank of a membership snapshots into three slots in turn, `zerotrain-replica-<pid>-<job>-<epoch>-r<rank>-<slot>`:
/// the store keeps two generations, so the slot a refresh overwrites holds a generation that
/// neither the rank nor its successor keeps any more (ranks are within one step of each other,
/// and a refresh is a step boundary). The successor unlinks a slot's name once it has mapped it;
/// the rank unlinks any left when its device stops, and a worker starting up removes the slots
/// of processes that no longer exist.
enum SharedMemory {
    static let directory = "/dev/shm"
    static let prefix = "zerotrain-replica-"

    /// Which processes share memory through /dev/shm files: this kernel boot and this /dev/shm
    /// (nil where there is none: replicas then travel over the ring).
    static let domain: String? = {
        guard let boot = try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8) else { return nil }
        var st = stat()
        guard stat(directory, &st) == 0, (st.st_mode & mode_t(S_IFMT)) == mode_t(S_IFDIR), access(directory, W_OK) == 0 else { return nil }
        return "\(boot.trimmingCharacters(in: .whitespacesAndNewlines)):\(st.st_dev):\(st.st_ino)"
    }()

    /// Removes the replica slots of processes that no longer exist (a rank killed before its
    /// successor mapped them); returns the names removed.
    @discardableResult
    static func removeOrphans() -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        return names.filter { name in
            guard name.hasPrefix(prefix), let pid = Int32(name.dropFirst(prefix.count).prefix { $0 != "-" }) else { return false }
            guard kill(pid, 0) != 0, errno == ESRCH else { return false }
            return unlink("\(directory)/\(name)") == 0
        }
    }
}

/// A file in /dev/shm mapped into this process (shared), unmapped when released.
final class SharedMemoryFile: @unchecked Sendable {
    // Safe: immutable after init; the mapping's contents are synchronised by their users.
    let path: String
    let base: UnsafeMutableRawPointer
    let length: Int

    private init(path: String, base: UnsafeMutableRawPointer, length: Int) {
        self.path = path
        self.base = base
        self.length = length
    }

    /// Creates the file with all its pages allocated (so that a full /dev/shm fails here with
    /// an error, not later with SIGBUS on a write) and maps it for reading and writing.
    static func create(path: String, length: Int) throws -> SharedMemoryFile {
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SharedMemoryError(path, "cannot create", errno) }
        defer { close(fd) }
        let r = posix_fallocate(fd, 0, off_t(length))
        guard r == 0 else { unlink(path); throw SharedMemoryError(path, "cannot allocate \(length) bytes in", r) }
        guard let base = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0), base != MAP_FAILED else {
            let e = errno
            unlink(path)
            throw SharedMemoryError(path, "cannot map", e)
        }
        return SharedMemoryFile(path: path, base: base, length: length)
    }

    /// Maps another process's file, read-only (a replica is never written by its holder).
    static func open(path: String, length: Int) throws -> SharedMemoryFile {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SharedMemoryError(path, "cannot open", errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, Int(st.st_size) == length else {
            throw SharedMemoryError(path, "has \(st.st_size) bytes, not \(length), in", 0)
        }
        guard let base = mmap(nil, length, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0), base != MAP_FAILED else {
            throw SharedMemoryError(path, "cannot map", errno)
        }
        return SharedMemoryFile(path: path, base: base, length: length)
    }

    /// Removes the name; the memory stays while a process maps it.
    func unlinkName() { unlink(path) }

    deinit { munmap(base, length) }
}

struct SharedMemoryError: Error, CustomStringConvertible {
    let description: String
    init(_ path: String, _ what: String, _ code: Int32) {
        description = code == 0 ? "\(path) \(what) shared memory" : "\(what) \(path): \(String(cString: strerror(code)))"
    }
}

/// What a rank sends its same-host successor instead of its shard: where the snapshot of `step`
/// lies (`slot` < 0: it could not keep one this time). Eight little-endian 64-bit words.
struct ReplicaNotice: Equatable {
    static let bytes = 64
    static let magic: UInt64 = 0x5A54_5245_504C_4943  // "ZTREPLIC"
    var pid: Int32
    var jobID: UInt64
    var epoch: UInt64
    var rank: Int
    var slot: Int
    var step: Int

    var encoded: [UInt64] {
        [Self.magic, UInt64(pid), jobID, epoch, UInt64(rank), UInt64(bitPattern: Int64(slot)), UInt64(step), 0].map(\.littleEndian)
    }

    init(pid: Int32, jobID: UInt64, epoch: UInt64, rank: Int, slot: Int, step: Int) {
        (self.pid, self.jobID, self.epoch, self.rank, self.slot, self.step) = (pid, jobID, epoch, rank, slot, step)
    }

    init?(_ raw: UnsafeRawBufferPointer) {
        guard raw.count == Self.bytes else { return nil }
        let w = (0..<8).map { UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self)) }
        guard w[0] == Self.magic, w[1] <= UInt64(Int32.max), w[4] <= UInt64(Int32.max), w[6] <= UInt64(Int.max) else { return nil }
        let slot = Int64(bitPattern: w[5])
        guard slot >= -1, slot < Int64(ReplicaSlots.count) else { return nil }
        self.init(pid: Int32(w[1]), jobID: w[2], epoch: w[3], rank: Int(w[4]), slot: Int(slot), step: Int(w[6]))
    }

    /// The slot file's name.
    var path: String { ReplicaSlots.path(pid: pid, jobID: jobID, epoch: epoch, rank: rank, slot: slot) }
}

/// A rank's shared-memory replica slots (its side as the sender): each refresh snapshots into
/// the next slot. A slot file is a 4096-byte header (the notice's words: whose snapshot of which
/// step it holds), then the snapshot's 3 · capacity floats.
final class ReplicaSlots: Sendable {
    static let count = 3
    static let headerBytes = 4096
    let jobID: UInt64, epoch: UInt64, rank: Int, capacity: Int
    private let slots = Mutex<[SharedMemoryFile?]>(Array(repeating: nil, count: ReplicaSlots.count))
    private let refreshes = Atomic<Int>(0)

    init(jobID: UInt64, epoch: UInt64, rank: Int, capacity: Int) {
        (self.jobID, self.epoch, self.rank, self.capacity) = (jobID, epoch, rank, capacity)
    }

    static func path(pid: Int32, jobID: UInt64, epoch: UInt64, rank: Int, slot: Int) -> String {
        "\(SharedMemory.directory)/\(SharedMemory.prefix)\(pid)-\(String(jobID, radix: 16))-\(epoch)-r\(rank)-\(slot)"
    }

    var length: Int { Self.headerBytes + 12 * capacity }

    /// Creates (and faults in) every slot, ahead of the first refresh: on a background thread.
    func prepare() { for i in 0..<Self.count { _ = try? file(i) } }

    private func file(_ i: Int) throws -> SharedMemoryFile {
        try slots.withLock { s in
            if let f = s[i] { return f }
            let f = try SharedMemoryFile.create(path: Self.path(pid: getpid(), jobID: jobID, epoch: epoch, rank: rank, slot: i), length: length)
            s[i] = f
            return f
        }
    }

    /// The next refresh's slot and the storage to snapshot into.
    func next() throws -> (slot: Int, storage: FloatBuffer) {
        let i = refreshes.add(1, ordering: .relaxed).oldValue % Self.count
        let f = try file(i)
        let floats = (f.base + Self.headerBytes).bindMemory(to: Float.self, capacity: 3 * capacity)
        return (i, FloatBuffer(viewing: floats, count: 3 * capacity, owner: f))
    }

    /// Records in slot `slot`'s header whose snapshot of which step it now holds; returns the
    /// notice for the successor.
    func seal(slot: Int, step: Int) -> ReplicaNotice {
        let notice = ReplicaNotice(pid: getpid(), jobID: jobID, epoch: epoch, rank: rank, slot: slot, step: step)
        if let f = slots.withLock({ $0[slot] }) {
            for (k, w) in notice.encoded.enumerated() { f.base.storeBytes(of: w, toByteOffset: 8 * k, as: UInt64.self) }
        }
        return notice
    }

    /// Unlinks the slots' names (those the successor has not already); mappings stay valid.
    func unlinkAll() { slots.withLock { $0.forEach { $0?.unlinkName() } } }
}

/// The successor's side: maps the predecessor's slots as their notices arrive (each file once
/// per membership, its name unlinked as soon as it is mapped) and makes replica snapshots that
/// view them.
final class PredecessorSlots: Sendable {
    private let mapped = Mutex<[String: SharedMemoryFile]>([:])

    /// The replica the notice describes, viewing the predecessor's slot; checks that the slot's
    /// header holds that rank's snapshot of that step.
    func replica(_ notice: ReplicaNotice, start: Int, count: Int, like own: ShardSnapshot) throws -> ShardSnapshot {
        let length = ReplicaSlots.headerBytes + 12 * own.capacity
        let f = try mapped.withLock { m in
            if let f = m[notice.path] { return f }
            let f = try SharedMemoryFile.open(path: notice.path, length: length)
            f.unlinkName()
            m[notice.path] = f
            return f
        }
        guard let header = ReplicaNotice(UnsafeRawBufferPointer(start: f.base, count: ReplicaNotice.bytes)), header == notice else {
            throw SharedMemoryError(notice.path, "does not hold rank \(notice.rank)'s snapshot of step \(notice.step) in", 0)
        }
        let floats = (f.base + ReplicaSlots.headerBytes).bindMemory(to: Float.self, capacity: 3 * own.capacity)
        return ShardSnapshot(replicaOf: notice.rank, start: start, count: count, like: own,
                             storage: FloatBuffer(viewing: floats, count: 3 * own.capacity, owner: f))
    }
}
