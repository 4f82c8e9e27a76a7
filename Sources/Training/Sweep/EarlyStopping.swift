import Common

/// The sweep's early stopping rule (`early_stopping:` of the space file).
public enum EarlyStopping: Sendable, Equatable {
    case none
    /// Median stopping: at each rung (`grace`, then every `interval` steps), a trial whose best
    /// loss so far is worse than the median of the other trials' losses at that step stops,
    /// once at least `minTrials` others have reached it (MedianStoppingRule).
    case median(grace: Int, interval: Int, minTrials: Int)
    /// Asynchronous successive halving: rungs at `minSteps`·ηᵏ, the top 1/η of each rung go on,
    /// resumed from their checkpoints (SuccessiveHalving).
    case asha(minSteps: Int, eta: Int)

    static func parse(_ value: ConfigValue, fail: (String) -> ConfigError) throws -> EarlyStopping {
        guard case .map(let pairs) = value else { throw fail("early_stopping: expected {rule: median | asha | none, ...}, got \(value.shortDescription)") }
        guard let rule = pairs.first(where: { $0.key == "rule" })?.value else { throw fail("early_stopping.rule: is required (median, asha or none)") }
        guard case .string(let name) = rule, ["median", "asha", "none"].contains(name) else {
            throw fail("early_stopping.rule: unknown rule \(rule.shortDescription) (median, asha or none)")
        }
        let keys: [String: (min: Int, value: Int)] = name == "median" ? ["grace": (0, 0), "interval": (1, 10), "min_trials": (1, 2)]
            : name == "asha" ? ["min_steps": (1, 10), "eta": (2, 3)] : [:]
        var values = keys.mapValues(\.value)
        for (k, v) in pairs where k != "rule" {
            guard let bound = keys[k]?.min else {
                throw fail("early_stopping.\(k): unknown key for rule \(name) (\(keys.keys.sorted().joined(separator: ", ")))")
            }
            guard case .int(let n) = v, n >= bound else { throw fail("early_stopping.\(k): expected a whole number ≥ \(bound), got \(v.shortDescription)") }
            values[k] = n
        }
        switch name {
        case "median": return .median(grace: values["grace"]!, interval: values["interval"]!, minTrials: values["min_trials"]!)
        case "asha": return .asha(minSteps: values["min_steps"]!, eta: values["eta"]!)
        default: return .none
        }
    }
}
