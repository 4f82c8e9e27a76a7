import Common
import Foundation
import Model

/// Format 2 (docs/checkpoint-format.md): every rank writes its shard file into `step-N.tmp/` in
/// parallel, then one process commits: manifest.json last, the folder renamed to `step-N/`, then
/// `latest` replaced — each step fsynced, so after a crash either the old or the new checkpoint
/// is complete and `latest` names a complete one.
extension CheckpointStore {
    public static let manifestFile = "manifest.json"
    /// The block size of the shard files' block checksums: a read verifies whole blocks.
    public static let blockBytes = 8 << 20

    /// DIR/step-N.tmp: where a checkpoint's files go before the commit.
    public func pendingFolder(step: Int) -> URL { directory.appendingPathComponent(Self.folderName(step: step) + ".tmp") }

    /// Writes config.json (Hugging Face) into the pending folder when the model is HF-compatible;
    /// returns its manifest entry (nil otherwise).
    public func writeHuggingFaceConfig(_ model: ModelConfig, step: Int) throws -> CheckpointFile? {
        guard model.isHuggingFaceCompatible else { return nil }
        let folder = pendingFolder(step: step)
        try FileIO.makeDirectory(directory)
        try FileIO.makeDirectory(folder)
        let data = model.huggingFaceJSON()
        try FileIO.writeDurably(data, to: folder.appendingPathComponent(Self.huggingFaceConfigFile))
        let crc = data.withUnsafeBytes { CRC32C.checksum($0) }
        return CheckpointFile(name: Self.huggingFaceConfigFile, bytes: data.count, crc32c: crc)
    }

    /// Copies the run's tokenizer.json (`file`; nil = the byte-level tokenizer, nothing to copy)
    /// into the pending folder as `tokenizer.json`; returns its manifest entry.
    public func writeTokenizer(from file: String?, step: Int) throws -> CheckpointFile? {
        guard let file else { return nil }
        let data = try Self.readData(URL(fileURLWithPath: file))
        let folder = pendingFolder(step: step)
        try FileIO.makeDirectory(directory)
        try FileIO.makeDirectory(folder)
        try FileIO.writeDurably(data, to: folder.appendingPathComponent(Self.tokenizerFile))
        let crc = data.withUnsafeBytes { CRC32C.checksum($0) }
        return CheckpointFile(name: Self.tokenizerFile, bytes: data.count, crc32c: crc)
    }

    /// The commit: checks every file the manifest lists is in the pending folder with its size,
    /// writes manifest.json (fsync), fsyncs the folder, renames step-N.tmp → step-N (replacing an
    /// older step-N), fsyncs DIR, replaces `latest` atomically, then deletes committed step
    /// folders beyond the newest `keep` (keep ≥ 1; never the new one) and pending folders of steps
    /// below this one. Returns the committed folder.
    @discardableResult
    public func commit<Config>(_ manifest: CheckpointManifest<Config>, keep: Int) throws -> URL {
        guard keep >= 1 else { throw CheckpointError(.invalidArgument, "checkpoints to keep must be ≥ 1, got \(keep)") }
        let pending = pendingFolder(step: manifest.step)
        let name = Self.folderName(step: manifest.step)
        let final = directory.appendingPathComponent(name)
        try manifest.validate(path: "the manifest of step \(manifest.step)")
        for file in manifest.files {
            let url = pending.appendingPathComponent(file.name)
            guard let size = FileIO.size(url) else {
                throw CheckpointError(.incomplete, "cannot commit step \(manifest.step): \(url.path) is missing (the manifest lists it)")
            }
            guard size == file.bytes else { throw Self.sizeMismatch(url, size: size, expected: file.bytes) }
        }
        // Files the manifest does not list (e.g. shards of an earlier, abandoned attempt at this
        // step with another world size) do not belong to the checkpoint.
        let listed = Set(manifest.files.map(\.name))
        for name in (try? FileManager.default.contentsOfDirectory(atPath: pending.path)) ?? [] where !listed.contains(name) {
            try? FileManager.default.removeItem(at: pending.appendingPathComponent(name))
        }
        try FileIO.writeDurably(try manifest.encoded(), to: pending.appendingPathComponent(Self.manifestFile))
        try FileIO.fsyncDirectory(pending)

        // rename(2) cannot replace a non-empty folder: an older step-N moves aside first.
        let fm = FileManager.default
        let replaced = directory.appendingPathComponent(name + ".replaced")
        if fm.fileExists(atPath: final.path) {
            try? fm.removeItem(at: replaced)
            try FileIO.rename(final, to: replaced)
        }
        try FileIO.rename(pending, to: final)
        try FileIO.fsyncDirectory(directory)

        let latest = directory.appendingPathComponent(Self.latestFile)
        let latestTemp = directory.appendingPathComponent(Self.latestFile + ".tmp")
        try FileIO.writeDurably(Data((name + "\n").utf8), to: latestTemp)
        try FileIO.rename(latestTemp, to: latest)
        try FileIO.fsyncDirectory(directory)

        try? fm.removeItem(at: replaced)
        for old in checkpoints().filter({ $0.lastPathComponent != name }).dropFirst(keep - 1) {
            try? fm.removeItem(at: old)
        }
        for (step, url) in entries(suffix: ".tmp") where step < manifest.step { try? fm.removeItem(at: url) }
        return final
    }

    /// Committed checkpoints (step folders with a manifest.json), newest step first.
    public func checkpoints() -> [URL] {
        entries(suffix: "").filter { FileManager.default.fileExists(atPath: $0.url.appendingPathComponent(Self.manifestFile).path) }
            .map(\.url)
    }

    /// The newest checkpoint that verifies (`CheckpointReader.verify`), trying older ones after a
    /// failure and calling `warn` with one line naming the folder and what failed; nil when the
    /// directory holds none. When it holds some and none verifies, that is an error (`corrupted`):
    /// starting over silently would throw the run away.
    public func latestVerified<Config: Codable & Sendable>(as: Config.Type, warn: (String) -> Void) throws -> URL? {
        let all = checkpoints()
        for folder in all {
            do {
                try CheckpointReader<Config>(folder).verify()
                return folder
            } catch let e as CheckpointError {
                warn("checkpoint \(folder.path) is unusable, trying an older one: \(e.description)")
            }
        }
        guard all.isEmpty else {
            throw CheckpointError(.corrupted, "none of the \(all.count) checkpoints in \(directory.path) verifies (see the warnings above)")
        }
        return nil
    }

    /// The folders `step-<digits><suffix>` in the directory with their steps, newest first.
    func entries(suffix: String) -> [(step: Int, url: URL)] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory.path) else { return [] }
        var out: [(step: Int, url: URL)] = []
        for name in names where name.hasPrefix("step-") && name.hasSuffix(suffix) {
            let digits = name.dropFirst(5).dropLast(suffix.count)
            guard !digits.isEmpty, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber), let step = Int(digits) else { continue }
            out.append((step, directory.appendingPathComponent(name)))
        }
        return out.sorted { $0.step > $1.step }
    }

    static func sizeMismatch(_ url: URL, size: Int, expected: Int) -> CheckpointError {
        CheckpointError(.corrupted, "\(url.path) is \(size) bytes, the manifest says \(expected) (truncated or replaced)")
    }

    /// A folder with no manifest.json: the one message for it, wherever it is noticed.
    static func noManifest(_ folder: URL) -> CheckpointError {
        CheckpointError(.incomplete, "\(folder.path) has no \(manifestFile): not a complete checkpoint (an interrupted save leaves step-N.tmp folders, which are never used)")
    }
}
