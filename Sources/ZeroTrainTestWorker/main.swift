import Cluster
import CommZMQ
import Foundation
import ZeroTrainTestKit

// `zerotrain worker` with a fault in its highest rank: it perturbs one of its parameters after the
// step given by --inject-divergence-at (the divergence guard's test), or stalls for an hour inside
// the step given by --stall-at (the flight recorder's test), or makes its gradients overflow in the
// step given by --inject-overflow-at (fp16 loss scaling's test); steps are 0-based.
//   ZeroTrainTestWorker --coordinator ENDPOINT [--devices K] (--inject-divergence-at STEP | --stall-at STEP | --inject-overflow-at STEP)
var arguments = ArraySlice(CommandLine.arguments.dropFirst())
var coordinator: String?, devices = 1, injectAt: Int?, stallAt: Int?, overflowAt: Int?
while let flag = arguments.popFirst() {
    switch flag {
    case "--coordinator": coordinator = arguments.popFirst()
    case "--devices": devices = arguments.popFirst().flatMap(Int.init) ?? 1
    case "--inject-divergence-at": injectAt = arguments.popFirst().flatMap(Int.init)
    case "--stall-at": stallAt = arguments.popFirst().flatMap(Int.init)
    case "--inject-overflow-at": overflowAt = arguments.popFirst().flatMap(Int.init)
    default:
        FileHandle.standardError.write(Data("ZeroTrainTestWorker: unknown argument \(flag)\n".utf8))
        exit(2)
    }
}
guard let coordinator, [injectAt, stallAt, overflowAt].compactMap({ $0 }).count == 1 else {
    FileHandle.standardError.write(Data("usage: ZeroTrainTestWorker --coordinator ENDPOINT [--devices K] (--inject-divergence-at STEP | --stall-at STEP | --inject-overflow-at STEP)\n".utf8))
    exit(2)
}
let divergeAt = injectAt, stallStep = stallAt, overflowStep = overflowAt
var options = Worker.Options(coordinator: coordinator)
options.devices = devices
options.afterStep = { trainer in
    guard trainer.rank == trainer.worldSize - 1 else { return }
    if trainer.step - 1 == divergeAt { FaultInjection.perturbParameter(of: trainer) }
    // Installed after the first step, on the device's own thread.
    if let stallStep, trainer.step == 1 { FaultInjection.stall(trainer, atStep: stallStep, seconds: 3600) }
    if let overflowStep, trainer.step == 1 { FaultInjection.overflow(trainer, atStep: overflowStep) }
}
do {
    exit(try Worker(options: options, network: try ZMQNetwork()).run())
} catch {
    FileHandle.standardError.write(Data("ZeroTrainTestWorker: \(error)\n".utf8))
    exit(1)
}
