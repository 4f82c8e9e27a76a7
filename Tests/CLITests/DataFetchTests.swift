import Data
import Foundation
import Testing
import ZeroTrainTestKit

/// Data on every host without a shared file system: workers that run as another user, in other
/// working directories, with no access to the coordinator's run directory, fetch the token file
/// from the coordinator, and a fetch resumes after what a worker already cached.
@Suite(.serialized) struct DataFetchTests {
    static let hasSetpriv: Bool = {
        let ok = FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") && getuid() == 0
        if !ok { print("note: DataFetchTests skipped: needs root and setpriv (util-linux) to run workers as another user") }
        return ok
    }()

    @Test(.enabled(if: DataFetchTests.hasSetpriv, "needs root and setpriv"))
    func workersWithoutTheRunDirectoryFetchTheTokens() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        chmod(root.path, 0o755)
        let coordinatorDir = root.appendingPathComponent("coordinator"), run = coordinatorDir.appendingPathComponent("run")
        try FileManager.default.createDirectory(at: coordinatorDir, withIntermediateDirectories: true)
        chmod(coordinatorDir.path, 0o700)   // the workers' user cannot enter it
        // Checkpoints go where every rank can write (on real hosts, each host's own disk holds its shards).
        let checkpoints = root.appendingPathComponent("checkpoints")
        try FileManager.default.createDirectory(at: checkpoints, withIntermediateDirectories: true)
        chmod(checkpoints.path, 0o777)
        let config = root.appendingPathComponent("job.yaml")
        try CLI.write(LaunchTests.config.replacingOccurrences(of: "checkpoint_interval: 0}", with: "checkpoint_interval: 0, checkpoint_dir: \(checkpoints.path)}"),
                      to: config)
        chmod(config.path, 0o644)
        let coordinator = try Child(["coordinator", "--config", config.path, "--listen", "tcp://127.0.0.1:*", "--run-dir", run.path, "--workers", "2"],
                                    environment: [:], log: root.appendingPathComponent("c.log"))
        let endpointFile = run.appendingPathComponent("coordinator.endpoint")
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: endpointFile.path) && Date() < deadline && coordinator.process.isRunning { usleep(20_000) }
        let endpoint = try String(contentsOf: endpointFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let tokens = try Data(contentsOf: run.appendingPathComponent("tokens.safetensors"))
        var workers: [(URL, Child)] = []
        for w in 0..<2 {
            let dir = root.appendingPathComponent("host\(w)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            chown(dir.path, 65534, 65534)
            workers.append((dir, try Child(["-c", "cd \"$0\" && exec setpriv --reuid=65534 --regid=65534 --clear-groups \"$1\" worker --coordinator \"$2\" --run-dir cache",
                                            dir.path, CLI.binary.path, endpoint],
                                           environment: [:], log: root.appendingPathComponent("w\(w).log"), executable: URL(fileURLWithPath: "/bin/sh"))))
        }
        #expect(coordinator.wait(120) == 0, "\(coordinator.output)")
        for (dir, w) in workers {
            #expect(w.wait(30) == 0, "\(w.output)")
            #expect(w.output.contains("fetching \(run.path)/tokens.safetensors from the coordinator"), "\(w.output)")
            #expect(w.output.contains("fetched \(run.path)/tokens.safetensors: \(tokens.count) bytes"), "\(w.output)")
            let cached = try FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("cache").path)
            #expect(cached.count == 1)
            #expect(try Data(contentsOf: dir.appendingPathComponent("cache").appendingPathComponent(cached[0])) == tokens)
        }
        #expect(LaunchTests.records(run) == 8)
        // Again, with one worker's cache cut in half (a fetch that stopped part-way): it resumes there.
        let cacheDir = workers[1].0.appendingPathComponent("cache")
        let cacheFile = cacheDir.appendingPathComponent(try FileManager.default.contentsOfDirectory(atPath: cacheDir.path)[0])
        let part = tokens.count / 2   // the builtin corpus: about 1 MiB of tokens, two chunks
        try tokens.prefix(part).write(to: cacheFile)
        chown(cacheFile.path, 65534, 65534)
        let checkpoints2 = root.appendingPathComponent("checkpoints2"), config2 = root.appendingPathComponent("job2.yaml")
        try FileManager.default.createDirectory(at: checkpoints2, withIntermediateDirectories: true)
        chmod(checkpoints2.path, 0o777)
        try CLI.write(try String(contentsOf: config, encoding: .utf8).replacingOccurrences(of: checkpoints.path, with: checkpoints2.path), to: config2)
        try FileManager.default.removeItem(at: endpointFile)
        let again = try Child(["coordinator", "--config", config2.path, "--listen", "tcp://127.0.0.1:*", "--run-dir", run.path, "--workers", "1"],
                              environment: [:], log: root.appendingPathComponent("c2.log"))
        let deadline2 = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: endpointFile.path) && Date() < deadline2 && again.process.isRunning { usleep(20_000) }
        let endpoint2 = try String(contentsOf: endpointFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let resumed = try Child(["-c", "cd \"$0\" && exec setpriv --reuid=65534 --regid=65534 --clear-groups \"$1\" worker --coordinator \"$2\" --run-dir cache",
                                 workers[1].0.path, CLI.binary.path, endpoint2],
                                environment: [:], log: root.appendingPathComponent("w1b.log"), executable: URL(fileURLWithPath: "/bin/sh"))
        #expect(again.wait(120) == 0, "\(again.output)")
        #expect(resumed.wait(30) == 0, "\(resumed.output)")
        #expect(resumed.output.contains("(resuming after \(part) bytes)"), "\(resumed.output)")
        #expect(try Data(contentsOf: cacheFile) == tokens)
    }

    /// Token shards the workers' host cannot see: each worker fetches every shard file, maps the
    /// copies, and trains exactly as workers that read the shards in place.
    @Test(.enabled(if: DataFetchTests.hasSetpriv, "needs root and setpriv"))
    func workersWithoutTheShardsFetchThemAndTrainTheSame() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        chmod(root.path, 0o755)
        let hidden = root.appendingPathComponent("coordinator"), shards = hidden.appendingPathComponent("shards"), run = hidden.appendingPathComponent("run")
        try FileManager.default.createDirectory(at: shards, withIntermediateDirectories: true)
        chmod(hidden.path, 0o700)
        var bytes: [Int] = []
        for s in 0..<3 {
            // Two train shards and the validation split.
            let path = shards.appendingPathComponent(s < 2 ? String(format: "train-%05d.zts", s) : "validation-00000.zts").path
            let w = try TokenShardWriter(path: path, vocabularySize: 256, eos: 1)
            for d in 0..<40 { try w.append(document: (0..<(30 + (d * 7 + s) % 50)).map { Int32(2 + ($0 * 31 + d * 17 + s) % 250) } + [1]) }
            try w.finish()
            bytes.append(try Data(contentsOf: URL(fileURLWithPath: path)).count)
        }
        let checkpoints = root.appendingPathComponent("checkpoints")
        try FileManager.default.createDirectory(at: checkpoints, withIntermediateDirectories: true)
        chmod(checkpoints.path, 0o777)
        let config = root.appendingPathComponent("job.yaml")
        try CLI.write(LaunchTests.config.replacingOccurrences(of: "data: {seq_len: 32}", with: "data: {source: shards, path: \(shards.path), validation_path: \(shards.path), seq_len: 32}")
            .replacingOccurrences(of: "checkpoint_interval: 0}", with: "checkpoint_interval: 0, eval_interval: 4, checkpoint_dir: \(checkpoints.path)}"), to: config)
        chmod(config.path, 0o644)
        // Reference: workers that see the shards.
        let local = root.appendingPathComponent("local")
        let localConfig = root.appendingPathComponent("local.yaml")
        try CLI.write(try String(contentsOf: config, encoding: .utf8).replacingOccurrences(of: checkpoints.path, with: root.appendingPathComponent("local-checkpoints").path),
                      to: localConfig)
        let reference = try CLI.run(["local", "--config", localConfig.path, "--workers", "2", "--run-dir", local.path])
        #expect(reference.status == 0, "\(reference.stderr)")
        #expect(reference.stdout.contains("read in place by every worker") && !reference.stdout.contains("tokenised"), "\(reference.stdout)")

        let coordinator = try Child(["coordinator", "--config", config.path, "--listen", "tcp://127.0.0.1:*", "--run-dir", run.path, "--workers", "2"],
                                    environment: [:], log: root.appendingPathComponent("c.log"))
        let endpointFile = run.appendingPathComponent("coordinator.endpoint")
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: endpointFile.path) && Date() < deadline && coordinator.process.isRunning { usleep(20_000) }
        let endpoint = try String(contentsOf: endpointFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        var workers: [Child] = []
        for w in 0..<2 {
            let dir = root.appendingPathComponent("host\(w)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            chown(dir.path, 65534, 65534)
            workers.append(try Child(["-c", "cd \"$0\" && exec setpriv --reuid=65534 --regid=65534 --clear-groups \"$1\" worker --coordinator \"$2\" --run-dir cache",
                                      dir.path, CLI.binary.path, endpoint],
                                     environment: [:], log: root.appendingPathComponent("w\(w).log"), executable: URL(fileURLWithPath: "/bin/sh")))
        }
        #expect(coordinator.wait(120) == 0, "\(coordinator.output)")
        for w in workers {
            #expect(w.wait(30) == 0, "\(w.output)")
            for (s, n) in bytes.enumerated() {
                let name = s < 2 ? String(format: "train-%05d.zts", s) : "validation-00000.zts"
                #expect(w.output.contains("fetched \(shards.path)/\(name): \(n) bytes"), "\(w.output)")
            }
        }
        func values(_ dir: URL, _ key: String) throws -> [Double] {
            try String(contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n").compactMap {
                (try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any])[key] as? Double
            }
        }
        let fetched = try values(run, "loss"), inPlace = try values(local, "loss")
        #expect(fetched.count == 8 && fetched == inPlace, "\(fetched) vs \(inPlace)")
        // The validation shards were fetched and evaluated the same.
        let validation = try values(run, "validation_loss"), localValidation = try values(local, "validation_loss")
        #expect(validation.count == 2 && validation == localValidation, "\(validation) vs \(localValidation)")
    }
}
