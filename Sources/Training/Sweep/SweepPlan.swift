import Common
import Foundation

/// The trials of a sweep as configs: the base config tree with each trial's values set at
/// their dotted paths, and each trial's checkpoints and metrics in its own directory under the
/// sweep's output. Every config is decoded and validated up front, so an unknown path or a bad
/// value fails before any trial runs.
public struct SweepPlan: Sendable {
    public struct Trial: Sendable {
        public let assignment: TrialAssignment
        public let config: TrainConfig
        /// DIR/trials/<id>: config.json, the run directory (run/), local.log.
        public let directory: URL
        public var runDirectory: URL { directory.appendingPathComponent("run") }
        public var configFile: URL { directory.appendingPathComponent("config.json") }
    }

    public let space: SearchSpace
    public let trials: [Trial]
    /// FNV-1a of the base config text and the space text.
    public let fingerprint: String

    public init(baseText: String, baseSource: String, spaceText: String, spaceSource: String, output: URL) throws {
        space = try SearchSpace.parse(text: spaceText, source: spaceSource)
        let base = try ConfigValue.parse(yaml: baseText, source: baseSource)
        if case .map(let pairs) = base, pairs.contains(where: { $0.key == "model_type" }) {
            throw ConfigError("\(baseSource): a sweep needs a YAML training config (model, training, data), not a Hugging Face config.json")
        }
        _ = try TrainConfig.parse(text: baseText, source: baseSource)
        var trials: [Trial] = []
        for a in space.assignments() {
            let dir = output.appendingPathComponent("trials").appendingPathComponent(a.id)
            var tree = base
            for (path, value) in a.values { tree = try tree.setting(value, at: path) }
            tree = try tree.setting(.string(dir.appendingPathComponent("checkpoints").path), at: "training.checkpoint_dir")
            tree = try tree.setting(.string(dir.appendingPathComponent("run/metrics.jsonl").path), at: "training.metrics_file")
            let config: TrainConfig
            do {
                config = try ConfigDecoder.decode(TrainConfig.self, from: tree)
                try config.validate()
            } catch let e as ConfigError {
                if e.message.hasSuffix(": unknown key") {
                    let bad = String(e.message.dropLast(": unknown key".count))
                    if let p = a.values.map(\.path).first(where: { $0 == bad || $0.hasPrefix(bad + ".") || bad.hasPrefix($0 + ".") }) {
                        throw ConfigError("\(spaceSource): parameters.\(p): unknown config path")
                    }
                }
                let values = a.values.map { "\($0.path)=\($0.value.scalarText)" }.joined(separator: ", ")
                throw ConfigError("\(spaceSource): \(a.id) (\(values)): \(e.message)")
            }
            trials.append(Trial(assignment: a, config: config, directory: dir))
        }
        self.trials = trials
        var hash = FNV1a()
        hash.add(baseText.utf8)
        hash.add(0)
        hash.add(spaceText.utf8)
        fingerprint = String(format: "%016llx", hash.value)
    }

    /// A fresh state: every trial pending.
    public var initialState: SweepState {
        SweepState(fingerprint: fingerprint, parameterPaths: space.parameters.map(\.path),
                   trials: trials.map { t in
                       SweepState.Trial(id: t.assignment.id, parameters: Dictionary(uniqueKeysWithValues: t.assignment.values.map { ($0.path, $0.value.scalarText) }))
                   })
    }
}
