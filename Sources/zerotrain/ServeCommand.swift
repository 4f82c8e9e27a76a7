import ArgumentParser
import Cluster
import Common
import Foundation
import Serve
import Synchronization
import Telemetry
import Tensor

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve a model over HTTP: /predict, OpenAI-compatible /v1/completions and /v1/chat/completions, /health, /metrics.",
        discussion: """
            --model is a checkpoint directory (its latest step), a step folder, or a Hugging Face folder. Concurrent \
            requests are batched continuously (the KV-cached engine runs one step for the whole batch). SIGTERM or \
            SIGINT stops accepting requests (503), finishes the ones accepted, and exits 0. See docs/serving.md.
            """)

    @Option(name: .long, help: "Checkpoint directory, step folder, or Hugging Face model folder.")
    var model: String

    @Option(name: .long, help: "Address to listen on: ADDR:PORT (IPv6 as [::1]:8080; port 0 picks a free port).")
    var listen: String = "127.0.0.1:8080"

    @Option(name: .long, help: "Model name in responses and /v1/models (default: the folder's name).")
    var modelName: String?

    @Option(name: .long, help: "Largest max_tokens a request may ask for (the default of /predict and chat).")
    var maxTokens: Int = ServeLimits().maxTokens

    @Option(name: .long, help: "Largest request body in bytes (413 above).")
    var maxBodyBytes: Int = ServeLimits().maxBodyBytes

    @Option(name: .long, help: "Seconds a request may take from arrival to its last token (504 after).")
    var requestTimeout: Double = ServeLimits().requestTimeout

    @Option(name: .long, help: "Requests that may wait for a place in the batch (429 above).")
    var maxQueue: Int = ServeLimits().maxQueue

    @Option(name: .long, help: "Sequences in the running decode batch (1 = one request at a time).")
    var maxBatch: Int = ServeLimits().maxBatch

    @Option(name: .long, help: "Compute threads.")
    var threads: Int = 2

    func run() async throws {
        try await runReportingErrors {
            var limits = ServeLimits()
            limits.maxTokens = maxTokens
            limits.maxBodyBytes = maxBodyBytes
            limits.requestTimeout = requestTimeout
            limits.maxQueue = maxQueue
            limits.maxBatch = maxBatch
            if let problem = limits.problem { throw ValidationError(problem) }
            guard threads >= 1 else { throw ValidationError("--threads must be ≥ 1, got \(threads)") }
            let address: HTTPAddress
            do throws(HTTPAddress.Problem) { address = try HTTPAddress(parsing: listen) } catch { throw ValidationError("--listen \(listen): \(error.reason)") }
            let url = URL(fileURLWithPath: model).standardizedFileURL
            let name = modelName ?? url.lastPathComponent
            let daemon = ServeDaemon()
            let threads = self.threads, fixedLimits = limits
            let code = try await runAsService("serve", body: {
                try daemon.run(model: url, name: name, address: address, limits: fixedLimits, threads: threads)
            }, stop: { daemon.requestStop() })
            if code != 0 { throw ExitCode(code) }
        }
    }
}

/// The serve daemon's thread: loads the model (so that its thread pool belongs to this thread,
/// the one that runs the engine), starts the HTTP server, runs the generation loop until a stop
/// has drained it, then closes the server.
final class ServeDaemon: Sendable {
    private let loop = Mutex<GenerationLoop?>(nil)
    private let stopRequested = Atomic<Bool>(false)
    /// No progress lines (the bench runs daemons in-process).
    private let quiet: Bool

    init(quiet: Bool = false) { self.quiet = quiet }

    func requestStop() {
        stopRequested.store(true, ordering: .relaxed)
        loop.withLock { loop in
            guard let loop else { return }
            let (queued, running) = loop.occupancy
            if !quiet { Console.out("serve: stopping: no new requests; finishing \(queued + running) request(s)") }
            loop.shutdown()
        }
    }

    /// `onListening` is told the bound address once the server accepts requests.
    func run(model url: URL, name: String, address: InferenceServer.ListenAddress, limits: ServeLimits, threads: Int,
             onListening: (InferenceServer.ListenAddress) -> Void = { _ in }) throws -> Int32 {
        GEMM.setThreads(threads)
        let served = try ServedModel.load(url, pool: ThreadPool(threads: threads))
        let metrics = ServeMetrics(version: ControlMessage.build, model: name)
        let generation = GenerationLoop(engine: InferenceEngine(model: served.transformer), tokenizer: served.tokenizer,
                                        maxBatch: limits.maxBatch, maxQueue: limits.maxQueue, metrics: metrics)
        let server = try InferenceServer(address: address, modelName: name, loop: generation, tokenizer: served.tokenizer,
                                         maxSeqLen: served.transformer.config.maxSeqLen, limits: limits, metrics: metrics)
        let bound = try server.start()
        loop.withLock { $0 = generation }
        if stopRequested.load(ordering: .relaxed) { generation.shutdown() }
        let c = served.transformer.config
        if !quiet { Console.out("serve: \(name) (\(c.numLayers) layers, hidden \(c.hiddenSize), \(served.transformer.table.count) parameters, "
                    + (served.transformer.precision == .int8 ? "int8 weights, " : "") + "tokenizer \(served.tokenizer.name)) on http://\(bound) — max batch \(limits.maxBatch), queue \(limits.maxQueue)") }
        onListening(bound)
        let notifier = SystemdNotifier()
        notifier.notify("READY=1", "STATUS=serving \(name) on \(bound)")
        generation.run()
        notifier.notify("STOPPING=1", "STATUS=stopping: every accepted request finished")
        server.stop()
        if !quiet { Console.out("serve: stopped") }
        return 0
    }
}
