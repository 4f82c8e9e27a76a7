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
    ],
    targets: [
        // C libraries: each is imported by exactly one Swift target.
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZeroMQ", pkgConfig: "libzmq", providers: [.apt(["libzmq3-dev"])]),
        .systemLibrary(name: "CNUMA", pkgConfig: "numa", providers: [.apt(["libnuma-dev"])]),

        // Shared by the config sections of every module: defaults and coding in one place.
        .target(name: "Common"),
        .target(name: "Tensor", dependencies: ["COpenBLAS"]),
        .target(name: "Model", dependencies: ["Tensor", "Common"]),
        .target(name: "Optim", dependencies: ["Tensor", "Common"]),
        .target(name: "Data", dependencies: ["Tensor", "Checkpoint", "Common"]),
        .target(name: "Checkpoint", dependencies: ["Tensor"]),
        // SSE4.2 crc32 for the wire checksum (Swift cannot emit the instruction itself).
        .target(name: "CCRC32C"),
        .target(name: "Comm", dependencies: ["CCRC32C"]),
        .target(name: "CommZMQ", dependencies: ["Comm", "CZeroMQ"]),
        .target(name: "Zero", dependencies: ["Tensor", "Comm", "CNUMA", "Model", "Common"]),
        .target(name: "Training", dependencies: [
            "Tensor", "Model", "Optim", "Data", "Checkpoint", "Zero", "Common",
            .product(name: "Yams", package: "Yams"),
        ]),
        .target(name: "Cluster", dependencies: ["Training", "Zero", "Comm", "CommZMQ", "Model", "Data", "Checkpoint", "Tensor"]),
        .executableTarget(name: "zerotrain", dependencies: [
            "Tensor", "Model", "Optim", "Data", "Checkpoint", "Training", "Comm", "CommZMQ", "Zero", "Cluster",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        .testTarget(name: "TensorTests", dependencies: ["Tensor"]),
        .testTarget(name: "ModelTests", dependencies: ["Model", "Tensor", "Checkpoint", "Training", "ZeroTrainTestKit"]),
        .testTarget(name: "OptimTests", dependencies: ["Optim", "Tensor"]),
        .testTarget(name: "CheckpointTests", dependencies: ["Checkpoint", "Tensor"]),
        .testTarget(name: "DataTests", dependencies: ["Data", "Tensor", "Checkpoint"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Model", "Optim", "Data", "Checkpoint", "Tensor", "Zero", "ZeroTrainTestKit"]),
        .testTarget(name: "CommTests", dependencies: ["Comm", "CommZMQ"]),
        // Test helpers: runs the built zerotrain binary as real processes.
        .target(name: "ZeroTrainTestKit", path: "Sources/ZeroTrainTestKit"),
        .testTarget(name: "CLITests", dependencies: ["ZeroTrainTestKit"]),
        .testTarget(name: "ClusterTests", dependencies: ["Cluster", "Training", "Model", "Zero", "Checkpoint", "ZeroTrainTestKit"]),
        .testTarget(name: "ZeroTests", dependencies: ["Zero", "Model", "Training", "Comm", "Tensor"]),
    ]
)
