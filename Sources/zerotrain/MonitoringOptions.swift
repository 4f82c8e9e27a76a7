import ArgumentParser
import Cluster
import Common
import Foundation

/// The coordinator's monitoring flags (`zerotrain coordinator`, and `zerotrain local`, which
/// passes them on). docs/operations.md describes what each serves.
struct MonitoringOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Serve /metrics (Prometheus), /status (JSON) and / (live page) on ADDR:PORT; a bare PORT is loopback, port 0 any free port (written to run-dir/coordinator.http); default $ZEROTRAIN_HTTP, else no server.",
                                            valueName: "addr:port"))
    var http: String?

    @Option(name: .long, help: ArgumentHelp("Seconds to keep serving HTTP after the job ended.", valueName: "seconds"))
    var httpLinger: Double = 0

    @Option(name: .long, help: ArgumentHelp("Peak GFLOP/s of one rank (e.g. from `zerotrain bench train`), for the MFU metric; $ZEROTRAIN_PEAK_GFLOPS otherwise. Without it MFU is not reported.",
                                            valueName: "gflops"))
    var peakGflops: Double?

    func resolved() throws -> Coordinator.Monitoring {
        var m = Coordinator.Monitoring()
        if let http = http ?? ProcessInfo.processInfo.environment["ZEROTRAIN_HTTP"].flatMap({ $0.isEmpty ? nil : $0 }) {
            do throws(HTTPAddress.Problem) { m.http = try HTTPAddress(parsing: http) } catch { throw ValidationError("--http \(http): \(error.reason)") }
        }
        guard httpLinger >= 0, httpLinger.isFinite else { throw ValidationError("--http-linger must be ≥ 0 seconds, got \(httpLinger)") }
        m.httpLingerSeconds = httpLinger
        let peak = peakGflops ?? ProcessInfo.processInfo.environment["ZEROTRAIN_PEAK_GFLOPS"].flatMap(Double.init)
        if let peak, !(peak > 0 && peak.isFinite) { throw ValidationError("--peak-gflops must be > 0, got \(peak)") }
        m.peakGflopsPerRank = peak
        return m
    }

    /// The same flags, for a coordinator this process starts.
    var arguments: [String] {
        var a: [String] = []
        if let http { a += ["--http", http] }
        if httpLinger > 0 { a += ["--http-linger", String(httpLinger)] }
        if let peakGflops { a += ["--peak-gflops", String(peakGflops)] }
        return a
    }
}
