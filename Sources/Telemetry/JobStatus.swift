import Foundation

/// What `GET /status` answers (JSON, snake_case keys): the job's state, step, workers, last
/// checkpoint, recovery events, health warnings and the recent steps the live page draws.
public struct JobStatus: Codable, Sendable, Equatable {
    public struct Worker: Codable, Sendable, Equatable {
        public var host: String
        public var pid: Int
        public var ranks: [Int]
        public var devices: Int
        /// Seconds since the coordinator last heard from it.
        public var lastHeartbeatSecondsAgo: Double
        /// Unix time of that message.
        public var lastHeartbeat: Double
        /// Device-tier bytes of its ranks now, and their peak (from its last step report).
        public var memoryBytes: Int
        public var memoryPeakBytes: Int

        public init(host: String, pid: Int, ranks: [Int], devices: Int, lastHeartbeatSecondsAgo: Double, lastHeartbeat: Double,
                    memoryBytes: Int, memoryPeakBytes: Int) {
            self.host = host
            self.pid = pid
            self.ranks = ranks
            self.devices = devices
            self.lastHeartbeatSecondsAgo = lastHeartbeatSecondsAgo
            self.lastHeartbeat = lastHeartbeat
            self.memoryBytes = memoryBytes
            self.memoryPeakBytes = memoryPeakBytes
        }

        enum CodingKeys: String, CodingKey {
            case host, pid, ranks, devices, lastHeartbeatSecondsAgo = "last_heartbeat_seconds_ago", lastHeartbeat = "last_heartbeat"
            case memoryBytes = "memory_bytes", memoryPeakBytes = "memory_peak_bytes"
        }
    }

    public struct Checkpoint: Codable, Sendable, Equatable {
        public var step: Int
        public var path: String
        public init(step: Int, path: String) { self.step = step; self.path = path }
    }

    public struct Event: Codable, Sendable, Equatable {
        /// Unix time.
        public var time: Double
        public var message: String
        public init(time: Double, message: String) { self.time = time; self.message = message }
    }

    /// One point of the live charts.
    public struct Point: Codable, Sendable, Equatable {
        public var step: Int
        public var loss: Double?
        public var tokensPerSecond: Double
        /// Device-tier bytes over all ranks.
        public var memoryBytes: Int
        public init(step: Int, loss: Double?, tokensPerSecond: Double, memoryBytes: Int) {
            self.step = step
            self.loss = loss
            self.tokensPerSecond = tokensPerSecond
            self.memoryBytes = memoryBytes
        }
        enum CodingKeys: String, CodingKey { case step, loss, tokensPerSecond = "tokens_per_second", memoryBytes = "memory_bytes" }
    }

    /// admitting, starting, running, checkpointing, recovering, stopping, finished, failed, stopped.
    public var state: String
    public var step: Int
    public var totalSteps: Int
    public var worldSize: Int
    public var membership: UInt64
    public var workers: [Worker]
    public var lastCheckpoint: Checkpoint?
    public var recoveries: [Event]
    public var warnings: [Event]
    public var history: [Point]
    public var runDirectory: String
    public var startedAt: Double

    public init(state: String, step: Int, totalSteps: Int, runDirectory: String, startedAt: Double) {
        self.state = state
        self.step = step
        self.totalSteps = totalSteps
        self.worldSize = 0
        self.membership = 0
        self.workers = []
        self.recoveries = []
        self.warnings = []
        self.history = []
        self.runDirectory = runDirectory
        self.startedAt = startedAt
    }

    enum CodingKeys: String, CodingKey {
        case state, step, totalSteps = "total_steps", worldSize = "world_size", membership, workers
        case lastCheckpoint = "last_checkpoint", recoveries, warnings, history, runDirectory = "run_directory", startedAt = "started_at"
    }

    /// Points kept for the live page.
    public static let historyLimit = 500

    /// Warnings kept (the newest).
    public static let warningLimit = 100

    public mutating func warn(_ event: Event) {
        warnings.append(event)
        if warnings.count > Self.warningLimit { warnings.removeFirst(warnings.count - Self.warningLimit) }
    }

    public mutating func append(_ point: Point) {
        history.append(point)
        if history.count > Self.historyLimit { history.removeFirst(history.count - Self.historyLimit) }
    }

    public func json() -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        return (try? e.encode(self)) ?? Data("{}".utf8)
    }
}
