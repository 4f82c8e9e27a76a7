import Foundation
import Testing
import ZeroTrainTestKit

/// `zerotrain keygen` and the "loopback unless keys or --insecure-listen" rule, with the CLI's
/// bad-input convention (one line, exit 2).
@Suite struct SecurityCommandTests {
    @Test func keygenWritesAZ85PairWithMode0600AndRefusesToOverwrite() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let keys = root.appendingPathComponent("keys")
        let r = try CLI.run(["keygen", "--out", keys.path, "--name", "node1"])
        #expect(r.status == 0, "\(r.stderr)")
        for file in ["node1.key", "node1.pub"] {
            let attributes = try FileManager.default.attributesOfItem(atPath: keys.appendingPathComponent(file).path)
            #expect((attributes[.posixPermissions] as? Int) == 0o600, "\(file)")
            let lines = try String(contentsOf: keys.appendingPathComponent(file), encoding: .utf8).split(separator: "\n").filter { !$0.hasPrefix("# ") }
            #expect(lines.count == 1 && lines[0].utf8.count == 40, "\(file): \(lines)")
        }
        let again = try CLI.run(["keygen", "--out", keys.path, "--name", "node1"])
        #expect(again.status == 2 && again.stderr.contains("exists already"), "\(again.stderr)")
    }

    static let config = """
        model: {num_layers: 1, hidden_size: 16, num_attention_heads: 2, max_seq_len: 32}
        training: {total_steps: 1, micro_batch_size: 1, threads: 1}
        data: {seq_len: 16}
        """

    @Test func withoutKeysDaemonsRefuseToListenBeyondLoopback() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        try CLI.write(Self.config, to: root.appendingPathComponent("c.yaml"))
        let c = try CLI.run(["coordinator", "--config", root.appendingPathComponent("c.yaml").path, "--listen", "tcp://0.0.0.0:*",
                             "--run-dir", root.appendingPathComponent("run").path])
        #expect(c.status == 2 && c.stderr.contains("--listen: 0.0.0.0 is not a loopback address") && c.stderr.contains("--insecure-listen"), "\(c.stderr)")
        let w = try CLI.run(["worker", "--coordinator", "tcp://127.0.0.1:1", "--advertise", "10.1.2.3"])
        #expect(w.status == 2 && w.stderr.contains("--advertise: 10.1.2.3 is not a loopback address"), "\(w.stderr)")
        // Allowed with the flag, with a warning: the worker then fails to reach a coordinator that is not there.
        let insecure = try CLI.run(["worker", "--coordinator", "tcp://127.0.0.1:1", "--advertise", "0.0.0.0", "--insecure-listen",
                                    "--connect-timeout", "0.3"])
        #expect(insecure.stdout.contains("warning: --advertise 0.0.0.0 without keys (--insecure-listen)"), "\(insecure.stdout)")
        #expect(insecure.status == 1, "\(insecure.stderr)")
    }

    @Test func badKeysAreOneLineAndExitCode2() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        #expect(try CLI.run(["keygen", "--out", root.appendingPathComponent("k").path, "--name", "w"]).status == 0)
        let secret = root.appendingPathComponent("k/w.key").path
        chmod(secret, 0o644)
        let open = try CLI.run(["worker", "--coordinator", "tcp://127.0.0.1:1", "--secret-key-file", secret, "--coordinator-key",
                                root.appendingPathComponent("k/w.pub").path])
        #expect(open.status == 2 && open.stderr.contains("readable by others") && open.stderr.contains("chmod 600"), "\(open.stderr)")
        chmod(secret, 0o600)
        let noPin = try CLI.run(["worker", "--coordinator", "tcp://127.0.0.1:1", "--secret-key-file", secret])
        #expect(noPin.status == 2 && noPin.stderr.contains("pin the coordinator's public key"), "\(noPin.stderr)")
        try CLI.write("# workers\nnot-a-key\n", to: root.appendingPathComponent("allowed"))
        try CLI.write(Self.config + "\nsecurity: {allowed_workers: \(root.appendingPathComponent("allowed").path), secret_key_file: \(secret)}\n",
                      to: root.appendingPathComponent("c.yaml"))
        let list = try CLI.run(["coordinator", "--config", root.appendingPathComponent("c.yaml").path, "--listen", "tcp://127.0.0.1:*",
                                "--run-dir", root.appendingPathComponent("run").path])
        #expect(list.status == 2 && list.stderr.contains("allowed:2: not a Z85 CURVE key"), "\(list.stderr)")
        #expect(list.stderr.split(separator: "\n").count == 1, "\(list.stderr)")
    }

    /// `zerotrain local --curve`: keys for the job in RUN_DIR/keys, CURVE on both planes, the job trains.
    @Test func localWithCurveGeneratesKeysPerJob() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        try CLI.write(Self.config.replacingOccurrences(of: "total_steps: 1", with: "total_steps: 5"), to: root.appendingPathComponent("c.yaml"))
        let run = root.appendingPathComponent("run")
        let r = try CLI.run(["local", "--config", root.appendingPathComponent("c.yaml").path, "--workers", "2", "--curve", "--run-dir", run.path])
        #expect(r.status == 0 && r.stdout.contains("finished 5 steps"), "\(r.stdout) \(r.stderr)")
        for name in ["coordinator.key", "worker-0.key", "worker-1.key"] {
            let mode = try FileManager.default.attributesOfItem(atPath: run.appendingPathComponent("keys/\(name)").path)[.posixPermissions] as? Int
            #expect(mode == 0o600, "\(name)")
        }
        let allowed = try String(contentsOf: run.appendingPathComponent("keys/allowed-workers"), encoding: .utf8)
        #expect(allowed.split(separator: "\n").filter { !$0.hasPrefix("# ") }.count == 2)
        for slot in 0..<2 {
            let log = try String(contentsOf: run.appendingPathComponent("worker-\(slot).log"), encoding: .utf8)
            #expect(log.contains("(CURVE)"), "\(log)")
        }
    }
}
