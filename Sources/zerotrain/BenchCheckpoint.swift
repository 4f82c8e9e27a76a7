import ArgumentParser
import Checkpoint
import Common
import Foundation
import Synchronization
import Tensor
import Training
#if canImport(Glibc)
import Glibc
#endif

/// `zerotrain bench checkpoint`: the disk's sequential write speed, then the sharded save (one
/// thread per rank + commit), the resharded restore (R+1 readers) and verify of a checkpoint of
/// the same size, each the median of `repeats` runs. Goal: save ≥ 50% of the disk's speed.
struct BenchCheckpoint: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint",
        abstract: "Measure checkpoint save, resharded restore and verify throughput against the disk's sequential write speed.")

    @Option(name: .long, help: "Elements per flat buffer (Ψ); the checkpoint holds 3·Ψ floats.")
    var elements: Int = 64 << 20

    @Option(name: .long, help: "Ranks that save (restore uses ranks + 1).")
    var ranks: Int = 2

    @Option(name: .long, help: "Folder to write into (default: a new temporary folder, removed afterwards).")
    var dir: String?

    @Option(name: .long, help: "Runs per measurement (the median is reported).")
    var repeats: Int = 3

    @Flag(name: .long, help: "Print one JSON object.")
    var json = false

    struct Result: Codable {
        var elements: Int
        var ranks: Int
        var restoreRanks: Int
        var bytes: Int
        var repeats: Int
        var diskWriteMBps: Double
        var parallelDiskWriteMBps: Double
        var saveOverParallelDisk: Double
        var saveMBps: Double
        var saveOverDisk: Double
        var restoreMBps: Double
        var restoreBytesRead: Int
        var verifyMBps: Double
        var seconds: [String: Double]
        /// Every run's seconds, in order.
        var runs: [String: [Double]]
        enum CodingKeys: String, CodingKey {
            case elements, ranks, restoreRanks = "restore_ranks", bytes, repeats, diskWriteMBps = "disk_write_mb_per_s", parallelDiskWriteMBps = "parallel_disk_write_mb_per_s"
            case saveOverParallelDisk = "save_over_parallel_disk"
            case saveMBps = "save_mb_per_s", saveOverDisk = "save_over_disk", restoreMBps = "restore_mb_per_s"
            case restoreBytesRead = "restore_bytes_read", verifyMBps = "verify_mb_per_s", seconds = "median_seconds", runs = "run_seconds"
        }
    }

    func run() throws {
        try runReportingErrors {
            guard elements >= 1, ranks >= 1, repeats >= 1 else { throw TrainingError(.badInput, "--elements, --ranks and --repeats must be ≥ 1") }
            let fm = FileManager.default
            let root = dir.map { URL(fileURLWithPath: $0) } ?? fm.temporaryDirectory.appendingPathComponent("zt-bench-checkpoint-\(UUID().uuidString)")
            let plain = root.appendingPathComponent("plain.bin"), checkpoints = root.appendingPathComponent("checkpoints")
            try fm.createDirectory(at: root, withIntermediateDirectories: true)
            defer {
                if dir == nil { try? fm.removeItem(at: root) } else { try? fm.removeItem(at: plain); try? fm.removeItem(at: checkpoints) }
            }
            let n = elements, bytes = 3 * 4 * n
            let source = ShardTensor.allCases.map { _ in FloatBuffer(count: n) }
            for (k, b) in source.enumerated() { for i in 0..<n { b.pointer[i] = Float(i % 65_521) * 0.001 + Float(k) } }
            let target = ShardTensor.allCases.map { _ in FloatBuffer(count: n) }
            for b in target { b.zero() }

            var disk: [Double] = [], diskParallel: [Double] = [], save: [Double] = [], restore: [Double] = [], verify: [Double] = []
            let store = CheckpointStore(directory: checkpoints)
            let slices = Self.partition(n, ranks)
            // What a rank writes: its snapshot, its slice of the three buffers back to back in one
            // page-aligned buffer (as `ShardSnapshot` holds it; written with direct I/O).
            let snapshots = slices.map { sl -> FloatBuffer in
                let b = FloatBuffer(count: 3 * sl.count, alignment: 4096)
                for k in 0..<3 { (b.pointer + k * sl.count).update(from: source[k].pointer + sl.lowerBound, count: sl.count) }
                return b
            }
            // Disk and save runs alternate, so a drift of the disk's speed affects both alike.
            for rep in 0..<repeats {
                try? fm.removeItem(at: plain)
                disk.append(try Self.time { try Self.writePlain(plain, source.map { UnsafeRawBufferPointer($0.buffer) }) })
                try? fm.removeItem(at: plain)
                // The same bytes as R plain files written by R threads: the disk's speed with as many streams as the save uses.
                diskParallel.append(try Self.time {
                    _ = try Self.parallel(ranks) { r -> Int in
                        let sl = slices[r]
                        try Self.writePlain(root.appendingPathComponent("plain-\(r).bin"), source.map { UnsafeRawBufferPointer($0.slice(sl.lowerBound, sl.count)) })
                        return 0
                    }
                })
                for r in 0..<ranks { try? fm.removeItem(at: root.appendingPathComponent("plain-\(r).bin")) }
                try? fm.removeItem(at: checkpoints)
                let step = rep + 1
                save.append(try Self.time {
                    let files = try Self.parallel(ranks) { r -> CheckpointFile in
                        let s = slices[r]
                        func slice(_ k: Int) -> UnsafeBufferPointer<Float> { UnsafeBufferPointer(snapshots[r].slice(k * s.count, s.count)) }
                        return try ShardWriter.write(into: store.pendingFolder(step: step), rank: r, worldSize: ranks, start: s.lowerBound,
                                                     step: step, seed: 1, parameters: slice(0), expAvg: slice(1), expAvgSq: slice(2))
                    }
                    let manifest = CheckpointManifest(
                        step: step, worldSize: ranks, zeroStage: 1, config: TrainConfig(), tensors: [TensorLayout(name: "flat", shape: [n], offset: 0)],
                        dataCursor: DataCursor(samplesConsumed: 0, globalBatch: 1, seed: 1),
                        schedule: ScheduleState(kind: "constant", peakLR: 0, warmupSteps: 0, totalSteps: 1, numCycles: 0.5, nextLR: 0),
                        skippedSteps: 0, files: files)
                    try store.commit(manifest, keep: 1)
                })
            }
            let restoreRanks = ranks + 1
            var bytesRead = 0
            for _ in 0..<repeats {
                try Self.dropCache(checkpoints)
                for b in target { b.zero() }
                var reader: CheckpointReader<TrainConfig>?
                restore.append(try Self.time {
                    let r = try CheckpointReader<TrainConfig>(checkpoints)
                    let newSlices = Self.partition(n, restoreRanks)
                    _ = try Self.parallel(restoreRanks) { rank -> Int in
                        let s = newSlices[rank]
                        for (k, t) in ShardTensor.allCases.enumerated() { try r.read(t, elements: s, into: target[k].pointer + s.lowerBound) }
                        return 0
                    }
                    reader = r
                })
                bytesRead = reader!.bytesRead
                for k in 0..<3 where memcmp(source[k].pointer, target[k].pointer, 4 * n) != 0 {
                    throw TrainingError(.runtime, "the restored \(ShardTensor.allCases[k].rawValue) differs from what was saved")
                }
            }
            for _ in 0..<repeats {
                try Self.dropCache(checkpoints)
                verify.append(try Self.time { try CheckpointReader<TrainConfig>(checkpoints).verify() })
            }
            let mb = Double(bytes) / 1e6
            let med = [("disk", Self.median(disk)), ("disk_parallel", Self.median(diskParallel)), ("save", Self.median(save)), ("restore", Self.median(restore)), ("verify", Self.median(verify))]
            let seconds = Dictionary(uniqueKeysWithValues: med)
            let r = Result(elements: n, ranks: ranks, restoreRanks: restoreRanks, bytes: bytes, repeats: repeats,
                           diskWriteMBps: mb / seconds["disk"]!, parallelDiskWriteMBps: mb / seconds["disk_parallel"]!,
                           saveOverParallelDisk: seconds["disk_parallel"]! / seconds["save"]!, saveMBps: mb / seconds["save"]!, saveOverDisk: seconds["disk"]! / seconds["save"]!,
                           restoreMBps: mb / seconds["restore"]!, restoreBytesRead: bytesRead, verifyMBps: mb / seconds["verify"]!, seconds: seconds,
                           runs: ["disk": disk, "disk_parallel": diskParallel, "save": save, "restore": restore, "verify": verify])
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                Console.out(String(decoding: try encoder.encode(r), as: UTF8.self))
                return
            }
            Console.out("# zerotrain bench checkpoint: Ψ = \(n) elements × 3 buffers = \(String(format: "%.1f", mb)) MB, save on \(ranks) ranks, restore on \(restoreRanks), median of \(repeats) runs, page cache dropped (posix_fadvise) before each restore and verify, hardware CRC32C \(CRC32C.isHardwareAccelerated ? "on" : "off")")
            Console.out("measurement                                  seconds      MB/s")
            func row(_ name: String, _ s: Double) { Console.out(name.padding(toLength: 46, withPad: " ", startingAt: 0) + String(format: "%9.3f %9.0f", s, mb / s)) }
            row("disk sequential write (1 file, write+fsync)", seconds["disk"]!)
            row("disk, \(ranks) plain files in parallel", seconds["disk_parallel"]!)
            row("save (\(ranks) shards in parallel + commit)", seconds["save"]!)
            row("restore (\(restoreRanks) ranks, resharded)", seconds["restore"]!)
            row("verify (all files, CRC32C)", seconds["verify"]!)
            Console.out(String(format: "save / disk = %.2f (goal ≥ 0.50), save / parallel disk = %.2f; restore read %d bytes (%.2f× the checkpoint's data)",
                               r.saveOverDisk, r.saveOverParallelDisk, bytesRead, Double(bytesRead) / Double(bytes)))
        }
    }

    /// Wall time of `body` in seconds.
    static func time(_ body: () throws -> Void) throws -> Double {
        let start = ContinuousClock.now
        try body()
        return (ContinuousClock.now - start).seconds
    }

    static func median(_ xs: [Double]) -> Double { let s = xs.sorted(); return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2 }

    static func partition(_ n: Int, _ parts: Int) -> [Range<Int>] {
        (0..<parts).map { r in (r * n / parts)..<((r + 1) * n / parts) }
    }

    /// The baseline: the three buffers into one file, in writes of `CheckpointStore.blockBytes`, then fsync.
    static func writePlain(_ url: URL, _ buffers: [UnsafeRawBufferPointer]) throws {
        let fd = open(url.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw TrainingError(.runtime, "cannot create \(url.path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        for b in buffers {
            guard let raw = b.baseAddress else { continue }
            var done = 0
            while done < b.count {
                let n = write(fd, raw + done, min(CheckpointStore.blockBytes, b.count - done))
                guard n > 0 else { throw TrainingError(.runtime, "cannot write \(url.path): \(String(cString: strerror(errno)))") }
                done += n
            }
        }
        guard fsync(fd) == 0 else { throw TrainingError(.runtime, "cannot fsync \(url.path): \(String(cString: strerror(errno)))") }
    }

    /// Evicts the checkpoint's (clean, fsynced) pages from the page cache, so reads come from the disk.
    static func dropCache(_ directory: URL) throws {
        let folder = try CheckpointStore.resolve(directory)
        for name in try FileManager.default.contentsOfDirectory(atPath: folder.path) {
            let fd = open(folder.appendingPathComponent(name).path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
            close(fd)
        }
    }

    /// `body(0..<n)` on n dedicated threads (blocking I/O stays off Swift's cooperative pool).
    static func parallel<T: Sendable>(_ n: Int, _ body: @escaping @Sendable (Int) throws -> T) throws -> [T] {
        let results = Mutex<[Int: Swift.Result<T, any Error>]>([:])
        let done = DispatchGroup()
        for i in 0..<n {
            done.enter()
            let thread = Thread {
                defer { done.leave() }
                let outcome = Swift.Result { try body(i) }
                results.withLock { $0[i] = outcome }
            }
            thread.stackSize = 1 << 22
            thread.start()
        }
        done.wait()
        return try results.withLock { r in try (0..<n).map { try r[$0]!.get() } }
    }
}
