// swift-tools-version:6.0
import PackageDescription

// The folder layout is the architecture: see ../shared/DESIGN.md and docs/architecture.md.
let package = Package(
    name: "ZeroTrain",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "zerotrain", targets: ["zerotrain"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        // Monitoring: Prometheus text exposition through the swift-metrics API, and the coordinator's
        // HTTP endpoint (FlyingFox: no dependencies, seconds to build, where Hummingbird's NIO stack takes minutes).
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swhitty/FlyingFox", from: "0.27.1"),
    ],
    targets: [
        // C libraries: each is imported by exactly one Swift target.
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZeroMQ", pkgConfig: "libzmq", providers: [.apt(["libzmq3-dev"])]),
        .systemLibrary(name: "CNUMA", pkgConfig: "numa", providers: [.apt(["libnuma-dev"])]),
        // oneDNN (its C API) and the OpenMP runtime it is built on; Debian ships no pkg-config file.
        .systemLibrary(name: "CDNNL", providers: [.apt(["libdnnl-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),

        // Shared by every module: the error protocol, config sections (defaults and coding in one place), a lock with waiting.
        .target(name: "Common", dependencies: ["CCRC32C"]),
        .target(name: "Tensor", dependencies: ["COpenBLAS", "CDNNL", "CBF16", "CKernels"]),
        // fp32 -> bf16 with AVX512_BF16 where the CPU has it (Swift cannot emit the instruction itself).
        .target(name: "CBF16"),
        // AVX-512 kernels chosen at run time, equal bit for bit to their portable C (Swift compiles SIMD for the SSE2 baseline): expf as glibc computes it, AdamW, SwiGLU.
        .target(name: "CKernels"),
        .target(name: "Model", dependencies: ["Common", "Tensor"]),
        .target(name: "Optim", dependencies: ["Common", "Tensor"]),
        // Data alone imports CZlib and CZstd (compressed inputs of the ingest stage).
        .target(name: "Data", dependencies: ["Common", "Tensor", "Checkpoint", "CZlib", "CZstd"]),
        .target(name: "Checkpoint", dependencies: ["Common", "Tensor", "Model"]),
        // SSE4.2 crc32 for the wire checksum (Swift cannot emit the instruction itself).
        .target(name: "CCRC32C"),
        .target(name: "Comm", dependencies: ["Common"]),
        .target(name: "CommZMQ", dependencies: ["Common", "Comm", "CZeroMQ"]),
        // Harnesses, not run by a user's job: the collective benchmark and the rank worker process
        // (protocol, launcher, command loop) of `zerotrain bench comm`, extended by the test kit.
        .target(name: "Bench", dependencies: ["Common", "Comm", "CommZMQ"]),
        .target(name: "Zero", dependencies: ["Common", "Tensor", "Comm", "CNUMA", "Model", "Optim"]),
        // Quality metrics: held-out loss, perplexity, accuracy; SQuAD exact match and F1; sacreBLEU-compatible BLEU.
        .target(name: "Evaluation", dependencies: ["Common"]),
        .target(name: "Training", dependencies: [
            "Common", "Tensor", "Model", "Optim", "Data", "Checkpoint", "Zero", "Telemetry", "Evaluation",
            .product(name: "Yams", package: "Yams"),
        ]),
        .target(name: "Telemetry", dependencies: [
            "Common",
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        .target(name: "Cluster", dependencies: ["Common", "Training", "Telemetry", "Zero", "Comm", "Model", "Data", "Checkpoint", "Tensor",
                                                "Evaluation", .product(name: "FlyingFox", package: "FlyingFox")]),
        // Inference: the KV-cached engine, sampling, the HTTP server (`zerotrain generate`, `zerotrain serve`).
        .target(name: "Serve", dependencies: ["Common", "Tensor", "Model", "Checkpoint", "Data", "Telemetry",
                                              .product(name: "FlyingFox", package: "FlyingFox")]),
        .executableTarget(name: "zerotrain", dependencies: [
            "Common", "Tensor", "Model", "Optim", "Data", "Checkpoint", "Training", "Telemetry", "Comm", "CommZMQ", "Zero", "Cluster", "Bench", "Evaluation",
            "Serve",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        .testTarget(name: "TensorTests", dependencies: ["Tensor"]),
        .testTarget(name: "ModelTests", dependencies: ["Model", "Tensor", "Checkpoint", "ZeroTrainTestKit"]),
        .testTarget(name: "OptimTests", dependencies: ["Optim", "Tensor"]),
        .testTarget(name: "CheckpointTests", dependencies: ["Checkpoint", "Common", "Model", "Tensor"]),
        .testTarget(name: "DataTests", dependencies: ["Data", "Tensor", "Checkpoint"]),
        .testTarget(name: "TrainingTests", dependencies: ["Common", "Training", "Model", "Optim", "Data", "Checkpoint", "Tensor", "Zero", "ZeroTrainTestKit", "Evaluation"]),
        // The rank test processes spawn the ZeroTrainTestRank binary next to the test bundle.
        .testTarget(name: "CommTests", dependencies: ["Common", "Comm", "CommZMQ", "Bench", "ZeroTrainTestKit", "ZeroTrainTestRank"]),
        // Test helpers: the built zerotrain binary as real processes, the in-memory transport, the
        // reference collectives and the rank test process (ZeroTrainTestRank, its executable).
        .target(name: "ZeroTrainTestKit", dependencies: ["Common", "Comm", "CommZMQ", "Bench", "Training", "Zero", "Tensor"],
                path: "Sources/ZeroTrainTestKit"),
        .executableTarget(name: "ZeroTrainTestRank", dependencies: ["ZeroTrainTestKit", "Bench"]),
        // A worker with fault injection (the divergence guard's test).
        .executableTarget(name: "ZeroTrainTestWorker", dependencies: ["ZeroTrainTestKit", "Cluster", "CommZMQ"]),
        .testTarget(name: "CLITests", dependencies: ["ZeroTrainTestKit", "Checkpoint", "Training", "Model", "Telemetry", "Common", "Data", "Evaluation",
                                                     "Serve", "Tensor"]),
        .testTarget(name: "ClusterTests", dependencies: ["Cluster", "Common", "Tensor", "Training", "Model", "Zero", "Checkpoint", "ZeroTrainTestKit",
                                                         "ZeroTrainTestWorker", "CommZMQ"]),
        .testTarget(name: "TelemetryTests", dependencies: ["Telemetry", "Common"]),
        .testTarget(name: "EvaluationTests", dependencies: ["Evaluation", "ZeroTrainTestKit"]),
        .testTarget(name: "ServeTests", dependencies: ["Serve", "Model", "Tensor", "Checkpoint", "Data", "ZeroTrainTestKit"]),
        .testTarget(name: "ZeroTests", dependencies: ["Zero", "Model", "Training", "Comm", "Tensor", "ZeroTrainTestKit"]),
    ]
)
