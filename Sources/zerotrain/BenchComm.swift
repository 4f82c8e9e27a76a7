import ArgumentParser
import Bench
import Comm
import CommZMQ
import Foundation
import Synchronization

/// `zerotrain bench comm`: measures the ring collectives over a real transport, nccl-tests style,
/// next to the point-to-point ceiling of the same transport measured in the same run.
///
/// tcp and ipc spawn `--ranks` worker processes of this same executable (`bench comm --worker`,
/// hidden); inproc runs the ranks as threads of this process.
struct BenchComm: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "comm",
        abstract: "Benchmark ring collectives (all-reduce, reduce-scatter, all-gather, broadcast) over ZeroMQ.",
        discussion: """
            busbw follows nccl-tests: algbw·2(N−1)/N for all-reduce, algbw·(N−1)/N for reduce-scatter and \
            all-gather, algbw for broadcast. p2p is a ring exchange (every rank sends the same number of \
            bytes the collective sends per rank to its successor, zero-copy, in the same segments): the \
            ceiling busbw can reach on this transport.
            """)

    @Option(help: "Number of ranks.")
    var ranks: Int = 2

    @Option(help: "tcp, ipc or inproc.")
    var transport: String = "tcp"

    @Option(help: "Comma-separated buffer sizes in bytes; K and M suffixes are powers of 1024.")
    var sizes: String = "4K,64K,1M,16M,64M"

    @Option(help: "Comma-separated operations: allReduce, reduceScatter, allGather, broadcast; scalars (2 doubles) and barrier are timed once, without sizes.")
    var ops: String = "allReduce,reduceScatter,allGather,broadcast"

    @Option(help: "Timed runs per measurement (the median is reported).")
    var iterations: Int = 5

    @Option(help: "Untimed warm-up runs per measurement.")
    var warmup: Int = 2

    @Flag(inversion: .prefixedNo, help: "Alternate the operations run by run (collective, p2p, collective, p2p, …; each timed run after one warm-up of its own operation) instead of timing all runs of one operation, then all of the next: on a shared machine both then see the same background load.")
    var interleave: Bool = true

    @Flag(inversion: .prefixedNo, help: "CRC-32C over every payload (the default, as in training).")
    var payloadCRC: Bool = true

    @Option(help: "Largest frame payload in bytes (segment size of the pipeline).")
    var segmentBytes: Int = 1 << 20

    @Option(help: "Kernel socket buffer size in bytes for tcp/ipc (-1 = OS default).")
    var socketBuffer: Int32 = -1

    @Flag(help: "CURVE-encrypt the ring links (tcp and ipc), keys per rank and a ZAP handler as in a job (docs/security.md).")
    var curve: Bool = false

    @Option(help: "libzmq I/O threads per rank process (tcp and ipc).")
    var ioThreads: Int = 1

    @Flag(help: "Send fp32 buffers as bf16 on the wire.")
    var bf16: Bool = false

    @Flag(help: "Print one JSON object per row instead of the table.")
    var json: Bool = false

    @Flag(help: .hidden)
    var worker: Bool = false

    func validate() throws {
        if worker { return }
        guard ranks >= 1 else { throw ValidationError("--ranks must be at least 1, got \(ranks)") }
        guard ["tcp", "ipc", "inproc"].contains(transport) else {
            throw ValidationError("--transport must be tcp, ipc or inproc, got \(transport)")
        }
        guard segmentBytes >= 64 else { throw ValidationError("--segment-bytes must be at least 64") }
        guard (1...64).contains(ioThreads) else { throw ValidationError("--io-threads must be 1…64, got \(ioThreads)") }
        if curve && transport == "inproc" { throw ValidationError("--curve needs --transport tcp or ipc (inproc links have no handshake to encrypt)") }
        guard iterations >= 1, warmup >= 0 else { throw ValidationError("--iterations must be ≥ 1 and --warmup ≥ 0") }
        _ = try parsedSizes()
        _ = try parsedOps()
    }

    func run() throws {
        if worker {
            RankWorker().run()
            return
        }
        let sizeList = try parsedSizes()
        let opList = try parsedOps()
        var measurements: [Measurement] = []
        for op in opList where Self.isLatencyOp(op) {
            measurements.append(Measurement(op: op, bytes: op == .scalars ? 16 : 0))
        }
        for bytes in sizeList {
            for op in opList where !Self.isLatencyOp(op) {
                measurements.append(Measurement(op: op, bytes: bytes))
                let sent = Int((Double(bytes) * Self.busFactor(op, ranks: ranks)).rounded())
                if ranks > 1, !measurements.contains(where: { $0.op == .exchange && $0.bytes == sent }) {
                    measurements.append(Measurement(op: .exchange, bytes: sent))
                }
            }
        }
        let times = transport == "inproc" ? try runThreads(measurements) : try runProcesses(measurements)
        report(measurements: measurements, times: times, sizes: sizeList, ops: opList)
    }

    // MARK: Parsing

    func parsedSizes() throws -> [Int] {
        try sizes.split(separator: ",").map { token in
            let t = token.trimmingCharacters(in: .whitespaces).uppercased()
            var multiplier = 1
            var digits = Substring(t)
            if t.hasSuffix("K") { multiplier = 1 << 10; digits = digits.dropLast() }
            if t.hasSuffix("M") { multiplier = 1 << 20; digits = digits.dropLast() }
            if t.hasSuffix("G") { multiplier = 1 << 30; digits = digits.dropLast() }
            guard let n = Int(digits), n > 0, n % 4 == 0 || multiplier > 1 else {
                throw ValidationError("--sizes: \(token) is not a positive byte count (multiple of 4, or with K/M/G)")
            }
            return n * multiplier
        }
    }

    func parsedOps() throws -> [CollectiveBenchmark.Kind] {
        try ops.split(separator: ",").map { token in
            let name = token.trimmingCharacters(in: .whitespaces)
            guard let kind = CollectiveBenchmark.Kind(rawValue: name),
                  kind != .exchange else {
                throw ValidationError("--ops: \(name) is not one of allReduce, reduceScatter, allGather, broadcast, scalars, barrier")
            }
            return kind
        }
    }

    /// Collectives measured by latency only (no buffer size).
    static func isLatencyOp(_ op: CollectiveBenchmark.Kind) -> Bool { op == .scalars || op == .barrier }

    /// nccl-tests' busbw factor (bytes each rank sends per buffer byte).
    static func busFactor(_ op: CollectiveBenchmark.Kind, ranks n: Int) -> Double {
        guard n > 1 else { return 1 }
        switch op {
        case .allReduce: return 2 * Double(n - 1) / Double(n)
        case .reduceScatter, .allGather: return Double(n - 1) / Double(n)
        default: return 1
        }
    }

    struct Measurement: Sendable {
        var op: CollectiveBenchmark.Kind
        var bytes: Int
    }

    // MARK: Running

    /// Per measurement, per timed run: the slowest rank's seconds.
    private func runProcesses(_ measurements: [Measurement]) throws -> [[Double]] {
        guard let executable = RankProcess.executable(named: "zerotrain", environmentVariable: "ZEROTRAIN_BIN") else {
            throw CommError(.transport, "cannot find the zerotrain executable to spawn ranks; set ZEROTRAIN_BIN")
        }
        let workers = try (0..<ranks).map { _ in
            try RankProcess(executable: executable, arguments: ["bench", "comm", "--worker"])
        }
        defer { workers.forEach { $0.kill() } }
        let tag = "\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))"
        var endpoints: [String] = []
        let keys = curve ? try (0..<ranks).map { _ in try ZMQCurveKeyPair.generate() } : []
        for (rank, worker) in workers.enumerated() {
            var bind = RankCommand(cmd: "bind")
            bind.ioThreads = ioThreads
            if curve {
                bind.curveSecretKey = keys[rank].secretKey
                bind.predecessorPublicKey = keys[(rank - 1 + ranks) % ranks].publicKey
            }
            bind.rank = rank
            bind.worldSize = ranks
            bind.epoch = 1
            bind.jobID = 1
            bind.socketBufferBytes = socketBuffer
            bind.endpoint = transport == "tcp" ? "tcp://127.0.0.1:*" : "ipc:///tmp/zerotrain-bench-\(tag)-\(rank)"
            let reply = try worker.call(bind, timeout: .seconds(30))
            guard reply.ok, let endpoint = reply.endpoint else { throw Self.failure(reply, rank) }
            endpoints.append(endpoint)
        }
        for (rank, worker) in workers.enumerated() {
            var connect = RankCommand(cmd: "connect")
            connect.successor = endpoints[(rank + 1) % ranks]
            if curve { connect.successorPublicKey = keys[(rank + 1) % ranks].publicKey }
            connect.checksum = payloadCRC
            connect.segmentBytes = segmentBytes
            let reply = try worker.call(connect, timeout: .seconds(30))
            guard reply.ok else { throw Self.failure(reply, rank) }
        }
        var result = [[Double]](repeating: [], count: measurements.count)
        for round in rounds {
            for (index, m) in measurements.enumerated() {
                var command = RankCommand(cmd: "bench")
                command.kind = m.op
                command.count = m.bytes
                command.bfloat16 = bf16
                command.warmup = round.warmup
                command.iterations = round.iterations
                command.timeoutMs = 120_000
                for worker in workers { try worker.send(command) }
                var perRank: [[Double]] = []
                for (rank, worker) in workers.enumerated() {
                    let reply = try worker.reply(timeout: .seconds(600))
                    guard reply.ok, let times = reply.times else { throw Self.failure(reply, rank) }
                    perRank.append(times)
                }
                result[index] += (0..<round.iterations).map { i in perRank.map { $0[i] }.max() ?? 0 }
            }
        }
        for worker in workers { _ = try? worker.call(RankCommand(cmd: "exit"), timeout: .seconds(5)) }
        return result
    }

    /// (warm-up, timed) runs of each measurement per round: one round of everything, or with
    /// `--interleave` one timed run per round, so the measurements take turns.
    private var rounds: [(warmup: Int, iterations: Int)] {
        guard interleave else { return [(warmup, iterations)] }
        return (0..<iterations).map { ($0 == 0 ? warmup : min(warmup, 1), 1) }
    }

    private static func failure(_ reply: RankReply, _ rank: Int) -> Error {
        CommError(.transport, "rank \(rank) failed: \(reply.error ?? "unknown error")")
    }

    /// inproc: ranks are threads of this process sharing one ZeroMQ context.
    private func runThreads(_ measurements: [Measurement]) throws -> [[Double]] {
        let context = try ZMQContext()
        let n = ranks, tag = UInt32.random(in: 0...UInt32.max)
        let settings = ThreadSettings(n: n, rounds: rounds.map { [$0.warmup, $0.iterations] }, payloadCRC: payloadCRC,
                                      segmentBytes: segmentBytes,
                                      wire: bf16 ? .bfloat16 : .float32, measurements: measurements)
        let results = Mutex<[Int: Result<[[Double]], CommError>]>([:])
        let done = DispatchGroup()
        for rank in 0..<n {
            done.enter()
            let thread = Thread {
                defer { done.leave() }
                let outcome: Result<[[Double]], CommError>
                do {
                    outcome = .success(try Self.threadRank(rank, settings: settings, context: context, tag: tag))
                } catch {
                    outcome = .failure((error as? CommError) ?? CommError(.transport, "\(error)"))
                }
                results.withLock { $0[rank] = outcome }
            }
            thread.stackSize = 1 << 22
            thread.start()
        }
        done.wait()
        let perRank = try results.withLock { r in try (0..<n).map { try r[$0]!.get() } }
        return measurements.indices.map { m in (0..<iterations).map { i in perRank.map { $0[m][i] }.max() ?? 0 } }
    }

    struct ThreadSettings: Sendable {
        var n: Int
        /// [warm-up, timed] runs per round, as `rounds`.
        var rounds: [[Int]]
        var payloadCRC: Bool
        var segmentBytes: Int
        var wire: ProcessGroup.WireFormat
        var measurements: [Measurement]
    }

    private static func threadRank(_ rank: Int, settings s: ThreadSettings, context: ZMQContext, tag: UInt32) throws -> [[Double]] {
        let transport = try ZMQTransport(context: context, rank: rank, worldSize: s.n, bind: "inproc://bench-\(tag)-\(rank)")
        defer { transport.close() }
        try transport.connect(successor: "inproc://bench-\(tag)-\((rank + 1) % s.n)")
        var options = ProcessGroup.Options()
        options.checksumPayloads = s.payloadCRC
        options.segmentBytes = s.segmentBytes
        let group = try ProcessGroup(rank: rank, worldSize: s.n, transport: transport, epoch: 1, jobID: 1, options: options)
        var times = [[Double]](repeating: [], count: s.measurements.count)
        for round in s.rounds {
            for (index, m) in s.measurements.enumerated() {
                times[index] += try CollectiveBenchmark.measure(m.op, group: group, bytes: m.bytes, wire: s.wire,
                                                                warmup: round[0], iterations: round[1],
                                                                timeout: .seconds(120))
            }
        }
        return times
    }

    // MARK: Reporting

    private func report(measurements: [Measurement], times: [[Double]], sizes: [Int], ops: [CollectiveBenchmark.Kind]) {
        func median(_ xs: [Double]) -> Double {
            let s = xs.sorted()
            return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        }
        func time(_ op: CollectiveBenchmark.Kind, _ bytes: Int) -> Double? {
            measurements.indices.first { measurements[$0].op == op && measurements[$0].bytes == bytes }.map { median(times[$0]) }
        }
        if !json {
            print("# zerotrain bench comm: \(ranks) ranks over \(transport), payload CRC \(payloadCRC ? "on" : "off"), CURVE \(curve ? "on" : "off"), \(ioThreads) I/O thread(s), wire \(bf16 ? "bf16" : "fp32"), median of \(iterations) runs after \(warmup) warm-up\(interleave ? ", operations interleaved run by run" : "")")
            print("# p2p = ring exchange of the bytes each rank sends in the collective; ratio = busbw / p2p")
            print(String(repeating: " ", count: 1) + pad("bytes", 12) + pad("operation", 15) + pad("time(us)", 12)
                  + pad("algbw(GB/s)", 13) + pad("busbw(GB/s)", 13) + pad("p2p(GB/s)", 11) + pad("ratio", 8))
        }
        for op in ops where Self.isLatencyOp(op) {
            guard let t = time(op, op == .scalars ? 16 : 0) else { continue }
            if json {
                print("{\"op\":\"\(op.rawValue)\",\"bytes\":\(op == .scalars ? 16 : 0),\"ranks\":\(ranks),\"transport\":\"\(transport)\",\"timeUs\":\(fmt(t * 1e6))}")
            } else {
                print(" " + pad(op == .scalars ? "16" : "0", 12) + pad(op.rawValue, 15) + pad(fmt(t * 1e6), 12)
                      + pad("-", 13) + pad("-", 13) + pad("-", 11) + pad("-", 8))
            }
        }
        for bytes in sizes {
            for op in ops where !Self.isLatencyOp(op) {
                guard let t = time(op, bytes) else { continue }
                let algbw = Double(bytes) / t / 1e9
                let busbw = algbw * Self.busFactor(op, ranks: ranks)
                let sent = Int((Double(bytes) * Self.busFactor(op, ranks: ranks)).rounded())
                let p2p = time(.exchange, sent).map { Double(sent) / $0 / 1e9 }
                let ratio = p2p.map { busbw / $0 }
                if json {
                    var fields = ["\"op\":\"\(op.rawValue)\"", "\"bytes\":\(bytes)", "\"ranks\":\(ranks)",
                                  "\"transport\":\"\(transport)\"", "\"payloadCRC\":\(payloadCRC)",
                                  "\"wire\":\"\(bf16 ? "bf16" : "fp32")\"", "\"timeUs\":\(fmt(t * 1e6))",
                                  "\"algbwGBps\":\(fmt(algbw))", "\"busbwGBps\":\(fmt(busbw))"]
                    if let p2p, let ratio { fields += ["\"p2pGBps\":\(fmt(p2p))", "\"ratio\":\(fmt(ratio))"] }
                    print("{" + fields.joined(separator: ",") + "}")
                } else {
                    print(" " + pad("\(bytes)", 12) + pad(op.rawValue, 15) + pad(fmt(t * 1e6), 12) + pad(fmt(algbw), 13)
                          + pad(fmt(busbw), 13) + pad(p2p.map(fmt) ?? "-", 11) + pad(ratio.map { fmt($0 * 100) + "%" } ?? "-", 8))
                }
            }
        }
    }

    private func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s + " " : String(repeating: " ", count: width - s.count) + s
    }

    private func fmt(_ x: Double) -> String {
        String(format: x >= 100 ? "%.1f" : "%.3f", x)
    }
}
