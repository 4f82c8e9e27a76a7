import ArgumentParser
import Bench
import Checkpoint
import Common
import Foundation
import Model
import Serve
import Tensor
import Training

/// `zerotrain bench serve`: the HTTP server under closed-loop load on loopback. For each number
/// of concurrent clients, each client sends `--requests` completions one after the other; the
/// same load runs against a server that batches continuously (`--max-batch`) and one that serves
/// one request at a time (max batch 1), alternated, `--repeats` times; the medians are reported.
/// Each run starts its server in this process (after one untimed warm-up request) and stops it
/// with a graceful drain; the clients are threads with blocking sockets (`Bench.HTTPClient`).
struct BenchServe: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Server throughput and p50/p99 latency at 1, 8, 32 concurrent clients, continuous batching vs one at a time (docs/benchmarks.md).")

    @Option(name: .long, help: "A checkpoint or Hugging Face folder to serve.")
    var model: String?

    @Option(name: .long, help: "Or a config: its model, randomly initialised (seed 0), is served.")
    var config: String?

    @Option(name: .long, help: "Concurrent clients, comma-separated.")
    var clients: String = "1,8,32"

    @Option(name: .long, help: "Requests each client sends, one after the other.")
    var requests: Int = 4

    @Option(name: .long, help: "max_tokens of each request (greedy; generation runs to it).")
    var maxTokens: Int = 32

    @Option(name: .long, help: "Prompt text of each request.")
    var prompt: String = "The quick brown fox jumps over the lazy dog. "

    @Option(name: .long, help: "Running batch of the batching server.")
    var maxBatch: Int = 32

    @Option(name: .long, help: "Repeats of each (clients, server) pair; medians are reported.")
    var repeats: Int = 3

    @Option(name: .long, help: "Compute threads of the server.")
    var threads: Int = 2

    @Flag(name: .long, help: "Print one JSON object.")
    var json = false

    struct Sample { let seconds: Double; let tokens: Int; let latencies: [Double] }

    func run() throws {
        try runReportingErrors {
            guard (model == nil) != (config == nil) else { throw ValidationError("give --model DIR or --config FILE") }
            let levels = try clients.split(separator: ",").map { part -> Int in
                guard let n = Int(part), n >= 1, n <= 256 else { throw ValidationError("--clients: whole numbers 1–256, got \"\(part)\"") }
                return n
            }
            guard requests >= 1, maxTokens >= 1, repeats >= 1, maxBatch >= 1, threads >= 1 else {
                throw ValidationError("--requests, --max-tokens, --repeats, --max-batch and --threads must be ≥ 1")
            }
            var folder = URL(fileURLWithPath: model ?? "")
            let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("zerotrain-bench-serve-\(getpid())")
            defer { try? FileManager.default.removeItem(at: scratch) }
            if let config {
                let cfg = try TrainConfig.load(path: config)
                let m = try Transformer(config: cfg.model, pool: ThreadPool(threads: 1))
                m.initializeParameters(seed: 0)
                try CheckpointStore.exportHuggingFace(m, to: scratch)
                folder = scratch
            }
            var rows: [[String: Any]] = []
            if !json {
                Console.out("bench serve: \(requests) requests per client, \(maxTokens) tokens each, \(repeats) repeats (medians), \(threads) threads, loopback")
                Console.out("clients  server            tok/s   req/s   p50 ms   p99 ms")
            }
            for c in levels {
                var samples: [Int: [Sample]] = [maxBatch: [], 1: []]
                for _ in 0..<repeats {
                    for batch in [maxBatch, 1] { samples[batch]!.append(try load(folder: folder, batch: batch, clients: c)) }
                }
                for batch in [maxBatch, 1] {
                    let s = samples[batch]!
                    let tps = median(s.map { Double($0.tokens) / $0.seconds }), rps = median(s.map { Double(c * requests) / $0.seconds })
                    let p50 = median(s.map { percentile($0.latencies, 0.5) }), p99 = median(s.map { percentile($0.latencies, 0.99) })
                    let name = batch == 1 ? "one at a time" : "batched (\(batch))"
                    rows.append(["clients": c, "max_batch": batch, "tokens_per_second": tps, "requests_per_second": rps,
                                 "p50_ms": p50 * 1000, "p99_ms": p99 * 1000])
                    if !json {
                        Console.out(String(format: "%7d  %-15@ %7.0f %7.2f %8.1f %8.1f", c, name as NSString, tps, rps, p50 * 1000, p99 * 1000))
                    }
                }
            }
            if json {
                let data = try JSONSerialization.data(withJSONObject: ["requests_per_client": requests, "max_tokens": maxTokens,
                                                                       "repeats": repeats, "threads": threads, "results": rows],
                                                      options: [.sortedKeys])
                Console.out(String(decoding: data, as: UTF8.self))
            }
        }
    }

    /// Starts a server with running batch `batch` in this process, runs `clients` closed-loop
    /// clients against it, stops it (a graceful drain) and returns the wall time, tokens and latencies.
    func load(folder: URL, batch: Int, clients: Int) throws -> Sample {
        var limits = ServeLimits()
        limits.maxBatch = batch
        limits.maxQueue = 256
        limits.maxTokens = maxTokens
        limits.requestTimeout = 600
        let daemon = ServeDaemon(quiet: true)
        let bound = Monitor<Result<InferenceServer.ListenAddress, any Error>?>(nil)
        let threads = self.threads, fixedLimits = limits
        let serverThread = Thread {
            do {
                _ = try daemon.run(model: folder, name: "bench", address: try .init(parsing: "127.0.0.1:0"), limits: fixedLimits,
                                   threads: threads) { address in bound.withLock { $0 = .success(address) } }
            } catch {
                bound.withLock { $0 = .failure(error) }
            }
            bound.withLock { if $0 == nil { $0 = .failure(HTTPClient.Failure(description: "the server stopped")) } }
        }
        serverThread.start()
        let address = try bound.wait { $0 }.get()
        defer { daemon.requestStop() }
        let body = try JSONSerialization.data(withJSONObject: ["prompt": prompt, "max_tokens": maxTokens, "temperature": 0])
        // One untimed request first: the first products of a fresh process create oneDNN's primitives.
        let warm = try HTTPClient.request(host: address.host, port: address.port, method: "POST", path: "/v1/completions",
                                          body: body, headers: ["Content-Type": "application/json"], timeout: 600)
        guard warm.status == 200 else { throw HTTPClient.Failure(description: "warm-up request: HTTP \(warm.status): \(warm.text)") }
        let results = Monitor<[Result<(Double, Int), any Error>]>([])
        let start = ContinuousClock.now
        let requests = self.requests
        for _ in 0..<clients {
            Thread {
                for _ in 0..<requests {
                    let t0 = ContinuousClock.now
                    let outcome = Result<(Double, Int), any Error> {
                        let r = try HTTPClient.request(host: address.host, port: address.port, method: "POST", path: "/v1/completions",
                                                       body: body, headers: ["Content-Type": "application/json"], timeout: 600)
                        guard r.status == 200, let o = try JSONSerialization.jsonObject(with: r.body) as? [String: Any],
                              let tokens = (o["usage"] as? [String: Any])?["completion_tokens"] as? Int else {
                            throw HTTPClient.Failure(description: "HTTP \(r.status): \(r.text)")
                        }
                        return ((ContinuousClock.now - t0).seconds, tokens)
                    }
                    results.withLock { $0.append(outcome) }
                }
            }.start()
        }
        let all = results.wait { $0.count == clients * requests ? $0 : nil }
        let seconds = (ContinuousClock.now - start).seconds
        let done = try all.map { try $0.get() }
        return Sample(seconds: seconds, tokens: done.reduce(0) { $0 + $1.1 }, latencies: done.map(\.0))
    }

    func median(_ xs: [Double]) -> Double { percentile(xs, 0.5) }

    /// The nearest-rank percentile.
    func percentile(_ xs: [Double], _ q: Double) -> Double {
        let s = xs.sorted()
        return s[min(s.count - 1, max(0, Int((q * Double(s.count)).rounded(.up)) - 1))]
    }
}
