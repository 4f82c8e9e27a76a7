import Bench
import Common
import Foundation
import Testing
import ZeroTrainTestKit
#if canImport(Glibc)
import Glibc
#endif

/// `zerotrain serve` as a real process over a real socket: /predict and both OpenAI endpoints,
/// streaming (server-sent events) and not; /health, /metrics, /v1/models; the 4xx cases (400
/// malformed, 413, 429, 404) and 504 with a JSON message, the server alive after each; SIGTERM
/// finishing the request in flight; the official `openai` client where Python has it.
@Suite(.serialized) struct ServeCommandTests {
    /// A served model: the process, its port, its stdout so far.
    final class Server: @unchecked Sendable {  // Safe: immutable fields; Process is only signalled and waited on.
        let process: Process
        let port: UInt16
        let output: Monitor<String>
        init(process: Process, port: UInt16, output: Monitor<String>) { self.process = process; self.port = port; self.output = output }

        func request(_ method: String, _ path: String, json: String? = nil, timeout: Double = 60,
                     onBody: ((Data) -> Void)? = nil) throws -> HTTPClient.Response {
            try HTTPClient.request(host: "127.0.0.1", port: port, method: method, path: path, body: json.map { Data($0.utf8) },
                                   headers: json == nil ? [:] : ["Content-Type": "application/json"], timeout: timeout, onBody: onBody)
        }

        func object(_ r: HTTPClient.Response) throws -> [String: Any] {
            try #require(JSONSerialization.jsonObject(with: r.body) as? [String: Any], "not a JSON object: \(r.text)")
        }

        func stop() {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
    }

    /// A checkpoint one step from a peaked random initialisation (varied greedy text, fast).
    static func checkpoint(in root: URL, maxSeqLen: Int = 128, layers: Int = 2, hidden: Int = 32) throws -> URL {
        let ck = root.appendingPathComponent("ck"), config = root.appendingPathComponent("c.yaml")
        try CLI.write("""
            model: {num_layers: \(layers), hidden_size: \(hidden), num_attention_heads: 4, num_key_value_heads: 2, max_seq_len: \(maxSeqLen), init: {embedding_std: 1.0}}
            training: {lr: 0.001, warmup_steps: 0, total_steps: 1, micro_batch_size: 1, threads: 1, checkpoint_dir: "\(ck.path)"}
            data: {seq_len: 16}
            """, to: config)
        let t = try CLI.run(["train", "--config", config.path])
        try #require(t.status == 0, "train: \(t.stderr)")
        return ck
    }

    static func start(_ model: URL, _ extra: [String] = []) throws -> Server {
        let pipe = Pipe()
        let output = Monitor("")
        pipe.fileHandleForReading.readabilityHandler = { h in
            let data = h.availableData
            output.withLock { $0 += String(decoding: data, as: UTF8.self) }
        }
        let p = try CLI.start(["serve", "--model", model.path, "--listen", "127.0.0.1:0", "--threads", "1"] + extra, stdout: pipe,
                              stderr: FileHandle.standardError)
        let port: UInt16? = output.wait(until: .now + .seconds(60)) { text in
            guard let r = text.range(of: "on http://127.0.0.1:") else { return nil }
            return UInt16(text[r.upperBound...].prefix { $0.isNumber })
        }
        guard let port else {
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
            throw HTTPClient.Failure(description: "serve did not report its address: \(output.withLock { $0 })")
        }
        return Server(process: p, port: port, output: output)
    }

    /// The `data:` payloads of a server-sent-event body, [DONE] included.
    static func events(_ body: String) -> [String] {
        body.components(separatedBy: "\n\n").compactMap { $0.hasPrefix("data: ") ? String($0.dropFirst(6)) : nil }
    }

    @Test func endpointsStreamingAndNot() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let server = try Self.start(try Self.checkpoint(in: root))
        defer { server.stop() }

        let health = try server.request("GET", "/health")
        let healthObject = try server.object(health)
        #expect(health.status == 200 && healthObject["status"] as? String == "ok")

        // /predict: greedy by default.
        let p = try server.object(try server.request("POST", "/predict", json: #"{"prompt": "the cat ", "max_new_tokens": 12}"#))
        let predicted = try #require(p["generated_text"] as? String)
        #expect(p["generated_tokens"] as? Int == 12 && p["finish_reason"] as? String == "length")
        let again = try server.object(try server.request("POST", "/predict", json: #"{"text": "the cat ", "max_new_tokens": 12}"#))
        #expect(again["generated_text"] as? String == predicted)

        // /v1/completions, greedy (temperature 0), as JSON and as a stream: the same text.
        let body = #"{"model": "m", "prompt": "the cat ", "max_tokens": 12, "temperature": 0"#
        let c = try server.object(try server.request("POST", "/v1/completions", json: body + "}"))
        let choice = try #require((c["choices"] as? [[String: Any]])?.first)
        #expect(c["object"] as? String == "text_completion" && choice["text"] as? String == predicted)
        #expect((c["usage"] as? [String: Any])?["completion_tokens"] as? Int == 12)
        let s = try server.request("POST", "/v1/completions", json: body + #", "stream": true}"#)
        #expect(s.status == 200 && s.headers["content-type"] == "text/event-stream")
        let events = Self.events(s.text)
        #expect(events.last == "[DONE]")
        var streamed = "", reasons: [String] = []
        for e in events.dropLast() {
            let o = try #require(try JSONSerialization.jsonObject(with: Data(e.utf8)) as? [String: Any])
            let ch = try #require((o["choices"] as? [[String: Any]])?.first)
            streamed += ch["text"] as? String ?? ""
            if let r = ch["finish_reason"] as? String { reasons.append(r) }
        }
        #expect(streamed == predicted && reasons == ["length"])

        // /v1/chat/completions, seeded sampling: JSON and stream agree.
        let chat = #"{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}], "max_tokens": 10, "seed": 7, "temperature": 0.8"#
        let cc = try server.object(try server.request("POST", "/v1/chat/completions", json: chat + "}"))
        let message = try #require(((cc["choices"] as? [[String: Any]])?.first)?["message"] as? [String: Any])
        #expect(cc["object"] as? String == "chat.completion" && message["role"] as? String == "assistant")
        let cs = try server.request("POST", "/v1/chat/completions", json: chat + #", "stream": true}"#)
        var content = "", roles: [String] = []
        for e in Self.events(cs.text).dropLast() {
            let o = try #require(try JSONSerialization.jsonObject(with: Data(e.utf8)) as? [String: Any])
            #expect(o["object"] as? String == "chat.completion.chunk")
            let delta = try #require(((o["choices"] as? [[String: Any]])?.first)?["delta"] as? [String: Any])
            content += delta["content"] as? String ?? ""
            if let r = delta["role"] as? String { roles.append(r) }
        }
        #expect(content == message["content"] as? String && roles == ["assistant"])

        let models = try server.object(try server.request("GET", "/v1/models"))
        #expect(((models["data"] as? [[String: Any]])?.first)?["id"] as? String == "ck")
        let metrics = try server.request("GET", "/metrics").text
        for name in ["zerotrain_serve_request_duration_seconds_bucket{endpoint=\"completions\"", "zerotrain_serve_time_to_first_token_seconds_count",
                     "zerotrain_serve_tokens_per_second", "zerotrain_serve_queue_depth", "zerotrain_serve_requests_total{endpoint=\"predict\",code=\"200\"}"] {
            #expect(metrics.contains(name), "\(name) missing from /metrics")
        }
    }

    @Test func badRequestsGetJSONErrorsAndTheServerLives() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        // A model slow enough (4 × 256 wide) that 1000 tokens take well over 0.3 s.
        let server = try Self.start(try Self.checkpoint(in: root, maxSeqLen: 1024, layers: 4, hidden: 256),
                                    ["--max-body-bytes", "4096", "--max-tokens", "1000", "--max-batch", "1", "--max-queue", "0",
                                     "--request-timeout", "0.3"])
        defer { server.stop() }
        func expectError(_ r: HTTPClient.Response, _ status: Int, _ words: String) throws {
            #expect(r.status == status, "\(r.status): \(r.text)")
            let error = try #require((try server.object(r))["error"] as? [String: Any], "no error object: \(r.text)")
            #expect((error["message"] as? String ?? "").contains(words), "\(error)")
        }
        try expectError(try server.request("POST", "/v1/completions", json: "{not json"), 400, "not a JSON object")
        try expectError(try server.request("POST", "/v1/completions", json: "[1, 2]"), 400, "not a JSON object")
        try expectError(try server.request("POST", "/v1/completions", json: #"{"max_tokens": 3}"#), 400, "prompt: required")
        try expectError(try server.request("POST", "/v1/completions", json: #"{"prompt": "a", "max_tokens": "many"}"#), 400, "max_tokens: must be a whole number")
        try expectError(try server.request("POST", "/v1/completions", json: #"{"prompt": "a", "max_tokens": 5000}"#), 400, "must be ≤ 1000")
        try expectError(try server.request("POST", "/v1/completions", json: #"{"prompt": "a", "top_p": 0}"#), 400, "top_p")
        try expectError(try server.request("POST", "/v1/chat/completions", json: #"{"messages": []}"#), 400, "messages")
        try expectError(try server.request("POST", "/predict", json: #"{"prompt": ""}"#), 400, "empty")
        try expectError(try server.request("POST", "/predict", json: "{\"prompt\": \"\(String(repeating: "a", count: 5000))\"}"), 413, "4096 bytes")
        try expectError(try server.request("GET", "/nowhere"), 404, "no route")

        // Batch 1, queue 0: while one request runs, another is refused with 429. The running one
        // (a stream) runs into its 0.3 s timeout (1000 tokens take longer here) and ends with an
        // error event; a request that is not streamed gets a 504.
        let started = Monitor(false)
        let long = Monitor<HTTPClient.Response?>(nil)
        let thread = Thread {
            let r = try? server.request("POST", "/predict", json: #"{"prompt": "the cat ", "max_new_tokens": 1000, "stream": true}"#) { _ in
                started.withLock { $0 = true }
            }
            long.withLock { $0 = r }
        }
        thread.start()
        started.wait { $0 ? true : nil }
        try expectError(try server.request("POST", "/predict", json: #"{"prompt": "x", "max_new_tokens": 1}"#), 429, "queue is full")
        let stream = try #require(long.wait(until: .now + .seconds(60)) { $0 })
        #expect(stream.status == 200 && Self.events(stream.text).contains { $0.contains("\"timed out") || $0.contains("timed out") }, "\(stream.text.suffix(300))")
        try expectError(try server.request("POST", "/predict", json: #"{"prompt": "the cat ", "max_new_tokens": 1000}"#), 504, "timed out")
        // Still serving.
        #expect(try server.request("POST", "/predict", json: #"{"prompt": "x", "max_new_tokens": 2}"#).status == 200)
        #expect(server.process.isRunning)
    }

    @Test func sigtermFinishesTheRequestInFlight() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let server = try Self.start(try Self.checkpoint(in: root, maxSeqLen: 1024), ["--max-tokens", "1000"])
        defer { server.stop() }
        // A streamed request; SIGTERM once its first bytes are here.
        let started = Monitor(false)
        let result = Monitor<HTTPClient.Response?>(nil)
        let thread = Thread {
            let r = try? server.request("POST", "/v1/completions", json: #"{"prompt": "the cat ", "max_tokens": 600, "temperature": 0, "stream": true}"#) { _ in
                started.withLock { $0 = true }
            }
            result.withLock { $0 = r }
        }
        thread.start()
        started.wait { $0 ? true : nil }
        kill(server.process.processIdentifier, SIGTERM)
        let r = try #require(result.wait(until: .now + .seconds(60)) { $0 }, "the request in flight got no response")
        #expect(r.status == 200)
        let events = Self.events(r.text)
        #expect(events.last == "[DONE]")
        let last = try #require(try JSONSerialization.jsonObject(with: Data(events[events.count - 2].utf8)) as? [String: Any])
        #expect((last["usage"] as? [String: Any])?["completion_tokens"] as? Int == 600, "\(last)")
        #expect(CLI.wait(for: [server.process], timeout: 30), "serve did not exit after SIGTERM")
        #expect(server.process.terminationStatus == 0)
        let output = server.output.withLock { $0 }
        #expect(output.contains("finishing 1 request(s)") && output.contains("serve: stopped"), "\(output)")
        #expect(throws: HTTPClient.Failure.self) { try server.request("GET", "/health") }   // no longer listening
    }

    @Test func theOpenAIPythonClientWorks() throws {
        guard Python.run(["-c", "import openai"]).status == 0 else {
            print("note: ServeCommandTests.theOpenAIPythonClientWorks skipped: \(Python.interpreter) cannot import openai (set ZEROTRAIN_PYTHON to a Python with the openai package)")
            return
        }
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        let server = try Self.start(try Self.checkpoint(in: root))
        defer { server.stop() }
        let r = Python.run(["scripts/check_openai_client.py", "http://127.0.0.1:\(server.port)/v1"])
        print(r.output)
        #expect(r.status == 0, "\(r.output)")
    }
}
