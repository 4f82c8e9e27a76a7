import Common
import Foundation
import Training

extension TrainConfig {
    /// FNV-1a 64 of the canonical JSON of what defines the computation — model, data and the
    /// optimisation settings — leaving out where files go, logging, threads, the cluster, security and telemetry sections,
    /// which a coordinator and its workers may legitimately set differently.
    public var fingerprint: String {
        var c = self
        c.training.checkpointDir = nil
        c.training.metricsFile = nil
        c.training.logInterval = 1
        c.training.threads = 1
        c.training.checkpointInterval = 0
        c.cluster = ClusterConfig()
        c.security = nil
        c.telemetry = nil
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        var h = FNV1a()
        h.add((try? e.encode(c)) ?? Data())
        return String(h.value, radix: 16)
    }
}
