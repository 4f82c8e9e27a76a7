import Foundation
import Testing
import ZeroTrainTestKit

/// deploy/systemd: the committed units are what `zerotrain systemd render` writes, systemd's own
/// verifier prints nothing for them, and `install` writes units and keeps edited env files.
@Suite(.serialized) struct SystemdTests {
    static let analyze = "/usr/bin/systemd-analyze"
    static let hasAnalyze: Bool = {
        let ok = FileManager.default.isExecutableFile(atPath: analyze)
        if !ok { print("note: SystemdTests.systemdAnalyzeVerifyPrintsNothing skipped: \(analyze) not installed (apt-get install systemd)") }
        return ok
    }()

    static let deploy = CLI.repo.appendingPathComponent("deploy/systemd")
    static let unitNames = ["zerotrain.target", "zerotrain-coordinator.service", "zerotrain-worker@.service", "zerotrain-serve.service"]
    static let envNames = ["common.env", "coordinator.env", "worker-0.env", "serve.env"]

    @Test func committedUnitsAreTheRendering() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try CLI.run(["systemd", "render", "--env", "--out", dir.path])
        #expect(r.status == 0, "\(r.stderr)")
        for name in Self.unitNames + Self.envNames {
            let committed = try String(contentsOf: Self.deploy.appendingPathComponent(name), encoding: .utf8)
            let rendered = try String(contentsOf: dir.appendingPathComponent(name), encoding: .utf8)
            #expect(committed == rendered, "deploy/systemd/\(name) differs from `zerotrain systemd render --env` (re-render it)")
        }
        let worker = try String(contentsOf: Self.deploy.appendingPathComponent("zerotrain-worker@.service"), encoding: .utf8)
        for line in ["Type=notify", "Restart=on-failure", "DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes",
                     "StateDirectory=zerotrain/worker-%i", "WatchdogSec=300s", "EnvironmentFile=-/etc/zerotrain/worker-%i.env"] {
            #expect(worker.split(separator: "\n").contains(Substring(line)), "\(line)")
        }
        let coordinator = try String(contentsOf: Self.deploy.appendingPathComponent("zerotrain-coordinator.service"), encoding: .utf8)
        #expect(coordinator.contains("After=network-online.target zerotrain-worker@0.service") && coordinator.contains("--resume auto"))
    }

    /// systemd-analyze exits 0 on parse warnings: any output at all fails the test.
    @Test(.enabled(if: SystemdTests.hasAnalyze, "needs systemd-analyze"))
    func systemdAnalyzeVerifyPrintsNothing() throws {
        let dir = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        // ExecStart must name an executable that exists: the built binary.
        let r = try CLI.run(["systemd", "render", "--out", dir.path, "--bin", CLI.binary.path, "--workers", "0,3"])
        #expect(r.status == 0, "\(r.stderr)")
        try FileManager.default.copyItem(at: dir.appendingPathComponent("zerotrain-worker@.service"),
                                         to: dir.appendingPathComponent("zerotrain-worker@3.service"))
        for unit in Self.unitNames + ["zerotrain-worker@3.service"] {
            let (status, output) = Self.tool(Self.analyze, ["verify", "--man=no", "./" + unit], in: dir)
            #expect(status == 0 && output.isEmpty, "systemd-analyze verify \(unit): \(output)")
        }
        for unit in ["zerotrain-coordinator.service", "zerotrain-worker@.service", "zerotrain-serve.service"] {
            let (status, output) = Self.tool(Self.analyze, ["security", "--offline=true", "--threshold=30", "./" + unit], in: dir)
            let score = output.split(separator: "\n").last { $0.contains("Overall exposure level") } ?? "?"
            print("systemd-analyze security \(unit): \(score.trimmingCharacters(in: .whitespaces))")
            #expect(status == 0, "exposure above 3.0 (--threshold is in tenths): \(score)")
        }
        // And the check catches a typo: a misspelt key is only a warning, with exit code 0.
        let bad = try String(contentsOf: dir.appendingPathComponent("zerotrain-coordinator.service"), encoding: .utf8)
            .replacingOccurrences(of: "WatchdogSec=", with: "WatchDogSec=")
        try CLI.write(bad, to: dir.appendingPathComponent("zerotrain-coordinator.service"))
        let (_, output) = Self.tool(Self.analyze, ["verify", "--man=no", "./zerotrain-coordinator.service"], in: dir)
        #expect(output.contains("WatchDogSec"))
    }

    @Test func installWritesUnitsAndKeepsEditedEnvironmentFiles() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        var r = try CLI.run(["systemd", "install", "--root", root.path, "--workers", "1,2", "--no-coordinator"])
        #expect(r.status == 0, "\(r.stderr)")
        let units = root.appendingPathComponent("etc/systemd/system"), env = root.appendingPathComponent("etc/zerotrain")
        #expect(!FileManager.default.fileExists(atPath: units.appendingPathComponent("zerotrain-coordinator.service").path))
        let target = try String(contentsOf: units.appendingPathComponent("zerotrain.target"), encoding: .utf8)
        #expect(target.contains("Wants=zerotrain-worker@1.service zerotrain-worker@2.service\n"))
        try CLI.write("ZEROTRAIN_COORDINATOR=tcp://head:5555\n", to: env.appendingPathComponent("common.env"))
        r = try CLI.run(["systemd", "install", "--root", root.path])
        #expect(r.status == 0 && r.stdout.contains("kept "))
        #expect(try String(contentsOf: env.appendingPathComponent("common.env"), encoding: .utf8) == "ZEROTRAIN_COORDINATOR=tcp://head:5555\n")
        for args in [["--workers", "a,b"], ["--bin", "zerotrain"], ["--workers", "1,1"], ["--workers", "", "--no-coordinator"]] {
            let bad = try CLI.run(["systemd", "render"] + args)
            #expect(bad.status == 2 && bad.stderr.split(separator: "\n").count == 1, "\(args): \(bad.stderr)")
        }
    }

    static func tool(_ path: String, _ args: [String], in dir: URL) -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        p.currentDirectoryURL = dir
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        do { try p.run() } catch { return (-1, "\(error)") }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
