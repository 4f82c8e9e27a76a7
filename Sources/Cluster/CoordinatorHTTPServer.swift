import Common
import FlyingFox
import FlyingSocks
import Foundation
import Synchronization
import Telemetry
#if canImport(Glibc)
import Glibc
#endif

/// The coordinator's HTTP endpoint (`--http ADDR:PORT`, FlyingFox): `GET /metrics` (Prometheus
/// text 0.0.4), `GET /status` (JSON) and `GET /` (the live page). It only reads what the
/// coordinator's loop publishes (`JobMetrics` and a status snapshot), so a slow client never
/// holds the loop up. FlyingFox waits on epoll on a dispatch queue of its own, off Swift's
/// cooperative pool; requests are answered on the pool (they only copy bytes).
public final class CoordinatorHTTPServer: Sendable {
    /// `--http ADDR:PORT` (loopback for a bare port).
    public typealias Endpoint = HTTPAddress

    public let endpoint: Endpoint
    private let server: HTTPServer
    private let task = Mutex<Task<Void, any Error>?>(nil)

    /// Routes the three pages. Nothing is bound until `start`.
    public init(endpoint: Endpoint, metrics: JobMetrics, status: Monitor<JobStatus>) throws {
        self.endpoint = endpoint
        let address: any SocketAddress = endpoint.isIPv6
            ? try sockaddr_in6.inet6(ip6: endpoint.host, port: endpoint.port)
            : try sockaddr_in.inet(ip4: endpoint.host, port: endpoint.port)
        server = HTTPServer(config: .init(address: address, timeout: 15, logger: .disabled))
        let routes: [(String, @Sendable () -> HTTPResponse)] = [
            ("GET /metrics", {
                HTTPResponse(statusCode: .ok, headers: [.contentType: JobMetrics.contentType], body: Data(metrics.exposition()))
            }),
            ("GET /status", {
                HTTPResponse(statusCode: .ok, headers: [.contentType: "application/json"], body: status.withLock { $0 }.json())
            }),
            ("GET /", {
                HTTPResponse(statusCode: .ok, headers: [.contentType: StatusPage.contentType], body: Data(StatusPage.html.utf8))
            }),
        ]
        let server = self.server
        Task { [routes] in
            for (route, answer) in routes { await server.appendRoute(HTTPRoute(route)) { _ in answer() } }
            await server.appendRoute("*") { _ in HTTPResponse(statusCode: .notFound, body: Data("not found: try /, /status or /metrics\n".utf8)) }
        }.waitBlocking()
    }

    /// Binds and starts serving; returns the bound endpoint (the port chosen for port 0). Throws
    /// `badInput` when the address is in use or not this host's. Call from a thread of its own
    /// (the coordinator's loop), not from Swift's cooperative pool: it waits for the bind.
    public func start() throws -> Endpoint {
        // A clear error for an address in use (FlyingFox's own bind error reaches only its task).
        try Self.checkBindable(endpoint)
        let server = self.server
        let run = Task { try await server.run() }
        task.withLock { $0 = run }
        let bound: Result<UInt16, any Error> = Task {
            try await server.waitUntilListening(timeout: 10)
            switch await server.listeningAddress {
            case let .ip4(_, port)?, let .ip6(_, port)?: return port
            default: throw ClusterError(.runtime, "the HTTP server on \(endpoint) did not report its port")
            }
        }.resultBlocking()
        switch bound {
        case let .success(port):
            var e = endpoint
            e.port = port
            return e
        case let .failure(error):
            run.cancel()
            throw ClusterError(.badInput, "--http \(endpoint): cannot listen", cause: error)
        }
    }

    /// Stops listening and closes the connections (waits up to a second for answers in flight).
    public func stop() {
        let server = self.server
        Task { await server.stop(timeout: 1) }.waitBlocking()
        task.withLock { $0?.cancel(); $0 = nil }
    }

    private static func checkBindable(_ e: Endpoint) throws {
        if let problem = e.bindProblem() { throw ClusterError(.badInput, "--http \(e): cannot listen: \(problem)") }
    }
}

extension Task where Failure == any Error {
    /// Blocks this (non-cooperative) thread until the task ends.
    func resultBlocking() -> Result<Success, any Error> {
        let done = Monitor<Result<Success, any Error>?>(nil)
        Task<Void, Never> { let r = await self.result; done.withLock { $0 = r } }
        return done.wait { $0 }
    }
}

extension Task where Failure == Never, Success == Void {
    func waitBlocking() {
        let done = Monitor(false)
        Task<Void, Never> { await self.value; done.withLock { $0 = true } }
        done.wait { $0 ? true : nil }
    }
}
