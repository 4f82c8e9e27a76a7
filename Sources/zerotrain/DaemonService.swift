import Common
import Foundation
import Synchronization
import Logging
import ServiceLifecycle
import UnixSignals
#if canImport(Glibc)
import Glibc
#endif

/// A blocking loop (a daemon's event loop, a training run) as a swift-service-lifecycle
/// `Service`: it runs on a thread of its own — blocking calls (zmq_poll, BLAS, file I/O) must stay
/// off Swift's cooperative pool — and the service group turns SIGTERM/SIGINT into a graceful
/// shutdown, which calls `stop` (the loop's own thread-safe stop request, which wakes it).
struct BlockingService: Service {
    let name: String
    /// The loop; returns the process's exit code.
    let body: @Sendable () throws -> Int32
    let stop: @Sendable () -> Void
    let exitCode = Monitor<Int32?>(nil)

    func run() async throws {
        let body = self.body, name = self.name
        let code = try await withGracefulShutdownHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Int32, any Error>) in
                let thread = Thread {
                    do { continuation.resume(returning: try body()) } catch { continuation.resume(throwing: error) }
                }
                thread.name = "zerotrain-\(name)"
                thread.stackSize = 16 << 20
                thread.start()
            }
        } onGracefulShutdown: {
            stop()
        }
        exitCode.withLock { $0 = code }
    }
}

/// Runs `body` under a service group that shuts it down gracefully on `signals`; returns its exit
/// code or rethrows its error. A parent may have started us with the stop signals blocked
/// (Foundation's Process does), which would leave them pending forever: unblock them first.
func runAsService(_ name: String, signals: [UnixSignal] = [.sigterm, .sigint],
                  body: @escaping @Sendable () throws -> Int32, stop: @escaping @Sendable () -> Void) async throws -> Int32 {
    var set = sigset_t()
    sigemptyset(&set)
    sigaddset(&set, SIGINT)
    sigaddset(&set, SIGTERM)
    pthread_sigmask(SIG_UNBLOCK, &set, nil)
    var logger = Logger(label: "zerotrain.\(name)")
    logger.logLevel = .warning
    let service = BlockingService(name: name, body: body, stop: stop)
    let group = ServiceGroup(configuration: ServiceGroupConfiguration(
        services: [.init(service: service, successTerminationBehavior: .gracefullyShutdownGroup,
                         failureTerminationBehavior: .gracefullyShutdownGroup)],
        gracefulShutdownSignals: signals, cancellationSignals: [], logger: logger))
    try await group.run()
    return service.exitCode.withLock { $0 } ?? 1
}

/// A stop request that a loop checks between units of work (a training run, between updates).
final class StopFlag: Sendable {
    private let raised = Atomic<Bool>(false)
    func raise() { raised.store(true, ordering: .relaxed) }
    var isRaised: Bool { raised.load(ordering: .relaxed) }
}
