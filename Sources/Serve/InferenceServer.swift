import Common
import Data
import FlyingFox
import FlyingSocks
import Foundation
import Synchronization
import Telemetry
#if canImport(Glibc)
import Glibc
#endif

/// `zerotrain serve`'s HTTP API on FlyingFox: POST /predict, the OpenAI-compatible POST
/// /v1/completions and /v1/chat/completions (JSON, or server-sent events with `"stream": true`),
/// GET /v1/models, GET /health and GET /metrics. Handlers parse and check a request, hand it to
/// the `GenerationLoop` and wait for its events; they never compute. Every refusal is a JSON
/// error in OpenAI's shape, `{"error": {"message", "type", "code"}}`: 400 malformed, 413 body too
/// large, 429 queue full, 503 shutting down, 504 timed out, 404 unknown route.
public final class InferenceServer: Sendable {
    /// `ADDR:PORT`: IPv4, or IPv6 in brackets (`[::1]:8080`); a bare port is loopback.
    /// `--listen ADDR:PORT` (loopback for a bare port).
    public typealias ListenAddress = HTTPAddress

    public let address: ListenAddress
    public let modelName: String
    private let server: HTTPServer
    private let loop: GenerationLoop
    private let limits: ServeLimits
    private let metrics: ServeMetrics
    private let tokenizer: ModelTokenizer
    private let maxSeqLen: Int
    private let runTask = Mutex<Task<Void, any Error>?>(nil)

    public init(address: ListenAddress, modelName: String, loop: GenerationLoop, tokenizer: ModelTokenizer, maxSeqLen: Int,
                limits: ServeLimits, metrics: ServeMetrics) throws {
        self.address = address
        self.modelName = modelName
        self.loop = loop
        self.limits = limits
        self.metrics = metrics
        self.tokenizer = tokenizer
        self.maxSeqLen = maxSeqLen
        let socketAddress: any SocketAddress = address.isIPv6
            ? try sockaddr_in6.inet6(ip6: address.host, port: address.port)
            : try sockaddr_in.inet(ip4: address.host, port: address.port)
        // FlyingFox's own handler timeout stays above ours, so that a timed-out request gets our 504.
        server = HTTPServer(config: .init(address: socketAddress, timeout: limits.requestTimeout + 30, logger: .disabled))
    }

    /// Binds and starts serving; returns the bound address (the port chosen for port 0). Call from
    /// a thread of its own, not from Swift's cooperative pool: it waits for the bind.
    public func start() throws -> ListenAddress {
        try Self.checkBindable(address)
        let server = self.server
        let routes = Routes(server: self)
        Self.blocking {
            await server.appendRoute("GET /health") { _ in routes.health() }
            await server.appendRoute("GET /metrics") { _ in routes.metricsPage() }
            await server.appendRoute("GET /v1/models") { _ in routes.models() }
            await server.appendRoute("POST /predict") { await routes.generate($0, .predict) }
            await server.appendRoute("POST /v1/completions") { await routes.generate($0, .completions) }
            await server.appendRoute("POST /v1/chat/completions") { await routes.generate($0, .chatCompletions) }
            await server.appendRoute("*") { r in
                Routes.error(404, "no route \(r.method.rawValue) \(r.path): try POST /predict, /v1/completions, /v1/chat/completions, GET /health, /metrics or /v1/models",
                             type: "not_found_error")
            }
        }
        let run = Task { try await server.run() }
        runTask.withLock { $0 = run }
        let bound: Result<UInt16, any Error> = Self.blocking {
            do {
                try await server.waitUntilListening(timeout: 10)
                switch await server.listeningAddress {
                case let .ip4(_, port)?, let .ip6(_, port)?: return .success(port)
                default: return .failure(ServeError(.runtime, "the server on \(self.address) did not report its port"))
                }
            } catch { return .failure(error) }
        }
        switch bound {
        case let .success(port):
            var a = address
            a.port = port
            return a
        case let .failure(error):
            run.cancel()
            throw ServeError(.badInput, "--listen \(address): cannot listen", cause: error)
        }
    }

    /// Closes the listening socket and waits up to `limits.drainGrace` seconds for the responses
    /// being written.
    public func stop() {
        let server = self.server, grace = limits.drainGrace
        Self.blocking { await server.stop(timeout: grace) }
        runTask.withLock { $0?.cancel(); $0 = nil }
    }

    /// Runs `body` on the cooperative pool and blocks this (non-cooperative) thread until it ends.
    static func blocking<R: Sendable>(_ body: @escaping @Sendable () async -> R) -> R {
        let done = Monitor<R?>(nil)
        Task { let r = await body(); done.withLock { $0 = r } }
        return done.wait { $0 }
    }

    private static func checkBindable(_ a: ListenAddress) throws {
        if let problem = a.bindProblem() { throw ServeError(.badInput, "--listen \(a): cannot listen: \(problem)") }
    }

    /// The handlers (Sendable: they read the server's immutable parts).
    struct Routes: Sendable {
        let server: InferenceServer

        static func json(_ status: Int, _ object: [String: Any]) -> HTTPResponse {
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
            return HTTPResponse(statusCode: HTTPStatusCode(status, phrase: phrase(status)), headers: [.contentType: "application/json"],
                                body: data + Data("\n".utf8))
        }

        static func phrase(_ status: Int) -> String {
            switch status {
            case 200: "OK"
            case 400: "Bad Request"
            case 404: "Not Found"
            case 413: "Payload Too Large"
            case 429: "Too Many Requests"
            case 500: "Internal Server Error"
            case 503: "Service Unavailable"
            default: "Gateway Timeout"
            }
        }

        static func error(_ status: Int, _ message: String, type: String? = nil) -> HTTPResponse {
            let kind = type ?? (status == 429 ? "rate_limit_error" : status >= 500 ? "server_error" : "invalid_request_error")
            return json(status, ["error": ["message": message, "type": kind, "code": status, "param": NSNull()] as [String: Any]])
        }

        func health() -> HTTPResponse {
            let (queued, running) = server.loop.occupancy
            let draining = server.loop.isShuttingDown
            return Self.json(draining ? 503 : 200, ["status": draining ? "draining" : "ok", "model": server.modelName,
                                                    "queued": queued, "running": running])
        }

        func metricsPage() -> HTTPResponse {
            let (queued, running) = server.loop.occupancy
            server.metrics.occupancy(queued: queued, running: running)
            return HTTPResponse(statusCode: .ok, headers: [.contentType: ServeMetrics.contentType], body: Data(server.metrics.exposition()))
        }

        func models() -> HTTPResponse {
            Self.json(200, ["object": "list", "data": [["id": server.modelName, "object": "model", "created": 0, "owned_by": "zerotrain"]]])
        }

        /// Reads the body, at most `limits.maxBodyBytes` (nil: too large).
        func body(_ request: HTTPRequest) async throws -> Data? {
            let limit = server.limits.maxBodyBytes
            if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limit { return nil }
            var data = Data()
            for try await chunk in request.bodySequence {
                data += chunk
                if data.count > limit { return nil }
            }
            return data
        }

        func generate(_ request: HTTPRequest, _ endpoint: APIRequest.Endpoint) async -> HTTPResponse {
            let arrival = ContinuousClock.now
            let response = await answer(request, endpoint, arrival: arrival)
            if response.statusCode.code != 200 {   // a stream's 200 is counted when it ends
                server.metrics.request(endpoint: endpoint.rawValue, code: response.statusCode.code, seconds: (ContinuousClock.now - arrival).seconds)
            }
            return response
        }

        private func answer(_ request: HTTPRequest, _ endpoint: APIRequest.Endpoint, arrival: ContinuousClock.Instant) async -> HTTPResponse {
            let limits = server.limits
            let body: Data
            do {
                guard let read = try await self.body(request) else {
                    return Self.error(413, "the request body is larger than \(limits.maxBodyBytes) bytes (--max-body-bytes)")
                }
                body = read
            } catch {
                return Self.error(400, "cannot read the request body: \(error)")
            }
            let api: APIRequest
            do { api = try APIRequest(endpoint: endpoint, body: body) } catch let e as ServeError {
                return Self.error(400, e.message)
            } catch { return Self.error(400, "\(error)") }
            let prompt = server.tokenizer.encode(api.prompt)
            guard !prompt.isEmpty else { return Self.error(400, "prompt: must not be empty") }
            guard prompt.count < server.maxSeqLen else {
                return Self.error(400, "prompt: \(prompt.count) tokens; the model's context (max_seq_len) is \(server.maxSeqLen)")
            }
            let maxTokens = api.maxTokens ?? limits.maxTokens
            guard maxTokens <= limits.maxTokens else {
                return Self.error(400, "max_tokens: must be ≤ \(limits.maxTokens) (--max-tokens), got \(maxTokens)")
            }
            let generation = GenerationRequest(prompt: prompt, maxTokens: maxTokens, sampling: api.sampling, stop: api.stop)
            let (events, continuation) = AsyncStream<GenerationEvent>.makeStream()
            let metrics = server.metrics, name = endpoint.rawValue, streaming = api.stream
            let submitted = server.loop.submit(generation, deadline: arrival + .milliseconds(Int64(limits.requestTimeout * 1000))) { event in
                switch event {
                case let .token(_, first) where first: metrics.firstToken(seconds: (ContinuousClock.now - arrival).seconds)
                case .finished where streaming: metrics.request(endpoint: name, code: 200, seconds: (ContinuousClock.now - arrival).seconds)
                case let .failed(_, timedOut) where streaming:
                    metrics.request(endpoint: name, code: timedOut ? 504 : 500, seconds: (ContinuousClock.now - arrival).seconds)
                default: break
                }
                continuation.yield(event)
                if event.isTerminal { continuation.finish() }
            }
            guard let id = submitted.id else {
                continuation.finish()
                return submitted.admission == .queueFull
                    ? Self.error(429, "the queue is full (\(limits.maxQueue) requests waiting, --max-queue): retry later")
                    : Self.error(503, "the server is shutting down")
            }
            let loop = server.loop
            continuation.onTermination = { reason in
                if case .cancelled = reason { loop.cancel(id) }
            }
            let reply = Reply(endpoint: endpoint, model: server.modelName, id: "\(endpoint == .chatCompletions ? "chatcmpl" : "cmpl")-\(id)",
                              created: Int(Date().timeIntervalSince1970))
            if api.stream {
                let body = EventStreamBody(events: events, format: { reply.event($0) }, trailer: Array("data: [DONE]\n\n".utf8))
                return HTTPResponse(statusCode: .ok, headers: [.contentType: "text/event-stream", .init("Cache-Control"): "no-cache"],
                                    body: HTTPBodySequence(from: body))
            }
            var text: [UInt8] = []
            for await event in events {
                switch event {
                case let .token(bytes, _): text += bytes
                case let .finished(reason, promptTokens, completionTokens):
                    let seconds = (ContinuousClock.now - arrival).seconds
                    metrics.request(endpoint: name, code: 200, seconds: seconds)
                    return Self.json(200, reply.complete(text: String(decoding: text, as: UTF8.self), reason: reason,
                                                         promptTokens: promptTokens, completionTokens: completionTokens))
                case let .failed(message, timedOut):
                    return Self.error(timedOut ? 504 : 500, timedOut ? "\(message) (--request-timeout \(limits.requestTimeout) s)" : message)
                }
            }
            return Self.error(500, "the generation ended without a result")
        }
    }

    /// The JSON of one endpoint's answers.
    struct Reply: Sendable {
        let endpoint: APIRequest.Endpoint
        let model: String, id: String
        let created: Int

        func complete(text: String, reason: FinishReason, promptTokens: Int, completionTokens: Int) -> [String: Any] {
            let usage = ["prompt_tokens": promptTokens, "completion_tokens": completionTokens, "total_tokens": promptTokens + completionTokens]
            switch endpoint {
            case .predict:
                return ["generated_text": text, "finish_reason": reason.rawValue, "model": model,
                        "prompt_tokens": promptTokens, "generated_tokens": completionTokens]
            case .completions:
                return ["id": id, "object": "text_completion", "created": created, "model": model, "usage": usage,
                        "choices": [["index": 0, "text": text, "logprobs": NSNull(), "finish_reason": reason.rawValue] as [String: Any]]]
            case .chatCompletions:
                return ["id": id, "object": "chat.completion", "created": created, "model": model, "usage": usage,
                        "choices": [["index": 0, "message": ["role": "assistant", "content": text], "logprobs": NSNull(),
                                     "finish_reason": reason.rawValue] as [String: Any]]]
            }
        }

        /// One event as server-sent-event bytes (`data: {…}\n\n`); nothing for a token whose text is held back.
        func event(_ e: GenerationEvent) -> [UInt8] {
            var object: [String: Any]
            switch e {
            case let .token(bytes, first):
                guard !bytes.isEmpty || (first && endpoint == .chatCompletions) else { return [] }
                object = chunk(text: String(decoding: bytes, as: UTF8.self), reason: nil, first: first)
            case let .finished(reason, promptTokens, completionTokens):
                object = chunk(text: "", reason: reason, first: false)
                if endpoint == .predict {
                    object["prompt_tokens"] = promptTokens
                    object["generated_tokens"] = completionTokens
                } else {
                    object["usage"] = ["prompt_tokens": promptTokens, "completion_tokens": completionTokens,
                                       "total_tokens": promptTokens + completionTokens]
                }
            case let .failed(message, timedOut):
                object = ["error": ["message": message, "type": timedOut ? "timeout" : "server_error", "code": timedOut ? 504 : 500]]
            }
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
            return Array("data: ".utf8) + Array(data) + Array("\n\n".utf8)
        }

        private func chunk(text: String, reason: FinishReason?, first: Bool) -> [String: Any] {
            let finish: Any = reason?.rawValue ?? NSNull()
            switch endpoint {
            case .predict:
                return ["token": text, "finish_reason": finish]
            case .completions:
                return ["id": id, "object": "text_completion", "created": created, "model": model,
                        "choices": [["index": 0, "text": text, "logprobs": NSNull(), "finish_reason": finish] as [String: Any]]]
            case .chatCompletions:
                var delta: [String: Any] = reason == nil ? ["content": text] : [:]
                if first { delta["role"] = "assistant" }
                return ["id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                        "choices": [["index": 0, "delta": delta, "logprobs": NSNull(), "finish_reason": finish] as [String: Any]]]
            }
        }
    }
}
