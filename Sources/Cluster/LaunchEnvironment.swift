/// A worker's settings from its environment, so that systemd, Slurm, Kubernetes and torchrun
/// start it without a wrapper script. Looked up in order, first found wins (flags beat them all):
/// ZeroTrain's own variables, then torchrun's, then Slurm's.
///
/// | setting | ZeroTrain | torchrun | Slurm |
/// |---|---|---|---|
/// | coordinator | ZEROTRAIN_COORDINATOR (tcp://host:port) | MASTER_ADDR + MASTER_PORT | first node of SLURM_JOB_NODELIST + ZEROTRAIN_PORT (5555) |
/// | world size (ranks) | ZEROTRAIN_WORLD_SIZE | WORLD_SIZE × devices | SLURM_NTASKS × devices |
/// | launch rank (orders workers) | ZEROTRAIN_RANK | RANK | SLURM_PROCID |
/// | NUMA node | ZEROTRAIN_NUMA_NODE | LOCAL_RANK | SLURM_LOCALID |
///
/// plus ZEROTRAIN_DEVICES, ZEROTRAIN_THREADS, ZEROTRAIN_ADVERTISE, ZEROTRAIN_CONFIG and
/// ZEROTRAIN_CONNECT_TIMEOUT, and Kubernetes' JOB_COMPLETION_INDEX (an indexed Job) as the launch rank.
public struct LaunchEnvironment: Equatable, Sendable {
    public var coordinator: String?
    public var devices: Int?
    public var threads: Int?
    public var numaNode: Int?
    public var advertise: String?
    public var config: String?
    public var connectTimeoutSeconds: Double?
    /// Ranks the job must have (the worker refuses another).
    public var worldSize: Int?
    /// The launcher's index of this worker: the coordinator gives ranks in its order.
    public var launchRank: Int?
    /// Where each setting came from, for the log ("coordinator from MASTER_ADDR/MASTER_PORT").
    public var sources: [String] = []

    public static let defaultPort = 5555

    public init(_ env: [String: String]) throws {
        func int(_ name: String) throws -> Int? {
            guard let text = env[name], !text.isEmpty else { return nil }
            guard let v = Int(text), v >= 0 else { throw ClusterError(.badInput, "\(name)=\(text): expected a whole number ≥ 0") }
            return v
        }
        func port(_ name: String) throws -> Int? {
            guard let p = try int(name) else { return nil }
            guard (1...65535).contains(p) else { throw ClusterError(.badInput, "\(name)=\(p): expected a port 1–65535") }
            return p
        }
        devices = try int("ZEROTRAIN_DEVICES")
        if devices == 0 { throw ClusterError(.badInput, "ZEROTRAIN_DEVICES=0: a worker needs at least one device") }
        threads = try int("ZEROTRAIN_THREADS")
        if threads == 0 { throw ClusterError(.badInput, "ZEROTRAIN_THREADS=0: a device needs at least one thread") }
        advertise = env["ZEROTRAIN_ADVERTISE"].flatMap { $0.isEmpty ? nil : $0 }
        config = env["ZEROTRAIN_CONFIG"].flatMap { $0.isEmpty ? nil : $0 }
        if let t = env["ZEROTRAIN_CONNECT_TIMEOUT"], !t.isEmpty {
            guard let v = Double(t), v > 0 else { throw ClusterError(.badInput, "ZEROTRAIN_CONNECT_TIMEOUT=\(t): expected seconds > 0") }
            connectTimeoutSeconds = v
        }
        let perWorker = devices ?? 1
        let slurmNodes = try env["SLURM_JOB_NODELIST"].flatMap { $0.isEmpty ? nil : try SlurmNodeList.expand($0) }

        if let c = env["ZEROTRAIN_COORDINATOR"], !c.isEmpty {
            coordinator = c
            sources.append("coordinator from ZEROTRAIN_COORDINATOR")
        } else if let addr = env["MASTER_ADDR"], !addr.isEmpty {
            let p = try port("MASTER_PORT") ?? Self.defaultPort
            coordinator = "tcp://\(Self.bracketed(addr)):\(p)"
            sources.append("coordinator from MASTER_ADDR/MASTER_PORT")
        } else if let first = slurmNodes?.first {
            coordinator = "tcp://\(Self.bracketed(first)):\(try port("ZEROTRAIN_PORT") ?? Self.defaultPort)"
            sources.append("coordinator from the first node of SLURM_JOB_NODELIST")
        }

        if let n = try int("ZEROTRAIN_WORLD_SIZE") {
            worldSize = n
        } else if let n = try int("WORLD_SIZE") {
            worldSize = n * perWorker
            sources.append("world size from WORLD_SIZE")
        } else if let n = try int("SLURM_NTASKS") {
            worldSize = n * perWorker
            sources.append("world size from SLURM_NTASKS")
        }
        if worldSize == 0 { throw ClusterError(.badInput, "a world size of 0 ranks (from the environment) cannot train") }

        if let r = try int("ZEROTRAIN_RANK") {
            launchRank = r
        } else if let r = try int("RANK") {
            launchRank = r
            sources.append("launch rank from RANK")
        } else if let r = try int("SLURM_PROCID") {
            launchRank = r
            sources.append("launch rank from SLURM_PROCID")
        } else if let r = try int("JOB_COMPLETION_INDEX") {
            launchRank = r
            sources.append("launch rank from JOB_COMPLETION_INDEX")
        }
        if let r = launchRank, let w = worldSize, r * perWorker >= w {
            throw ClusterError(.badInput, "launch rank \(r) with \(perWorker) device(s) does not fit a world of \(w) ranks")
        }

        numaNode = try int("ZEROTRAIN_NUMA_NODE") ?? int("LOCAL_RANK") ?? int("SLURM_LOCALID")
    }

    static func bracketed(_ host: String) -> String { host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host }
}

/// Slurm's compressed host lists (`SLURM_JOB_NODELIST`): `node[01-03,07],gpu5,rack[1-2]-n[1-2]`,
/// ranges keep their zero padding, several bracket groups in one name multiply out.
public enum SlurmNodeList {
    public static func expand(_ list: String) throws -> [String] {
        var names: [String] = []
        var depth = 0, current = ""
        for ch in list {
            if ch == "[" { depth += 1 } else if ch == "]" { depth -= 1 }
            guard depth >= 0, depth <= 1 else { throw bad(list, "unbalanced or nested brackets") }
            if ch == "," && depth == 0 {
                names += try expandName(current, list)
                current = ""
            } else {
                current.append(ch)
            }
        }
        guard depth == 0 else { throw bad(list, "unbalanced brackets") }
        names += try expandName(current, list)
        return names
    }

    private static func expandName(_ name: String, _ list: String) throws -> [String] {
        guard !name.isEmpty else { throw bad(list, "an empty host name") }
        guard let open = name.firstIndex(of: "[") else {
            guard !name.contains("]"), !name.contains(where: \.isWhitespace) else { throw bad(list, "unexpected character in \(name)") }
            return [name]
        }
        guard let close = name[open...].firstIndex(of: "]") else { throw bad(list, "unbalanced brackets") }
        let prefix = String(name[..<open]), body = name[name.index(after: open)..<close]
        let tail = String(name[name.index(after: close)...])
        let rest = tail.isEmpty ? [""] : try expandName(tail, list)
        var values: [String] = []
        for part in body.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
            guard bounds.count == 1 || bounds.count == 2, bounds.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
                  let lo = Int(bounds[0]), let hi = Int(bounds.last!), lo <= hi, hi - lo < 100_000 else {
                throw bad(list, "bad range [\(body)]")
            }
            let width = bounds[0].count
            for v in lo...hi {
                let digits = String(v)
                values.append(String(repeating: "0", count: max(0, width - digits.count)) + digits)
            }
        }
        return values.flatMap { v in rest.map { prefix + v + $0 } }
    }

    private static func bad(_ list: String, _ why: String) -> ClusterError {
        ClusterError(.badInput, "SLURM_JOB_NODELIST \(list): cannot expand the node list (\(why))")
    }
}
