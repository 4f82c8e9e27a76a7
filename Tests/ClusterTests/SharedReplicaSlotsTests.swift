import Checkpoint
@testable import Cluster
import Foundation
import Glibc
import Tensor
import Testing
import Training

/// Same-host replicas: a rank's snapshot slots in /dev/shm and the successor's mapping of them,
/// in one process (the two sides only share a file name and the notice).
@Suite struct SharedReplicaSlotsTests {
    static func snapshot(rank: Int, step: Int, count: Int, capacity: Int, storage: FloatBuffer? = nil) -> ShardSnapshot {
        ShardSnapshot(step: step, rank: rank, worldSize: 2, start: rank * capacity, count: count, capacity: capacity, seed: 7,
                      dataCursor: DataCursor(samplesConsumed: 8 * step, globalBatch: 8, seed: 7),
                      schedule: ScheduleState(kind: "cosine", peakLR: 1e-3, warmupSteps: 0, totalSteps: 10, numCycles: 0.5, nextLR: 1e-3),
                      skippedSteps: 0, storage: storage)
    }

    @Test func aNoticeRoundTripsAndGarbageIsRefused() {
        let n = ReplicaNotice(pid: 1234, jobID: 0xABCDEF, epoch: 3, rank: 5, slot: 2, step: 40)
        let words = n.encoded
        words.withUnsafeBytes { #expect(ReplicaNotice($0) == n) }
        var bad = words
        bad[0] ^= 1  // magic
        bad.withUnsafeBytes { #expect(ReplicaNotice($0) == nil) }
        bad = words
        bad[5] = UInt64(ReplicaSlots.count).littleEndian  // slot out of range
        bad.withUnsafeBytes { #expect(ReplicaNotice($0) == nil) }
        words.withUnsafeBytes { #expect(ReplicaNotice(UnsafeRawBufferPointer(rebasing: $0[0..<32])) == nil) }
    }

    @Test func theSuccessorMapsThePredecessorsSlotAndUnlinksItsName() throws {
        guard SharedMemory.domain != nil else { print("skipped: no writable /dev/shm here"); return }
        let capacity = 1000, count = 998
        let slots = ReplicaSlots(jobID: UInt64.random(in: 1...UInt64.max), epoch: 1, rank: 1, capacity: capacity)
        defer { slots.unlinkAll() }
        let (slot, storage) = try slots.next()
        #expect(slot == 0)
        let own = Self.snapshot(rank: 1, step: 4, count: count, capacity: capacity, storage: storage)
        for i in 0..<(3 * count) { own.storage.pointer[i] = Float(i) * 0.5 }
        let notice = slots.seal(slot: slot, step: 4)
        #expect(FileManager.default.fileExists(atPath: notice.path))

        let successorOwn = Self.snapshot(rank: 0, step: 4, count: capacity, capacity: capacity)
        let replica = try PredecessorSlots().replica(notice, start: capacity, count: count, like: successorOwn)
        #expect(replica.rank == 1 && replica.step == 4 && replica.count == count)
        #expect(Array(replica.parameters) == Array(own.parameters))
        #expect(Array(replica.expAvgSq) == Array(own.expAvgSq))
        #expect(!FileManager.default.fileExists(atPath: notice.path), "the name stays after the successor mapped it")
        // The pages are shared: the replica sees what the slot holds, and outlives its creator's mapping.
        #expect(replica.parameters[3] == 1.5)
    }

    @Test func aSlotHoldingAnotherStepIsRefused() throws {
        guard SharedMemory.domain != nil else { print("skipped: no writable /dev/shm here"); return }
        let slots = ReplicaSlots(jobID: UInt64.random(in: 1...UInt64.max), epoch: 1, rank: 1, capacity: 64)
        defer { slots.unlinkAll() }
        let (slot, _) = try slots.next()
        var notice = slots.seal(slot: slot, step: 4)
        notice.step = 8
        let own = Self.snapshot(rank: 0, step: 8, count: 64, capacity: 64)
        #expect(throws: SharedMemoryError.self) { try PredecessorSlots().replica(notice, start: 64, count: 64, like: own) }
    }

    @Test func slotsOfAProcessThatNoLongerExistsAreRemoved() throws {
        guard SharedMemory.domain != nil else { print("skipped: no writable /dev/shm here"); return }
        // A pid that existed and is gone: a child that has exited and been reaped.
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/true")
        try child.run()
        child.waitUntilExit()
        let dead = child.processIdentifier
        let orphan = ReplicaSlots.path(pid: dead, jobID: 1, epoch: 1, rank: 0, slot: 0)
        let live = ReplicaSlots.path(pid: getpid(), jobID: 1, epoch: 99, rank: 0, slot: 0)
        for path in [orphan, live] { #expect(FileManager.default.createFile(atPath: path, contents: Data([1]))) }
        defer { unlink(live); unlink(orphan) }
        let removed = SharedMemory.removeOrphans()
        #expect(removed.contains(URL(fileURLWithPath: orphan).lastPathComponent))
        #expect(!FileManager.default.fileExists(atPath: orphan))
        #expect(FileManager.default.fileExists(atPath: live), "a live process's slot was removed")
    }
}
