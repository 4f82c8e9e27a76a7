import Comm
import Foundation
import Testing
import ZeroTrainTestKit

/// `FlightTrace` over synthetic dumps, and the dump's file format.
@Suite struct FlightTraceTests {
    typealias Record = FlightDump.Record

    /// Rank `rank`'s records of sequences 0..<count: completed, except `last` (its state).
    static func dump(rank: Int, worldSize: Int = 3, count: Int, last: Record.State = .completed, operation: (UInt64) -> String = { _ in "allReduce" },
                     bytes: (UInt64) -> Int = { _ in 4096 }, job: UInt64 = 9, writtenAt: Double = 1_000) -> FlightDump {
        let records = (0..<UInt64(count)).map { s in
            let state: Record.State = s == UInt64(count - 1) ? last : .completed
            return Record(epoch: 1, sequence: s, operation: operation(s), bytes: bytes(s), from: (rank + worldSize - 1) % worldSize,
                          to: (rank + 1) % worldSize, startedAt: 1_000 + Double(s), durationMs: state == .started ? nil : 1.5,
                          state: state, outcome: state == .completed ? "ok" : state == .started ? "running" : "timeout")
        }
        return FlightDump(rank: rank, worldSize: worldSize, epoch: 1, jobID: job, error: "timeout", writtenAt: writtenAt, records: records)
    }

    @Test func aRankThatNeverJoinedIsMissing() {
        // Rank 1 stopped after collective 4; ranks 0 and 2 started collective 5 and timed out.
        let dumps = [Self.dump(rank: 0, count: 6, last: .failed), Self.dump(rank: 1, count: 5), Self.dump(rank: 2, count: 6, last: .failed)]
        let findings = FlightTrace.analyze(dumps)
        #expect(findings == [.notAllJoined(epoch: 1, sequence: 5, operation: "allReduce", bytes: 4096, missing: [1], started: [0, 2], completed: [])])
        #expect(FlightTrace.report(findings) == [
            "epoch 1, collective 5 (allReduce, 4096 bytes): not all ranks joined; missing ranks: {1}; started by {0, 2}, completed by {}",
        ])
    }

    @Test func aRankWithoutADumpIsNamed() {
        let dumps = [Self.dump(rank: 0, worldSize: 2, count: 6, last: .failed)]
        let lines = FlightTrace.report(FlightTrace.analyze(dumps))
        #expect(lines == [
            "epoch 1, collective 5 (allReduce, 4096 bytes): not all ranks joined; missing ranks: {1}; started by {0}, completed by {}",
            "rank 1 wrote no dump: it died or was killed",
        ])
    }

    @Test func everyRankJoinedButNotAllCompleted() {
        let dumps = [Self.dump(rank: 0, worldSize: 2, count: 4), Self.dump(rank: 1, worldSize: 2, count: 4, last: .started)]
        #expect(FlightTrace.analyze(dumps) == [.notAllCompleted(epoch: 1, sequence: 3, operation: "allReduce", bytes: 4096, started: [0, 1], completed: [0])])
    }

    @Test func differentCollectivesAtOneSequenceAreReported() {
        let dumps = [Self.dump(rank: 0, worldSize: 2, count: 4, last: .failed),
                     Self.dump(rank: 1, worldSize: 2, count: 4, last: .failed, operation: { $0 == 3 ? "allGather" : "allReduce" },
                               bytes: { $0 == 3 ? 8192 : 4096 })]
        let lines = FlightTrace.report(FlightTrace.analyze(dumps))
        #expect(lines.first == "epoch 1, collective 3: ranks called different collectives: rank 0 allReduce 4096 bytes, rank 1 allGather 8192 bytes")
        #expect(lines.count == 2 && lines[1].hasPrefix("epoch 1, collective 3 (allReduce, 4096 bytes): every rank joined, not all completed"))
    }

    @Test func allCompleted() {
        let dumps = [Self.dump(rank: 0, worldSize: 2, count: 3), Self.dump(rank: 1, worldSize: 2, count: 3)]
        #expect(FlightTrace.report(FlightTrace.analyze(dumps)) == ["all ranks completed every recorded collective"])
    }

    /// A ring buffer that evicted the oldest records: a rank whose window starts later went past them.
    @Test func evictedRecordsCountAsCompleted() {
        var late = Self.dump(rank: 1, worldSize: 2, count: 6, last: .failed)
        late.records.removeFirst(3)
        let dumps = [Self.dump(rank: 0, worldSize: 2, count: 6, last: .failed), late]
        #expect(FlightTrace.analyze(dumps) == [.notAllCompleted(epoch: 1, sequence: 5, operation: "allReduce", bytes: 4096, started: [0, 1], completed: [])])
    }

    @Test func olderJobsInTheFolderAreIgnored() {
        let old = Self.dump(rank: 1, worldSize: 2, count: 2, job: 3, writtenAt: 10)
        let job = FlightTrace.latestJob([Self.dump(rank: 0, worldSize: 2, count: 6, last: .failed), old])
        #expect(job.jobID == 9 && job.dumps.map(\.rank) == [0])
    }

    @Test func dumpsRoundTripThroughTheirFiles() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zt-forensics-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let dumps = [Self.dump(rank: 1, count: 3, last: .started), Self.dump(rank: 0, count: 3, last: .failed)]
        for d in dumps { try d.write(in: dir) }
        #expect(try FlightDump.load(directory: dir) == dumps.sorted { $0.rank < $1.rank })
        let text = try String(contentsOf: dir.appendingPathComponent("rank-1.json"), encoding: .utf8)
        #expect(text.contains(#""duration_ms" : null"#) && text.contains(#""state" : "started""#) && text.contains(#""world_size" : 3"#))
        #expect(text.contains(#""job_id" : 9"#) && text.contains(#""started_at" : 1002"#) && text.contains(#""written_at" : 1000"#))
    }

    /// Real groups over the in-memory transport: rank 1 leaves after the first collective, rank 0's
    /// second one times out and writes rank-0.json, once; the analysis names rank 1.
    @Test func aFailedCollectiveWritesTheDumpOnce() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zt-forensics-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let fabric = InMemoryFabric(worldSize: 2)
        let log = CapturedLog()
        let results = onThreads(2) { rank -> CommError? in
            var options = quietOptions(log)
            options.forensicsDirectory = dir
            let group = try ProcessGroup(rank: rank, worldSize: 2, transport: fabric.transport(rank: rank), epoch: 3, jobID: 8, options: options)
            _ = try group.allReduceScalars([1, 2], deadline: .now + .seconds(5))
            guard rank == 0 else { return nil }
            do {
                _ = try group.allReduceScalars([3], deadline: .now + .milliseconds(300))
                return nil
            } catch let e as CommError {
                let first = try Data(contentsOf: dir.appendingPathComponent("rank-0.json"))
                #expect(throws: CommError.self) { try group.barrier(deadline: .now + .seconds(1)) }
                #expect(try Data(contentsOf: dir.appendingPathComponent("rank-0.json")) == first)
                return e
            }
        }
        #expect(try results[0].get()?.code == .timeout)
        let dumps = try FlightDump.load(directory: dir)
        #expect(dumps.map(\.rank) == [0])
        let d = try #require(dumps.first)
        #expect(d.worldSize == 2 && d.epoch == 3 && d.jobID == 8 && d.error.contains("[timeout]") && !d.error.contains("\n"))
        #expect(d.records.map(\.sequence) == [0, 1] && d.records.map(\.state) == [.completed, .failed])
        #expect(d.records.map(\.operation) == ["allReduceScalars", "allReduceScalars"] && d.records.map(\.bytes) == [16, 8])
        #expect(d.records[1].outcome == "timeout" && d.records.allSatisfy { $0.durationMs != nil })
        #expect(abs(d.records[0].startedAt - Date().timeIntervalSince1970) < 60 && d.writtenAt >= d.records[1].startedAt)
        #expect(FlightTrace.report(FlightTrace.analyze(dumps)) == [
            "epoch 3, collective 1 (allReduceScalars, 8 bytes): not all ranks joined; missing ranks: {1}; started by {0}, completed by {}",
            "rank 1 wrote no dump: it died or was killed",
        ])
    }

    /// A dump that cannot be written is a log line; the collective's own error still surfaces.
    @Test func anUnwritableForensicsFolderIsLoggedNotThrown() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("zt-forensics-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: file) }
        try Data("not a folder".utf8).write(to: file)
        let fabric = InMemoryFabric(worldSize: 2)
        let log = CapturedLog()
        var options = quietOptions(log)
        options.forensicsDirectory = file.appendingPathComponent("forensics")
        let group = try ProcessGroup(rank: 0, worldSize: 2, transport: fabric.transport(rank: 0), epoch: 1, jobID: 1, options: options)
        #expect { try group.barrier(deadline: .now + .milliseconds(100)) } throws: { ($0 as? CommError)?.code == .timeout }
        #expect(log.text.contains("rank 0: cannot write the flight recorder to \(file.path)/forensics"), "\(log.text)")
    }
}
