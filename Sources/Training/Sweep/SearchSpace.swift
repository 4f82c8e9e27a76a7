import Common
import Foundation

/// A sweep's space file: how trials are drawn (`sampler`, `trials`, `seed`), over which config
/// fields (`parameters`: dotted path → list of values, or `{min, max, log}`), and the early
/// stopping rule. Parsed strictly: an unknown key or a malformed range is an error naming it.
public struct SearchSpace: Sendable, Equatable {
    public enum Sampler: String, Sendable, CaseIterable { case grid, random, lhs }

    /// One dimension: a list to enumerate or choose from, or a numeric range.
    public enum Domain: Sendable, Equatable {
        case values([ConfigValue])
        /// Uniform (log-uniform when `log`) on [min, max]; rounded to an integer when both bounds are integers.
        case range(min: Double, max: Double, log: Bool, integer: Bool)
    }

    public struct Parameter: Sendable, Equatable {
        public let path: String
        public let domain: Domain
    }

    public var sampler: Sampler
    /// Trials to draw (random, lhs); the grid has as many as its product.
    public var trials: Int
    public var seed: UInt64
    public var parameters: [Parameter]
    public var earlyStopping: EarlyStopping

    public static func load(path: String) throws -> SearchSpace {
        guard let bytes = FileManager.default.contents(atPath: path), let text = String(data: bytes, encoding: .utf8) else {
            throw ConfigError("\(path): cannot read the search space file")
        }
        return try parse(text: text, source: path)
    }

    public static func parse(text: String, source: String = "space") throws -> SearchSpace {
        let tree = try ConfigValue.parse(yaml: text, source: source)
        guard case .map(let top) = tree else { throw ConfigError("\(source): expected a mapping with sampler and parameters") }
        func fail(_ message: String) -> ConfigError { ConfigError("\(source): \(message)") }
        var sampler = Sampler.grid, trials: Int?, seed: UInt64 = 0, parameters: [Parameter] = [], stopping = EarlyStopping.none
        for (key, value) in top {
            switch (key, value) {
            case ("sampler", .string(let s)):
                guard let v = Sampler(rawValue: s) else { throw fail("sampler: unknown sampler \"\(s)\" (grid, random or lhs)") }
                sampler = v
            case ("trials", .int(let n)):
                guard n >= 1 else { throw fail("trials: must be ≥ 1, got \(n)") }
                trials = n
            case ("seed", .int(let n)):
                guard n >= 0 else { throw fail("seed: must be ≥ 0, got \(n)") }
                seed = UInt64(n)
            case ("parameters", .map(let pairs)):
                parameters = try pairs.map { try Parameter(path: $0.key, domain: domain($0.value, at: "parameters.\($0.key)", fail: fail)) }
            case ("parameters", .null):
                parameters = []
            case ("early_stopping", let v):
                stopping = try EarlyStopping.parse(v, fail: fail)
            case ("sampler", _), ("trials", _), ("seed", _), ("parameters", _):
                throw fail("\(key): expected \(key == "parameters" ? "a mapping of config paths" : key == "sampler" ? "grid, random or lhs" : "a whole number"), got \(value.shortDescription)")
            default:
                throw fail("\(key): unknown key")
            }
        }
        guard !parameters.isEmpty else { throw fail("parameters: the search space is empty") }
        if sampler == .grid {
            if let p = parameters.first(where: { if case .range = $0.domain { true } else { false } }) {
                throw fail("parameters.\(p.path): the grid sampler needs a list of values, not a range")
            }
            if trials != nil { throw fail("trials: the grid sampler runs every combination; leave trials out") }
        } else if trials == nil {
            throw fail("trials: the \(sampler.rawValue) sampler needs the number of trials")
        }
        var space = SearchSpace(sampler: sampler, trials: trials ?? 0, seed: seed, parameters: parameters, earlyStopping: stopping)
        if sampler == .grid { space.trials = space.gridSize }
        return space
    }

    private static func domain(_ value: ConfigValue, at path: String, fail: (String) -> ConfigError) throws -> Domain {
        switch value {
        case .array(let items):
            guard !items.isEmpty else { throw fail("\(path): the list of values is empty") }
            return .values(items)
        case .map(let pairs):
            var lo: ConfigValue?, hi: ConfigValue?, log = false
            for (k, v) in pairs {
                switch (k, v) {
                case ("min", _): lo = v
                case ("max", _): hi = v
                case ("log", .bool(let b)): log = b
                case ("log", _): throw fail("\(path).log: expected true or false, got \(v.shortDescription)")
                default: throw fail("\(path).\(k): unknown key (min, max, log)")
                }
            }
            func number(_ v: ConfigValue?, _ name: String) throws -> (Double, Bool) {
                switch v {
                case .int(let i)?: return (Double(i), true)
                case .double(let d)?: return (d, false)
                case nil: throw fail("\(path).\(name): is required")
                case let v?: throw fail("\(path).\(name): expected a number, got \(v.shortDescription)")
                }
            }
            let (a, ai) = try number(lo, "min"), (b, bi) = try number(hi, "max")
            guard a <= b else { throw fail("\(path): min (\(a)) must be ≤ max (\(b))") }
            if log, a <= 0 { throw fail("\(path).min: a log range needs min > 0, got \(a)") }
            return .range(min: a, max: b, log: log, integer: ai && bi)
        default:
            throw fail("\(path): expected a list of values or {min, max, log}, got \(value.shortDescription)")
        }
    }

    /// Combinations of the grid (the product of the list lengths).
    public var gridSize: Int {
        parameters.reduce(1) { n, p in if case .values(let v) = p.domain { n * v.count } else { n } }
    }
}

/// One trial's values, in the order of the space's parameters.
public struct TrialAssignment: Sendable, Equatable {
    public let id: String
    public let values: [(path: String, value: ConfigValue)]

    public static func == (a: TrialAssignment, b: TrialAssignment) -> Bool {
        a.id == b.id && a.values.map(\.path) == b.values.map(\.path) && a.values.map(\.value) == b.values.map(\.value)
    }
}

extension SearchSpace {
    /// Every trial of the sweep, deterministic in the seed: the grid in row-major order (last
    /// parameter fastest), random draws, or a Latin hypercube (each parameter's [0, 1) cut into
    /// `trials` strata, every stratum used once, in an order shuffled per parameter).
    public func assignments() -> [TrialAssignment] {
        var rng = SplitMix64(seed: seed)
        let n = trials
        let unit: [[Double]]   // unit[trial][parameter] in [0, 1), for random and lhs
        switch sampler {
        case .grid:
            return (0..<n).map { t in
                var rest = t
                var values: [(path: String, value: ConfigValue)] = []
                for p in parameters.reversed() {
                    guard case .values(let v) = p.domain else { continue }
                    values.append((path: p.path, value: v[rest % v.count]))
                    rest /= v.count
                }
                return TrialAssignment(id: Self.trialID(t), values: Array(values.reversed()))
            }
        case .random:
            unit = (0..<n).map { _ in parameters.map { _ in rng.nextUnit() } }
        case .lhs:
            var columns: [[Double]] = []
            for _ in parameters {
                var strata = Array(0..<n)
                for i in stride(from: n - 1, to: 0, by: -1) { strata.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
                columns.append(strata.map { (Double($0) + rng.nextUnit()) / Double(n) })
            }
            unit = (0..<n).map { t in columns.map { $0[t] } }
        }
        return unit.enumerated().map { t, u in
            TrialAssignment(id: Self.trialID(t), values: zip(parameters, u).map { (path: $0.path, value: Self.value($0.domain, at: $1)) })
        }
    }

    static func trialID(_ index: Int) -> String { String(format: "trial-%03d", index) }

    /// The domain's value at the quantile `u` in [0, 1).
    public static func value(_ domain: Domain, at u: Double) -> ConfigValue {
        switch domain {
        case .values(let v):
            return v[min(v.count - 1, Int(u * Double(v.count)))]
        case let .range(lo, hi, log, integer):
            if integer {
                // Integers: the quantile picks one of the hi - lo + 1 values (log-spaced when log).
                let x = log ? exp(Foundation.log(lo) + u * (Foundation.log(hi + 1) - Foundation.log(lo))) : lo + u * (hi - lo + 1)
                return .int(min(Int(hi), Int(x.rounded(.down))))
            }
            return .double(log ? exp(Foundation.log(lo) + u * (Foundation.log(hi) - Foundation.log(lo))) : lo + u * (hi - lo))
        }
    }
}

/// The sweep's random numbers: SplitMix64, fixed by the seed on every platform.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 bits.
    mutating func nextUnit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
