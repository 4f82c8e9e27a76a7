import Foundation

extension ControlMessage {
    /// Limits of a control message from the network; anything outside them is refused before use.
    public enum Limits {
        public static let text = 4096, name = 256, devices = 1024, ranks = 1 << 20, listItems = 1 << 16
        /// Largest token chunk asked for or served (TokenFetch's chunks are 1 MiB).
        public static let chunkBytes = 1 << 20
    }

    /// Decodes and checks a message from the network: JSON of the message's schema (a wrong type
    /// or an unknown `kind` fails to decode), then `validationError`. The reason when it is refused.
    public static func decodeChecked(_ data: Data) -> Result<ControlMessage, ControlMessageRejection> {
        guard data.count <= 16 << 20 else { return .failure(.init(reason: "\(data.count) bytes, more than 16 MiB")) }
        let message: ControlMessage
        do {
            message = try JSONDecoder().decode(ControlMessage.self, from: data)
        } catch {
            return .failure(.init(reason: "not a control message (\(data.count) bytes): \(Self.describe(error))"))
        }
        if let reason = message.validationError { return .failure(.init(reason: "\(message.kind.rawValue): \(reason)")) }
        return .success(message)
    }

    private static func describe(_ error: any Error) -> String {
        switch error {
        case let DecodingError.keyNotFound(key, _): "the key \(key.stringValue) is missing"
        case let DecodingError.typeMismatch(_, c), let DecodingError.valueNotFound(_, c):
            "wrong type at \(c.codingPath.map(\.stringValue).joined(separator: "."))"
        case let DecodingError.dataCorrupted(c):
            c.codingPath.isEmpty ? "not JSON" : "bad value at \(c.codingPath.map(\.stringValue).joined(separator: "."))"
        default: "undecodable"
        }
    }

    /// What is wrong with a decoded message (sizes, ranges, the fields its kind needs), or nil.
    public var validationError: String? {
        typealias L = Limits
        func long(_ s: String?, _ limit: Int) -> Bool { (s?.utf8.count ?? 0) > limit }
        for (field, value, limit) in [("host", host, L.name), ("build", build, L.name), ("configHash", configHash, L.name),
                                      ("jobToken", jobToken, L.name), ("reason", reason, L.text), ("path", path, L.text),
                                      ("directory", directory, L.text),
                                      ("resumeFrom", resumeFrom, L.text), ("forensicsDirectory", forensicsDirectory, L.text)]
            where long(value, limit) {
            return "\(field) is longer than \(limit) bytes"
        }
        if let files = dataFiles {
            if files.count > L.listItems { return "dataFiles has more than \(L.listItems) entries" }
            if files.contains(where: { $0.utf8.count > L.text }) { return "dataFiles holds a path longer than \(L.text) bytes" }
        }
        for (field, list) in [("endpoints", endpoints), ("successors", successors), ("predecessors", predecessors)] {
            guard let list else { continue }
            if list.count > L.devices { return "\(field) has more than \(L.devices) entries" }
            if let bad = list.first(where: { $0.utf8.count > L.name || !["tcp://", "ipc://", "inproc://"].contains(where: $0.hasPrefix) }) {
                return "\(field) holds an invalid endpoint \(bad.prefix(64))"
            }
        }
        if let d = devices, !(1...L.devices).contains(d) { return "devices must be 1…\(L.devices), got \(d)" }
        if let n = worldSize, !(1...L.ranks).contains(n) { return "worldSize must be 1…\(L.ranks), got \(n)" }
        if let n = expectedWorldSize, !(1...L.ranks).contains(n) { return "expectedWorldSize must be 1…\(L.ranks), got \(n)" }
        if let r = launchRank, !(0..<L.ranks).contains(r) { return "launchRank must be 0…\(L.ranks - 1), got \(r)" }
        if let p = pid, p < 0 { return "pid must be ≥ 0, got \(p)" }
        if let e = epoch, e == 0 { return "epoch must be ≥ 1" }
        if let s = step, s < 0 { return "step must be ≥ 0, got \(s)" }
        if let o = offset, o < 0 { return "offset must be ≥ 0, got \(o)" }
        if let n = length, !(0...L.chunkBytes).contains(n) { return "length must be 0…\(L.chunkBytes), got \(n)" }
        if let d = data, d.count > L.chunkBytes { return "data is larger than \(L.chunkBytes) bytes" }
        if let s = size, s < 0 { return "size must be ≥ 0, got \(s)" }
        if let r = replicas {
            if r.count > L.listItems { return "replicas has more than \(L.listItems) entries" }
            if r.contains(where: { $0.worldSize < 1 || $0.worldSize > L.ranks || !(0..<$0.worldSize).contains($0.rank) || $0.step < 0 }) {
                return "replicas holds a rank outside its world size or a negative step"
            }
        }
        if let ranks {
            if ranks.count > L.devices { return "ranks has more than \(L.devices) entries" }
            guard let n = worldSize, ranks.allSatisfy({ (0..<n).contains($0) }), Set(ranks).count == ranks.count else {
                return "ranks must be distinct and inside the world size"
            }
        }
        if let d = memoryDomain, d.utf8.count > 200 { return "memoryDomain is longer than 200 bytes" }
        if let d = memoryDomains, d.count != worldSize || d.contains(where: { ($0?.utf8.count ?? 0) > 200 }) {
            return "memoryDomains must hold one domain (≤ 200 bytes) per rank"
        }
        if let keys = ringKeys, keys.count != worldSize || keys.contains(where: { $0.utf8.count != 40 }) {
            return "ringKeys must hold one 40-character key per rank"
        }
        for (field, count) in [("checksums", checksums?.count), ("bytesSent", bytesSent?.count), ("memory", memory?.count),
                               ("rankSeconds", rankSeconds?.count), ("shards", shards?.count)] {
            if let count, count > L.devices { return "\(field) has more than \(L.devices) entries" }
        }
        if let c = checksums, c.contains(where: { $0.count > L.listItems }) { return "checksums has more than \(L.listItems) tensors" }
        for (field, count) in [("metrics.expert_load", metrics?.expertLoad?.count), ("metrics.layer_grad_norms", metrics?.layerGradNorms?.count)] {
            if let count, count > L.listItems { return "\(field) has more than \(L.listItems) entries" }
        }
        if let s = shards, s.contains(where: { $0.rank < 0 || $0.step < 0 }) { return "shards holds a negative rank or step" }
        switch kind {
        case .register:
            guard protocolVersion != nil, devices != nil, let e = endpoints, e.count == devices else {
                return "needs protocolVersion, devices and one endpoint per device"
            }
        case .ready:
            guard epoch != nil else { return "needs epoch" }
        case .stepDone:
            guard epoch != nil, step != nil, metrics != nil else { return "needs epoch, step and metrics" }
        case .checkpointDone:
            guard epoch != nil, step != nil, shards != nil else { return "needs epoch, step and shards" }
        case .checkpointFailed:
            guard epoch != nil, step != nil, reason != nil else { return "needs epoch, step and reason" }
        case .fetch:
            guard path != nil, offset != nil, length != nil else { return "needs path, offset and length" }
        case .assign:
            guard ranks != nil, worldSize != nil, config != nil, let s = successors, s.count == ranks?.count else {
                return "needs ranks, worldSize, config and one successor per rank"
            }
        case .step, .checkpoint:
            guard step != nil, epoch != nil else { return "needs step and epoch" }
        case .refused, .heartbeat, .shutdown, .bye, .failed, .chunk, .reset:
            break
        }
        return nil
    }
}

/// Why a control message from the network was not used.
public struct ControlMessageRejection: Error, Sendable, Equatable {
    public let reason: String
}
