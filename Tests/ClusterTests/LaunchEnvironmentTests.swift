import Cluster
import Testing

@Suite struct LaunchEnvironmentTests {
    @Test(arguments: [
        ("node1", ["node1"]),
        ("node[1-3]", ["node1", "node2", "node3"]),
        ("node[08-11,20]", ["node08", "node09", "node10", "node11", "node20"]),
        ("gpu5,cpu[1-2],login", ["gpu5", "cpu1", "cpu2", "login"]),
        ("rack[1-2]-n[1-2]", ["rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"]),
        ("a-[001-002].example", ["a-001.example", "a-002.example"]),
    ])
    func slurmNodeListsExpand(_ list: String, _ expected: [String]) throws {
        #expect(try SlurmNodeList.expand(list) == expected)
    }

    @Test(arguments: ["node[1-", "node[3-1]", "node[a-b]", "node]1[", "a,,b", "node[1-2]]", "n[[1]]", ""])
    func badNodeListsAreErrors(_ list: String) {
        #expect(throws: ClusterError.self) { try SlurmNodeList.expand(list) }
        do { _ = try SlurmNodeList.expand(list) } catch let e as ClusterError {
            #expect(e.kind == .badInput && e.message.contains("SLURM_JOB_NODELIST"))
        } catch { Issue.record("\(error)") }
    }

    @Test func torchrunVariables() throws {
        let e = try LaunchEnvironment(["MASTER_ADDR": "10.1.2.3", "MASTER_PORT": "29500", "WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "1"])
        #expect(e.coordinator == "tcp://10.1.2.3:29500" && e.worldSize == 4 && e.launchRank == 2 && e.numaNode == 1)
        let six = try LaunchEnvironment(["MASTER_ADDR": "fd00::1", "WORLD_SIZE": "3", "ZEROTRAIN_DEVICES": "2"])
        #expect(six.coordinator == "tcp://[fd00::1]:5555" && six.worldSize == 6 && six.devices == 2)
    }

    @Test func slurmVariables() throws {
        let e = try LaunchEnvironment(["SLURM_JOB_NODELIST": "cn[007-009]", "SLURM_NTASKS": "3", "SLURM_PROCID": "1", "SLURM_LOCALID": "0",
                                       "ZEROTRAIN_PORT": "6000"])
        #expect(e.coordinator == "tcp://cn007:6000" && e.worldSize == 3 && e.launchRank == 1 && e.numaNode == 0)
    }

    @Test func zeroTrainsOwnVariablesWin() throws {
        let e = try LaunchEnvironment(["ZEROTRAIN_COORDINATOR": "tcp://head:7000", "MASTER_ADDR": "other", "SLURM_JOB_NODELIST": "n1",
                                       "ZEROTRAIN_RANK": "0", "RANK": "5", "WORLD_SIZE": "8", "ZEROTRAIN_WORLD_SIZE": "2",
                                       "JOB_COMPLETION_INDEX": "3", "ZEROTRAIN_THREADS": "4"])
        #expect(e.coordinator == "tcp://head:7000" && e.launchRank == 0 && e.worldSize == 2 && e.threads == 4)
        #expect(try LaunchEnvironment(["JOB_COMPLETION_INDEX": "3"]).launchRank == 3)
        #expect(try LaunchEnvironment([:]) == LaunchEnvironment([:]) && (try LaunchEnvironment([:])).coordinator == nil)
    }

    @Test(arguments: [["ZEROTRAIN_DEVICES": "0"], ["ZEROTRAIN_DEVICES": "two"], ["MASTER_ADDR": "h", "MASTER_PORT": "70000"],
                      ["WORLD_SIZE": "2", "RANK": "2"], ["SLURM_JOB_NODELIST": "n[1-"], ["ZEROTRAIN_CONNECT_TIMEOUT": "-1"], ["WORLD_SIZE": "0"]])
    func badValuesAreOneLineErrors(_ env: [String: String]) {
        do {
            _ = try LaunchEnvironment(env)
            Issue.record("accepted \(env)")
        } catch let e as ClusterError {
            #expect(e.kind == .badInput && !e.message.contains("\n"))
        } catch { Issue.record("\(error)") }
    }

    @Test func hostfiles() throws {
        let h = try Hostfile(parsing: "# cluster\nworker-1 slots=4\n\n  10.0.0.7 slots=2  # the small one\nlogin\n")
        #expect(h.hosts.map(\.name) == ["worker-1", "10.0.0.7", "login"] && h.hosts.map(\.slots) == [4, 2, 1] && h.hosts.map(\.line) == [2, 4, 5])
        #expect(h.totalSlots == 7)
        for (text, message) in [("a slots=1\nb slots=1\na slots=2", "hosts:3: host a is listed twice (first on line 1)"),
                                ("a slots=0", "hosts:1: slots must be ≥ 1"), ("a slots=2 extra", "hosts:1: expected `host slots=N`"),
                                ("a gpus=2", "hosts:1: expected `host slots=N`"), ("# nothing\n", "hosts: no hosts")] {
            do {
                _ = try Hostfile(parsing: text, path: "hosts")
                Issue.record("accepted \(text)")
            } catch let e as ClusterError {
                #expect(e.kind == .badInput && e.message.hasPrefix(message), "\(e.message)")
            }
        }
    }

    @Test func remoteCommands() {
        let args = ["worker", "--coordinator", "tcp://head:5555", "--devices", "2"]
        #expect(HostLauncher.command(.ssh, host: "n1", binary: "/opt/zt/zerotrain", directory: "/srv/my job", args: args)
            == ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new", "n1", "--",
                "cd '/srv/my job' && exec /opt/zt/zerotrain worker --coordinator tcp://head:5555 --devices 2"])
        #expect(HostLauncher.command(.pdsh, host: "n1", binary: "/z", directory: "/d", args: ["worker"]) == ["pdsh", "-N", "-w", "n1", "cd /d && exec /z worker"])
        #expect(HostLauncher.command(.none, host: "n1", binary: "/z", directory: "/d", args: ["worker"]) == ["/z", "worker"])
    }
}
