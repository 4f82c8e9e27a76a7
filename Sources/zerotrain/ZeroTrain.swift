import ArgumentParser
import Foundation

@main
struct ZeroTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "zerotrain",
        abstract: "Train DeepSeek-family transformer language models on CPUs.",
        subcommands: [Train.self, Generate.self, Grads.self, Bench.self])
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure performance (results go into docs/benchmarks.md).",
        subcommands: [BenchTrain.self])
}
