import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif

@main
enum Entry {
    static func main() async {
        BLASEnvironment.prepare()
        await ZeroTrain.main()
    }
}

struct ZeroTrain: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "zerotrain",
        abstract: "Train DeepSeek-family transformer language models on CPUs.",
        subcommands: [Train.self, Local.self, Launch.self, CoordinatorCommand.self, WorkerCommand.self, Generate.self, Eval.self, Grads.self, Export.self, Quantize.self, Plan.self, Sweep.self,
                      CheckpointCommand.self, Trace.self, DataCommand.self, Bench.self, Systemd.self, Keygen.self, ServeCommand.self])
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure performance (results go into docs/benchmarks.md).",
        subcommands: [BenchTrain.self, BenchComm.self, BenchScaling.self, BenchCheckpoint.self, BenchResilience.self, BenchData.self, BenchQuantize.self, BenchServe.self])
}

/// OpenBLAS reads its settings once, when the library loads — before `main`. Its idle worker
/// threads spin (sched_yield) for about 2^28 cycles after each call by default, which steals a
/// core from our own compute threads between GEMMs. So the process re-executes itself once with
/// OPENBLAS_THREAD_TIMEOUT=4 (workers sleep almost at once) unless the user set it.
enum BLASEnvironment {
    static func prepare() {
        guard getenv("OPENBLAS_THREAD_TIMEOUT") == nil, getenv("ZEROTRAIN_BLAS_PREPARED") == nil else { return }
        setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1)
        setenv("ZEROTRAIN_BLAS_PREPARED", "1", 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // exec failed (no /proc): carry on with the library's defaults.
    }
}
