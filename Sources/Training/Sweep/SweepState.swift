import Common
import Foundation

/// What a sweep has done so far (`DIR/sweep.json`), rewritten after every trial event, so a
/// sweep started again with the same command skips the trials that ended.
public struct SweepState: Codable, Sendable, Equatable {
    public enum Status: String, Codable, Sendable { case pending, running, finished, stopped, failed
        /// The trial ended (it is not run again when the sweep restarts).
        public var ended: Bool { self == .finished || self == .stopped || self == .failed }
    }

    public struct Point: Codable, Sendable, Equatable {
        public var step: Int
        public var loss: Double
    }

    public struct Trial: Codable, Sendable, Equatable {
        public var id: String
        /// Dotted config path → value, as text (the values' YAML scalars).
        public var parameters: [String: String]
        public var status: Status
        public var steps: Int
        public var finalLoss: Double?
        public var bestLoss: Double?
        public var validationLoss: Double?
        /// Why it stopped or failed.
        public var note: String?
        public var curve: [Point]
        /// How many times the trial was started or resumed.
        public var starts: Int
        /// Successive halving: the rung (index) the trial runs to or was paused at.
        public var rung: Int?

        enum CodingKeys: String, CodingKey {
            case id, parameters, status, steps, finalLoss = "final_loss", bestLoss = "best_loss"
            case validationLoss = "validation_loss", note, curve, starts, rung
        }

        public init(id: String, parameters: [String: String]) {
            self.id = id
            self.parameters = parameters
            status = .pending
            steps = 0
            curve = []
            starts = 0
        }

        /// Takes a metrics.jsonl record (step, loss, validation_loss when evaluated).
        public mutating func record(step: Int, loss: Double, validationLoss: Double?) {
            curve.append(Point(step: step, loss: loss))
            steps = step
            finalLoss = loss
            bestLoss = min(bestLoss ?? loss, loss)
            if let validationLoss { self.validationLoss = validationLoss }
        }
    }

    /// Identifies the base config and the space: a restart with other files is refused.
    public var fingerprint: String
    /// The parameter paths in the space's order (the table's columns).
    public var parameterPaths: [String]
    public var trials: [Trial]

    enum CodingKeys: String, CodingKey { case fingerprint, parameterPaths = "parameter_paths", trials }

    public init(fingerprint: String, parameterPaths: [String], trials: [Trial]) {
        self.fingerprint = fingerprint
        self.parameterPaths = parameterPaths
        self.trials = trials
    }

    /// The state of `directory`, or a fresh one. A trial that was running when the sweep died
    /// goes back to pending (its partial curve is dropped: it runs again from the start) unless
    /// successive halving had promoted it past its first rung: then it stays `running`, to be
    /// resumed from its newest checkpoint.
    public static func resume(in directory: URL, fingerprint: String, fresh: SweepState) throws -> SweepState {
        let file = directory.appendingPathComponent("sweep.json")
        guard let data = FileManager.default.contents(atPath: file.path) else { return fresh }
        var state: SweepState
        do {
            state = try JSONDecoder().decode(SweepState.self, from: data)
        } catch {
            throw ConfigError("\(file.path): unreadable sweep state (\(error)); remove it to start the sweep afresh")
        }
        guard state.fingerprint == fingerprint, state.trials.map(\.id) == fresh.trials.map(\.id) else {
            throw ConfigError("\(directory.path): holds a sweep of another config or space; give another --out or remove it")
        }
        for i in state.trials.indices where !state.trials[i].status.ended && (state.trials[i].rung ?? 0) == 0 {
            let starts = state.trials[i].starts
            state.trials[i] = fresh.trials[i]
            state.trials[i].starts = starts
        }
        return state
    }

    /// Writes sweep.json atomically (a reader never sees half a file).
    public func save(in directory: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(self).write(to: directory.appendingPathComponent("sweep.json"), options: .atomic)
    }

    /// The best trial: lowest validation loss when every finished trial has one, else lowest
    /// best training loss; among finished trials, else among all that reported.
    public var winner: Trial? {
        let finished = trials.filter { $0.status == .finished }
        let pool = finished.isEmpty ? trials.filter { $0.bestLoss != nil } : finished
        let useValidation = !pool.isEmpty && pool.allSatisfy { $0.validationLoss != nil }
        return pool.min { (useValidation ? $0.validationLoss! : $0.bestLoss!) < (useValidation ? $1.validationLoss! : $1.bestLoss!) }
    }
}
