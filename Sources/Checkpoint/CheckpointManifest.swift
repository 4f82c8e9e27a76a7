import Common
import Foundation

/// manifest.json: everything a checkpoint holds besides the tensors, and the list of its files
/// with their sizes and checksums. Written last, by the commit: a step folder without it is not a
/// checkpoint. `Config` is the run's whole config (the training module's `TrainConfig`).
public struct CheckpointManifest<Config: Codable & Sendable>: Codable, Sendable {
    /// The version this build writes and reads.
    public static var currentFormatVersion: Int { 2 }

    public var formatVersion: Int
    /// Optimizer updates completed (the next update is `step`).
    public var step: Int
    /// Ranks that wrote the checkpoint (one shard file each).
    public var worldSize: Int
    /// The ZeRO stage of the run that wrote it (informational: any stage resumes from any checkpoint).
    public var zeroStage: Int
    public var config: Config
    /// The flat buffer's layout (name, shape, offset in elements), in order: with the files'
    /// element ranges this is the partition plan.
    public var tensors: [TensorLayout]
    public var dataCursor: DataCursor
    public var schedule: ScheduleState
    /// Updates skipped for non-finite gradients (AdamW's t = step − skippedSteps).
    public var skippedSteps: Int
    /// fp16: the dynamic loss scale after `step` updates (nil in other precisions).
    public var lossScale: LossScaleState?
    /// fp8: the amax histories of the delayed scaling after `step` updates (nil in other precisions).
    public var fp8Scaling: FP8ScalingState?
    /// Every file of the checkpoint but the manifest: the shard files (by rank) and config.json.
    public var files: [CheckpointFile]

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version", step, worldSize = "world_size", zeroStage = "zero_stage", config, tensors
        case dataCursor = "data_cursor", schedule, skippedSteps = "skipped_steps", lossScale = "loss_scale", fp8Scaling = "fp8_scaling", files
    }

    public init(step: Int, worldSize: Int, zeroStage: Int, config: Config, tensors: [TensorLayout], dataCursor: DataCursor,
                schedule: ScheduleState, skippedSteps: Int, lossScale: LossScaleState? = nil, fp8Scaling: FP8ScalingState? = nil,
                files: [CheckpointFile]) {
        self.formatVersion = Self.currentFormatVersion
        self.step = step
        self.worldSize = worldSize
        self.zeroStage = zeroStage
        self.config = config
        self.tensors = tensors
        self.dataCursor = dataCursor
        self.schedule = schedule
        self.skippedSteps = skippedSteps
        self.lossScale = lossScale
        self.fp8Scaling = fp8Scaling
        self.files = files
    }

    /// Decodes `format_version` before anything else, so a manifest of another version is
    /// rejected as such rather than for whichever of its fields this build does not know.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let version = try c.decode(Int.self, forKey: .formatVersion)
        guard version == Self.currentFormatVersion else { throw Self.unsupported(version, path: Self.manifestName) }
        formatVersion = version
        step = try c.decode(Int.self, forKey: .step)
        worldSize = try c.decode(Int.self, forKey: .worldSize)
        zeroStage = try c.decode(Int.self, forKey: .zeroStage)
        config = try c.decode(Config.self, forKey: .config)
        tensors = try c.decode([TensorLayout].self, forKey: .tensors)
        dataCursor = try c.decode(DataCursor.self, forKey: .dataCursor)
        schedule = try c.decode(ScheduleState.self, forKey: .schedule)
        skippedSteps = try c.decode(Int.self, forKey: .skippedSteps)
        lossScale = try c.decodeIfPresent(LossScaleState.self, forKey: .lossScale)
        fp8Scaling = try c.decodeIfPresent(FP8ScalingState.self, forKey: .fp8Scaling)
        files = try c.decode([CheckpointFile].self, forKey: .files)
    }

    private static var manifestName: String { "manifest.json" }

    private static func unsupported(_ version: Int, path: String) -> CheckpointError {
        CheckpointError(.unsupportedVersion, "\(path) has format_version \(version); this zerotrain reads version \(currentFormatVersion)")
    }

    /// The manifest in `data`, read from `path` (named in the errors): another format version is
    /// `unsupportedVersion`, anything else that does not decode `malformed`; then `validate`.
    public static func decode(_ data: Data, path: String) throws -> Self {
        let version: Int?
        do {
            version = try JSONDecoder().decode(ManifestVersion.self, from: data).formatVersion
        } catch {
            throw CheckpointError(.malformed, "\(path) is not a valid checkpoint manifest (not a JSON object with an integer format_version)",
                                  cause: error)
        }
        guard let version else { throw CheckpointError(.malformed, "\(path) has no format_version: not a checkpoint manifest") }
        guard version == currentFormatVersion else { throw unsupported(version, path: path) }
        let manifest: Self
        do {
            manifest = try JSONDecoder().decode(Self.self, from: data)
        } catch {
            throw CheckpointError(.malformed, "\(path) is not a valid checkpoint manifest: \(describe(error))")
        }
        try manifest.validate(path: path)
        return manifest
    }

    /// The manifest as manifest.json holds it: pretty-printed, keys sorted.
    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do {
            return try encoder.encode(self)
        } catch {
            throw CheckpointError(.malformed, "cannot encode the checkpoint manifest of step \(step)", cause: error)
        }
    }

    /// The shard files, by start element.
    public var shards: [CheckpointFile] { files.filter(\.isShard).sorted { $0.start! < $1.start! } }

    /// Ψ: elements of each flat buffer (the sum of the shards' counts).
    public var elementCount: Int { files.reduce(0) { $0 + ($1.isShard ? $1.count ?? 0 : 0) } }

    /// Checks what the reader relies on: one shard per rank 0..<worldSize whose element ranges
    /// tile 0..<Ψ, the tensor layout within Ψ, and each shard's block list and data offsets
    /// consistent with its size. Violations are `malformed`, naming `path`.
    public func validate(path: String) throws {
        func bad(_ why: String) -> CheckpointError { CheckpointError(.malformed, "\(path): \(why)") }
        guard step >= 0, worldSize >= 1 else { throw bad("step \(step) and world_size \(worldSize) must be ≥ 0 and ≥ 1") }
        var names = Set<String>()
        for f in files {
            guard !f.name.isEmpty, !f.name.contains("/"), f.name != ".", f.name != "..", f.name != "manifest.json" else {
                throw bad("file name \"\(f.name)\" is not a plain file name")
            }
            guard names.insert(f.name).inserted else { throw bad("file \(f.name) is listed twice") }
            guard f.bytes >= 0 else { throw bad("\(f.name) has \(f.bytes) bytes") }
        }
        let shards = self.shards
        guard shards.count == worldSize else { throw bad("lists \(shards.count) shard files for world_size \(worldSize)") }
        guard Set(shards.map(\.rank)) == Set((0..<worldSize).map { Optional($0) }) else {
            throw bad("the shard files' ranks are not 0..<\(worldSize)")
        }
        var next = 0
        for s in shards {
            guard let start = s.start, let count = s.count, count >= 0 else { throw bad("\(s.name) has no element count") }
            guard start == next else { throw bad("\(s.name) starts at element \(start), expected \(next) (holes or overlaps)") }
            next = start + count
            guard let block = s.blockBytes, block > 0, block <= 1 << 28, let crcs = s.blockCRC32C else { throw bad("\(s.name) has no block checksums") }
            guard crcs.count == (s.bytes + block - 1) / block else {
                throw bad("\(s.name) lists \(crcs.count) block checksums for \(s.bytes) bytes in blocks of \(block)")
            }
            for t in ShardTensor.allCases {
                guard let offset = s.dataOffsets?[t.rawValue], offset >= 0, offset + 4 * count <= s.bytes else {
                    throw bad("\(s.name) has no valid data offset for \(t.rawValue)")
                }
            }
        }
        for t in tensors where t.offset < 0 || t.offset + t.count > next {
            throw bad("tensor \(t.name) (offset \(t.offset), \(t.count) elements) lies outside the \(next) elements of the shards")
        }
    }

    /// A decoding error as a short phrase: the field's path and what was wrong.
    static func describe(_ error: any Error) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let p = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? "." + $0.stringValue }.joined()
            return p.hasPrefix(".") ? String(p.dropFirst()) : p
        }
        switch error {
        case DecodingError.keyNotFound(let key, let context):
            let parent = path(context)
            return "missing field \(parent.isEmpty ? "" : parent + ".")\(key.stringValue)"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            return "\(path(context)): wrong type (\(context.debugDescription))"
        case DecodingError.dataCorrupted(let context):
            return "\(path(context).isEmpty ? "" : path(context) + ": ")\(context.debugDescription)"
        case let e as any ZeroTrainError:
            return e.description
        default:
            return String(describing: error).split(whereSeparator: \.isNewline).joined(separator: " ")
        }
    }
}

/// Just the `format_version` of a manifest, decoded before the rest.
private struct ManifestVersion: Decodable {
    let formatVersion: Int?
    enum CodingKeys: String, CodingKey { case formatVersion = "format_version" }
}
