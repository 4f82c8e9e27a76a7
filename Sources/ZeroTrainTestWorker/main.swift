import Cluster
import CommZMQ
import Foundation
import ZeroTrainTestKit

// `zerotrain worker` for the divergence guard's test: the highest rank perturbs one of its
// parameters after the step given by --inject-divergence-at (0-based).
//   ZeroTrainTestWorker --coordinator ENDPOINT [--devices K] --inject-divergence-at STEP
var arguments = ArraySlice(CommandLine.arguments.dropFirst())
var coordinator: String?, devices = 1, injectAt: Int?
while let flag = arguments.popFirst() {
    switch flag {
    case "--coordinator": coordinator = arguments.popFirst()
    case "--devices": devices = arguments.popFirst().flatMap(Int.init) ?? 1
    case "--inject-divergence-at": injectAt = arguments.popFirst().flatMap(Int.init)
    default:
        FileHandle.standardError.write(Data("ZeroTrainTestWorker: unknown argument \(flag)\n".utf8))
        exit(2)
    }
}
guard let coordinator, let injectAt else {
    FileHandle.standardError.write(Data("usage: ZeroTrainTestWorker --coordinator ENDPOINT [--devices K] --inject-divergence-at STEP\n".utf8))
    exit(2)
}
var options = Worker.Options(coordinator: coordinator)
options.devices = devices
options.afterStep = { trainer in
    if trainer.rank == trainer.worldSize - 1 && trainer.step - 1 == injectAt { FaultInjection.perturbParameter(of: trainer) }
}
do {
    exit(try Worker(options: options, network: try ZMQNetwork()).run())
} catch {
    FileHandle.standardError.write(Data("ZeroTrainTestWorker: \(error)\n".utf8))
    exit(1)
}
