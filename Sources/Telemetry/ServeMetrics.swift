import class CoreMetrics.Timer
import Prometheus

/// The inference server's Prometheus metrics (`zerotrain serve`, `GET /metrics`), in its own
/// registry like `JobMetrics`; latency histograms through the swift-metrics `Timer` API over that
/// registry. Labels are bounded: `endpoint` is one of the server's routes, `code` an HTTP status
/// the server sends.
public final class ServeMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    public static let contentType = JobMetrics.contentType
    public static let endpoints = ["predict", "completions", "chat_completions"]

    private let promptTokens, generatedTokens: Counter
    private let queueDepth, running, tokensPerSecond: Gauge
    private let requestDuration: [String: Timer]
    private let timeToFirstToken: Timer

    public init(version: String, model: String) {
        let r = registry
        r.makeGauge(name: "zerotrain_build_info", labels: [("version", version)], help: "The running build (value 1).").set(1.0)
        r.makeGauge(name: "zerotrain_serve_model_info", labels: [("model", model)], help: "The model being served (value 1).").set(1.0)
        promptTokens = r.makeCounter(name: "zerotrain_serve_prompt_tokens_total", help: "Prompt tokens prefilled.")
        generatedTokens = r.makeCounter(name: "zerotrain_serve_generated_tokens_total", help: "Tokens generated.")
        queueDepth = r.makeGauge(name: "zerotrain_serve_queue_depth", help: "Requests waiting for a place in the running batch.")
        running = r.makeGauge(name: "zerotrain_serve_running_sequences", help: "Sequences in the running (continuously batched) decode batch.")
        tokensPerSecond = r.makeGauge(name: "zerotrain_serve_tokens_per_second",
                                      help: "Tokens generated per second by the last engine step (all sequences of the batch).")
        var factory = PrometheusMetricsFactory(registry: r)
        let latencyBuckets: [Duration] = [.milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
                                          .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5),
                                          .seconds(10), .seconds(30), .seconds(60)]
        factory.durationHistogramBuckets["zerotrain_serve_request_duration_seconds"] = latencyBuckets
        factory.durationHistogramBuckets["zerotrain_serve_time_to_first_token_seconds"] = latencyBuckets
        requestDuration = Dictionary(uniqueKeysWithValues: Self.endpoints.map {
            ($0, Timer(label: "zerotrain_serve_request_duration_seconds", dimensions: [("endpoint", $0)], factory: factory))
        })
        timeToFirstToken = Timer(label: "zerotrain_serve_time_to_first_token_seconds", factory: factory)
    }

    /// A finished request: its endpoint, status code and seconds from arrival to its last byte.
    public func request(endpoint: String, code: Int, seconds: Double) {
        registry.makeCounter(name: "zerotrain_serve_requests_total", labels: [("endpoint", endpoint), ("code", String(code))],
                             help: "Requests answered, by endpoint and HTTP status.").increment()
        requestDuration[endpoint]?.recordNanoseconds(Int64(max(0, seconds) * 1e9))
    }

    /// Seconds from a request's arrival to its first generated token.
    public func firstToken(seconds: Double) { timeToFirstToken.recordNanoseconds(Int64(max(0, seconds) * 1e9)) }

    /// One engine step: prompt tokens prefilled, tokens generated, its seconds, and the batch after it.
    public func step(promptTokens prompt: Int, generated: Int, seconds: Double, queued: Int, running sequences: Int) {
        promptTokens.increment(by: Int64(prompt))
        generatedTokens.increment(by: Int64(generated))
        if seconds > 0 { tokensPerSecond.set(Double(generated) / seconds) }
        queueDepth.set(Double(queued))
        running.set(Double(sequences))
    }

    /// Queue and batch sizes between steps.
    public func occupancy(queued: Int, running sequences: Int) {
        queueDepth.set(Double(queued))
        running.set(Double(sequences))
    }

    /// The exposition, `\n`-terminated.
    public func exposition() -> [UInt8] { registry.emitToBuffer() }
}
