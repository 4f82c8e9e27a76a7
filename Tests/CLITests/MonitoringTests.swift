import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Telemetry
import Testing
import ZeroTrainTestKit

/// A GET with URLSession (a real HTTP client over a real socket). Blocking: the completion runs
/// on URLSession's own queue, so a test waiting here never needs a thread of the (busy) cooperative pool.
enum HTTP {
    struct Response { let status: Int; let contentType: String; let body: Data; var text: String { String(decoding: body, as: UTF8.self) } }

    static func get(_ url: String) throws -> Response {
        var request = URLRequest(url: URL(string: url)!)
        request.timeoutInterval = 10
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var result: Result<Response, any Error> = .failure(URLError(.timedOut))
        URLSession.shared.dataTask(with: request) { data, response, error in
            if let http = response as? HTTPURLResponse, let data {
                result = .success(Response(status: http.statusCode, contentType: http.value(forHTTPHeaderField: "Content-Type") ?? "", body: data))
            } else {
                result = .failure(error ?? URLError(.badServerResponse))
            }
            done.signal()
        }.resume()
        done.wait()
        return try result.get()
    }

    static func status(_ base: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: try get(base + "/status").body) as! [String: Any]
    }
}

extension Python {
    static func has(_ module: String, for suite: String) -> Bool {
        let ok = run(["-c", "import \(module)"]).status == 0
        if !ok { print("note: \(suite) skipped: \(interpreter) cannot import \(module) (set ZEROTRAIN_PYTHON to a Python that has it)") }
        return ok
    }
    static let hasTensorBoard = has("tensorboard", for: "MonitoringTests.tensorBoardReadsEveryTag")
    static let hasPrometheusClient = has("prometheus_client", for: "MonitoringTests.prometheusClientParsesMetrics")
}

/// The coordinator's monitoring, on real multi-process jobs: the TensorBoard event file and
/// metrics.jsonl's scalars, and `/metrics`, `/status` and `/` read over HTTP while the job trains
/// and after it finished.
@Suite(.serialized) struct MonitoringTests {
    static func config(steps: Int, moe: Bool = false, layerNorms: Bool = false, accumulation: Int = 1, stage: Int = 0) -> String {
        """
        model: {num_layers: 2, hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 2, max_seq_len: 64\(moe ? ", moe_config: {num_experts: 4, top_k: 2}" : "")}
        training: {lr: 0.003, warmup_steps: 5, total_steps: \(steps), micro_batch_size: 2, gradient_accumulation_steps: \(accumulation), threads: 1, log_interval: 50, checkpoint_interval: 0}
        data: {seq_len: 32}
        cluster: {heartbeat_interval_ms: 200, heartbeat_timeout_ms: 5000}
        zero: {stage: \(stage)}
        \(layerNorms ? "telemetry: {layer_norms: true}" : "")
        """
    }

    /// The tags a run of `ranks` ranks writes at every step (docs/operations.md).
    static func expectedTags(ranks: Int, moe: Bool, layerNorms: Bool = false) -> Set<String> {
        var tags: Set<String> = ["train/loss", "train/learning_rate", "train/grad_norm", "train/tokens_per_second", "train/skipped",
                                 "train/mfu", "system/step_seconds", "system/idle_seconds"]
        if moe {
            tags.insert("train/aux_loss")
            for e in 0..<4 { tags.insert("train/expert_load/expert\(e)") }
        }
        if layerNorms {
            for name in ["embedding", "layer0", "layer1", "head"] { tags.insert("train/grad_norm/\(name)") }
        }
        for r in 0..<ranks {
            for t in ["compute_seconds", "exposed_communication_seconds", "checkpoint_seconds", "data_seconds", "device_utilization", "sent_bytes"] {
                tags.insert("system/rank\(r)/\(t)")
            }
            for tier in ["device", "host", "disk"] {
                tags.insert("system/rank\(r)/memory_\(tier)_bytes")
                tags.insert("system/rank\(r)/memory_\(tier)_peak_bytes")
            }
        }
        return tags
    }

    static func eventFile(_ run: URL) throws -> URL {
        let names = try FileManager.default.contentsOfDirectory(atPath: run.path).filter { $0.contains("tfevents") && $0.hasSuffix(".coordinator") }
        #expect(names.count == 1, "\(names)")
        return run.appendingPathComponent(try #require(names.first))
    }

    /// Starts `zerotrain local` (2 workers) in the background; the caller waits for it.
    static func start(_ root: URL, steps: Int, moe: Bool = false, layerNorms: Bool = false, http: Bool = true, linger: Double = 0,
                      workers: Int = 2, accumulation: Int = 1, stage: Int = 0) throws -> (Process, URL) {
        let file = root.appendingPathComponent("job.yaml")
        try CLI.write(config(steps: steps, moe: moe, layerNorms: layerNorms, accumulation: accumulation, stage: stage), to: file)
        let run = root.appendingPathComponent("run")
        var args = ["local", "--config", file.path, "--workers", String(workers), "--run-dir", run.path, "--peak-gflops", "20"]
        if http { args += ["--http", "127.0.0.1:0", "--http-linger", String(linger)] }
        let log = root.appendingPathComponent("local.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let p = try CLI.start(args, stdout: try FileHandle(forWritingTo: log), stderr: try FileHandle(forWritingTo: log))
        return (p, run)
    }

    /// Polls (every 20 ms, up to `timeout` seconds) until `body` gives a value.
    static func eventually<T>(_ timeout: Double = 120, _ body: () throws -> T?) throws -> T {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let v = try? body() { return v }
            usleep(20_000)
        }
        throw CLIError("gave up after \(timeout) s")
    }

    struct CLIError: Error, CustomStringConvertible { let description: String; init(_ d: String) { description = d } }

    static func baseURL(_ run: URL) throws -> String {
        try eventually {
            let text = try String(contentsOf: run.appendingPathComponent("coordinator.http"), encoding: .utf8)
            return text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    /// Checks Prometheus text 0.0.4 line by line: `\n`-terminated, every sample's family has a
    /// `# TYPE`, one `zerotrain_` prefix, counters end in `_total`, labels only rank/tier/le/version.
    static func checkExposition(_ text: String) {
        #expect(text.hasSuffix("\n"))
        var types: [String: String] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("# TYPE ") {
            let parts = line.split(separator: " ")
            types[String(parts[2])] = String(parts[3])
        }
        #expect(types.count >= 15)
        for (name, type) in types {
            #expect(name.hasPrefix("zerotrain_") && !name.dropFirst(10).contains("zerotrain"), "\(name)")
            #expect((type == "counter") == name.hasSuffix("_total"), "\(name) is a \(type)")
        }
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let name = String(line.prefix { $0 != "{" && $0 != " " })
            let family = types[name] != nil ? name : ["_bucket", "_sum", "_count"].compactMap { s in
                name.hasSuffix(s) ? String(name.dropLast(s.count)) : nil }.first { types[$0] == "histogram" }
            #expect(family != nil, "sample \(line) has no # TYPE")
            #expect(Double(line.split(separator: " ").last!) != nil, "\(line)")
            if let open = line.firstIndex(of: "{") {
                let labels = line[line.index(after: open)..<line.firstIndex(of: "}")!].split(separator: ",").map { String($0.prefix { $0 != "=" }) }
                #expect(Set(labels).isSubset(of: ["rank", "tier", "le", "version", "rule"]), "\(line)")
            }
        }
    }

    @Test func twoWorkerJobIsMonitoredWhileTrainingAndAfter() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let steps = 400
        let (process, run) = try Self.start(root, steps: steps, linger: 20)
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        let base = try Self.baseURL(run)
        #expect(base.hasPrefix("http://127.0.0.1:"))

        // While training.
        let during = try Self.eventually { () throws -> [String: Any]? in
            let s = try HTTP.status(base)
            return s["state"] as? String == "running" && (s["step"] as? Int ?? 0) >= 1 ? s : nil
        }
        let workers = try #require(during["workers"] as? [[String: Any]])
        #expect(workers.count == 2)
        #expect(Set(workers.flatMap { $0["ranks"] as? [Int] ?? [] }) == [0, 1])
        for w in workers {
            #expect((w["host"] as? String)?.isEmpty == false && (w["pid"] as? Int ?? 0) > 0)
            #expect((w["last_heartbeat_seconds_ago"] as? Double ?? 99) < 5 && (w["memory_bytes"] as? Int ?? 0) > 0)
        }
        #expect(during["total_steps"] as? Int == steps && during["world_size"] as? Int == 2)
        #expect((during["recoveries"] as? [Any])?.isEmpty == true)
        let metrics = try HTTP.get(base + "/metrics")
        #expect(metrics.status == 200 && metrics.contentType == "text/plain; version=0.0.4; charset=utf-8")
        Self.checkExposition(metrics.text)
        #expect(metrics.text.contains("zerotrain_steps_total ") && metrics.text.contains("zerotrain_rank_memory_bytes{rank=\"1\",tier=\"device\"}"))
        let page = try HTTP.get(base + "/")
        #expect(page.status == 200 && page.contentType.hasPrefix("text/html"))
        #expect(page.text.contains("<canvas id=\"loss\"") && page.text.contains("fetch('status'"))
        #expect(!page.text.contains("src=") && !page.text.contains("https://"), "the page loads nothing from elsewhere")
        #expect(try HTTP.get(base + "/nothing").status == 404)

        // After: the final status while the coordinator lingers.
        let after = try Self.eventually { () throws -> [String: Any]? in
            let s = try HTTP.status(base)
            return s["state"] as? String == "finished" ? s : nil
        }
        #expect(after["step"] as? Int == steps)
        #expect((after["history"] as? [Any])?.count == steps)
        #expect((after["last_checkpoint"] as? [String: Any])?["step"] as? Int == steps)
        let final = try HTTP.get(base + "/metrics").text
        #expect(final.contains("zerotrain_steps_total \(steps)\n") && final.contains("zerotrain_checkpoints_total 1\n"))
        // SIGTERM ends the linger at once.
        kill(process.processIdentifier, SIGTERM)
        #expect(CLI.wait(for: [process], timeout: 30))
        #expect(process.terminationStatus == 0)

        // The event file: framing checked record by record, every tag at every step, the same
        // values as metrics.jsonl's scalars.
        let events = try EventFileWriter.read(path: try Self.eventFile(run).path)
        #expect(events.first?.fileVersion == "brain.Event:2")
        let summaries = events.dropFirst()
        #expect(summaries.map(\.step) == (0..<Int64(steps)).map { $0 })
        let tags = Self.expectedTags(ranks: 2, moe: false)
        for e in summaries { #expect(Set(e.scalars.map(\.tag)) == tags, "step \(e.step)") }
        let records = try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
            .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        #expect(records.count == steps)
        for (record, event) in zip(records, summaries) {
            let scalars = try #require(record["scalars"] as? [String: Double])
            #expect(Set(scalars.keys) == tags)
            for (tag, value) in event.scalars { #expect(Float(scalars[tag]!) == value, "\(tag) at step \(event.step)") }
        }
        let last = try #require(summaries.last)
        let value = Dictionary(last.scalars.map { ($0.tag, $0.value) }, uniquingKeysWith: { a, _ in a })
        #expect(value["train/mfu"]! > 0 && value["train/mfu"]! < 1)
        #expect(value["system/rank1/memory_device_bytes"]! > 0 && value["system/rank0/sent_bytes"]! > 0)
        #expect(value["system/rank0/device_utilization"]! > 0 && value["system/rank0/device_utilization"]! <= 1)
    }

    /// One finished job's scalars by step: from metrics.jsonl, checked against the event file.
    static func scalarsByStep(_ run: URL, steps: Int, tags: Set<String>) throws -> [[String: Double]] {
        let records = try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
            .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        let events = try EventFileWriter.read(path: try Self.eventFile(run).path).dropFirst()
        #expect(records.count == steps && events.count == steps)
        return try zip(records, events).map { record, event in
            let scalars = try #require(record["scalars"] as? [String: Double])
            #expect(Set(scalars.keys) == tags && Set(event.scalars.map(\.tag)) == tags, "step \(event.step)")
            for (tag, value) in event.scalars { #expect(Float(scalars[tag]!) == value, "\(tag) at step \(event.step)") }
            return scalars
        }
    }

    /// MoE with `telemetry.layer_norms` on 1 worker and on 2 (ZeRO stage 2), the same global
    /// batch: the expert load (summed over the ranks) and the per-layer gradient norms (over the
    /// ranks' shards) agree, the loads sum to 1 and the layers' norms make the global norm.
    @Test func expertLoadAndLayerNormsAreTheJobs() throws {
        let steps = 8
        var runs: [[[String: Double]]] = []
        for workers in [1, 2] {
            let root = CLI.tempDir()
            defer { try? FileManager.default.removeItem(at: root) }
            let (process, run) = try Self.start(root, steps: steps, moe: true, layerNorms: true, http: false, workers: workers,
                                                accumulation: 2 / workers, stage: 2)
            defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
            #expect(CLI.wait(for: [process], timeout: 120))
            #expect(process.terminationStatus == 0)
            runs.append(try Self.scalarsByStep(run, steps: steps, tags: Self.expectedTags(ranks: workers, moe: true, layerNorms: true)))
        }
        func relative(_ a: Double, _ b: Double) -> Double { abs(a - b) / max(abs(b), 1e-30) }
        for (step, (one, two)) in zip(runs[0], runs[1]).enumerated() {
            for s in [one, two] {
                let load = (0..<4).map { s["train/expert_load/expert\($0)"]! }
                #expect(abs(load.reduce(0, +) - 1) < 1e-9, "step \(step): \(load)")
                let layers = ["embedding", "layer0", "layer1", "head"].map { s["train/grad_norm/\($0)"]! }
                let rss = layers.map { $0 * $0 }.reduce(0, +).squareRoot()
                #expect(relative(rss, s["train/grad_norm"]!) <= 1e-5, "step \(step): \(layers) vs \(s["train/grad_norm"]!)")
            }
            for tag in one.keys where tag.hasPrefix("train/expert_load/") {
                #expect(abs(one[tag]! - two[tag]!) <= 1e-12, "\(tag) at step \(step): \(one[tag]!) vs \(two[tag]!)")
            }
            for tag in one.keys where tag.hasPrefix("train/grad_norm/") {
                #expect(relative(two[tag]!, one[tag]!) <= 1e-5, "\(tag) at step \(step): \(two[tag]!) vs \(one[tag]!)")
            }
        }
    }

    @Test(.enabled(if: Python.hasTensorBoard, "needs Python with tensorboard: set ZEROTRAIN_PYTHON"))
    func tensorBoardReadsEveryTag() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let steps = 12
        let (process, run) = try Self.start(root, steps: steps, moe: true, layerNorms: true, http: false)
        #expect(CLI.wait(for: [process], timeout: 120))
        #expect(process.terminationStatus == 0)
        let r = Python.run(["scripts/check_tensorboard.py", run.path])
        #expect(r.status == 0, "\(r.output)")
        let json = try #require(r.output.split(separator: "\n").last)
        let read = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: [Int]])
        #expect(Set(read.keys) == Self.expectedTags(ranks: 2, moe: true, layerNorms: true))
        for (tag, s) in read { #expect(s == Array(0..<steps), "\(tag)") }
    }

    @Test(.enabled(if: Python.hasPrometheusClient, "needs Python with prometheus_client: set ZEROTRAIN_PYTHON"))
    func prometheusClientParsesMetrics() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let (process, run) = try Self.start(root, steps: 10, linger: 20)
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        let base = try Self.baseURL(run)
        _ = try Self.eventually { try HTTP.status(base)["state"] as? String == "finished" ? true : nil }
        let file = root.appendingPathComponent("metrics.prom")
        try (try HTTP.get(base + "/metrics")).body.write(to: file)
        kill(process.processIdentifier, SIGTERM)
        #expect(CLI.wait(for: [process], timeout: 60))
        let r = Python.run(["scripts/check_prometheus.py", file.path])
        #expect(r.status == 0, "\(r.output)")
        let families = try #require(try JSONSerialization.jsonObject(with: Data(r.output.split(separator: "\n").last!.utf8)) as? [String: String])
        // The parser names a counter's family without `_total`.
        #expect(families["zerotrain_steps"] == "counter" && families["zerotrain_loss"] == "gauge")
        #expect(families["zerotrain_step_duration_seconds"] == "histogram" && families["zerotrain_rank_memory_bytes"] == "gauge")
    }

    static let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static let hasBrowser: Bool = {
        if chromium == nil { print("note: MonitoringTests.livePageRendersInAHeadlessBrowser skipped: no Chromium (apt-get install chromium)") }
        return chromium != nil
    }()

    /// Chromium headless on `url`: the DOM after the page's scripts ran (`--dump-dom`), or a screenshot.
    static func browse(_ url: String, _ mode: String, profile: URL) throws -> Child {
        try Child(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--user-data-dir=" + profile.path,
                   "--window-size=1200,900", "--virtual-time-budget=4000", mode, url],
                  environment: [:], log: profile.appendingPathExtension("log"), executable: URL(fileURLWithPath: chromium!))
    }

    /// The live page in a real browser: its script fetches /status and fills in the state,
    /// workers and charts while the job trains; a screenshot is taken (docs/images/status-page.png
    /// is one, taken after a job finished).
    @Test(.enabled(if: MonitoringTests.hasBrowser, "needs Chromium"))
    func livePageRendersInAHeadlessBrowser() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let (process, run) = try Self.start(root, steps: 3000, linger: 30)
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        let base = try Self.baseURL(run)
        _ = try Self.eventually { try HTTP.status(base)["state"] as? String == "running" ? true : nil }
        let during = try Self.browse(base + "/", "--dump-dom", profile: root.appendingPathComponent("profile1"))
        #expect(during.wait(60) == 0)
        #expect(during.output.contains("<span id=\"state\" class=\"state\">running</span>"), "\(during.output.suffix(2000))")
        #expect(during.output.contains(" of 3000 · 2 ranks"), "\(during.output.suffix(2000))")
        #expect(during.output.contains("<td>0,</td>") == false && during.output.contains("s ago</td>"), "the workers table")
        let png = root.appendingPathComponent("page.png")
        let shot = try Self.browse(base + "/", "--screenshot=" + png.path, profile: root.appendingPathComponent("profile2"))
        #expect(shot.wait(60) == 0)
        let bytes = try Data(contentsOf: png)
        #expect(bytes.prefix(8) == Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) && bytes.count > 10_000, "\(bytes.count) bytes")
        // Ctrl-C's path: the job checkpoints and stops (status 130), without lingering.
        kill(process.processIdentifier, SIGTERM)
        #expect(CLI.wait(for: [process], timeout: 60))
        #expect(process.terminationStatus == 130)
    }

    /// The health monitor stays quiet on a healthy run of configs/tiny.yaml (200 steps, 2 workers),
    /// its per-layer gradient rules too (`telemetry.layer_norms`).
    @Test func healthMonitorIsQuietOnTiny() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let shipped = try String(contentsOf: CLI.repo.appendingPathComponent("configs/tiny.yaml"), encoding: .utf8)
        let config = shipped.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            if line.hasPrefix("  checkpoint_dir:") { return "  checkpoint_dir: \(root.appendingPathComponent("checkpoints").path)" }
            if line.hasPrefix("  threads:") { return "  threads: 1" }
            return String(line)
        }.joined(separator: "\n") + "\ntelemetry: {layer_norms: true}\n"
        let file = root.appendingPathComponent("tiny.yaml"), run = root.appendingPathComponent("run")
        try CLI.write(config, to: file)
        let r = try CLI.run(["local", "--config", file.path, "--workers", "2", "--run-dir", run.path], timeout: 180)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("finished 200 steps") && !r.stdout.contains("warning:"), "\(r.stdout)")
        var monitor = HealthMonitor()
        let records = try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
            .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        #expect(records.count == 200)
        for rec in records {
            let norms = try #require(rec["layer_grad_norms"] as? [Double])
            let w = monitor.observe(step: rec["step"] as! Int, loss: (rec["loss"] as! NSNumber).doubleValue,
                                    gradNorm: (rec["grad_norm"] as! NSNumber).doubleValue, skipped: rec["skipped"] as? Bool ?? false,
                                    layerNorms: norms.enumerated().map { (StepSample.layerName($0.offset, of: norms.count), $0.element) })
            #expect(w.isEmpty, "\(w)")
        }
    }

    @Test func badHTTPAddressesAreOneLineErrors() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let file = root.appendingPathComponent("job.yaml")
        try CLI.write(Self.config(steps: 10), to: file)
        // A port in use: held by a listening socket of this test.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        listen(fd, 1)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        let port = UInt16(bigEndian: a.sin_port)
        for (http, message) in [("127.0.0.1:\(port)", "the port is in use"), ("127.0.0.1:99999", "expected ADDR:PORT"),
                                ("example.org:80", "is not an IPv4 or IPv6 address"), ("10.255.255.1:8080", "is not an address of this host")] {
            let r = try CLI.run(["coordinator", "--config", file.path, "--run-dir", root.appendingPathComponent("run").path,
                                 "--listen", "tcp://127.0.0.1:*", "--http", http], timeout: 30)
            #expect(r.status == 2, "\(http): \(r.stderr)")
            #expect(r.stderr.contains(message) && r.stderr.split(separator: "\n").count == 1, "\(http): \(r.stderr)")
        }
    }
}
