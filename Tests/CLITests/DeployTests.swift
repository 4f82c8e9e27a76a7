import Foundation
import Testing
import ZeroTrainTestKit

extension Python {
    static let hasKubernetesValidate = has("kubernetes_validate", for: "DeployTests.kubernetesManifestsValidate")
}

/// deploy/slurm and deploy/kubernetes: the batch script runs a real job (with a stand-in for
/// `srun` that starts its tasks on this host, as Slurm would on the nodes), and the manifests
/// pass Kubernetes' schemas.
@Suite(.serialized) struct DeployTests {
    static let manifests = CLI.repo.appendingPathComponent("deploy/kubernetes/zerotrain.yaml")

    @Test func sbatchScriptRunsAJobWithoutWrappers() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let bin = root.appendingPathComponent("bin")
        try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
        // srun: SLURM_NTASKS copies of the command, each with its task variables.
        let srun = bin.appendingPathComponent("srun")
        try CLI.write("""
            #!/bin/bash
            while [[ "$1" == --* ]]; do shift; done
            pids=()
            for ((i = 0; i < SLURM_NTASKS; i++)); do SLURM_PROCID=$i SLURM_LOCALID=0 SLURMD_NODENAME=127.0.0.1 "$@" & pids+=($!); done
            status=0
            for p in "${pids[@]}"; do wait "$p" || status=$?; done
            exit $status

            """, to: srun)
        chmod(srun.path, 0o755)
        let config = root.appendingPathComponent("job.yaml"), run = root.appendingPathComponent("run")
        try CLI.write(LaunchTests.config, to: config)
        let port = Self.freePort()
        let job = try Child(["-c", "exec bash deploy/slurm/zerotrain.sbatch \"$0\"", config.path],
                            environment: ["PATH": bin.path + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"),
                                          "ZEROTRAIN": CLI.binary.path, "ZEROTRAIN_RUN_DIR": run.path, "ZEROTRAIN_PORT": String(port),
                                          "SLURM_JOB_NODELIST": "localhost,cn[02-03]", "SLURM_NTASKS": "3", "SLURM_CPUS_PER_TASK": "1",
                                          "SLURM_JOB_ID": "42"],
                            log: root.appendingPathComponent("job.log"), executable: URL(fileURLWithPath: "/bin/bash"))
        #expect(job.wait(120) == 0, "\(job.output)")
        #expect(job.output.contains("assigned 3 ranks") && job.output.contains("finished 8 steps"), "\(job.output)")
        #expect(LaunchTests.records(run) == 8)
    }

    @Test(.enabled(if: Python.hasKubernetesValidate, "needs Python with kubernetes-validate: set ZEROTRAIN_PYTHON"))
    func kubernetesManifestsValidate() throws {
        let r = Python.run(["-m", "kubernetes_validate", "-k", "1.32.0", "--strict", Self.manifests.path])
        #expect(r.status == 0, "\(r.output)")
        for resource in ["configmap/zerotrain-config", "service/zerotrain-coordinator", "job/zerotrain-coordinator", "job/zerotrain-workers"] {
            #expect(r.output.contains("passed for resource \(resource)"), "\(r.output)")
        }
    }

    /// `kubectl apply --dry-run=client` needs an API server to map kinds: run where one answers.
    static let kubectlReachesAServer: Bool = {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/kubectl") else {
            print("note: DeployTests.kubectlDryRunAcceptsTheManifests skipped: no kubectl")
            return false
        }
        let (status, _) = SystemdTests.tool("/usr/bin/kubectl", ["version", "--request-timeout=5s"], in: CLI.repo)
        if status != 0 { print("note: DeployTests.kubectlDryRunAcceptsTheManifests skipped: kubectl reaches no API server") }
        return status == 0
    }()

    @Test(.enabled(if: DeployTests.kubectlReachesAServer, "needs kubectl with an API server"))
    func kubectlDryRunAcceptsTheManifests() throws {
        let (status, output) = SystemdTests.tool("/usr/bin/kubectl", ["apply", "--dry-run=client", "-f", Self.manifests.path], in: CLI.repo)
        #expect(status == 0 && output.contains("job.batch/zerotrain-workers created (dry run)"), "\(output)")
    }

    @Test func manifestsUseOnlyVariablesTheDaemonsRead() throws {
        let text = try String(contentsOf: Self.manifests, encoding: .utf8)
        let names = text.split(separator: "\n").compactMap { line -> String? in
            guard let r = line.range(of: "name: ZEROTRAIN_") else { return nil }
            return String(line[r.lowerBound...].dropFirst(6).prefix { $0.isLetter || $0 == "_" })
        }
        #expect(Set(names) == ["ZEROTRAIN_CONFIG", "ZEROTRAIN_LISTEN", "ZEROTRAIN_HTTP", "ZEROTRAIN_WORKERS", "ZEROTRAIN_COORDINATOR",
                               "ZEROTRAIN_DEVICES", "ZEROTRAIN_THREADS", "ZEROTRAIN_CONNECT_TIMEOUT", "ZEROTRAIN_ADVERTISE"])
        let docs = try String(contentsOf: CLI.repo.appendingPathComponent("docs/operations.md"), encoding: .utf8)
        for name in names { #expect(docs.contains("`\(name)`"), "docs/operations.md does not describe \(name)") }
    }

    static func freePort() -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return UInt16(bigEndian: a.sin_port)
    }
}
