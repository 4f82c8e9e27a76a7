import Common

/// Decodes `Codable` config structs from a `ConfigValue` strictly: wrong types and missing
/// required fields are errors naming the path, and after decoding every key the structs did not
/// read is reported as unknown (`model.moe_config.topk: unknown key`).
public enum ConfigDecoder {
    public static func decode<T: Decodable>(_ type: T.Type, from value: ConfigValue, root: String = "") throws -> T {
        let log = AccessLog()
        let decoder = TreeDecoder(value: value, at: TreePath(root: root), log: log)
        let result: T
        do {
            result = try T(from: decoder)
        } catch let e as ConfigError {
            throw e
        } catch let e as DecodingError {
            throw ConfigError(describe(e, root: root))
        }
        if let unknown = firstUnknownKey(value, path: root, log: log) {
            throw ConfigError("\(unknown): unknown key")
        }
        return result
    }

    private static func describe(_ e: DecodingError, root: String) -> String {
        switch e {
        case let .keyNotFound(key, ctx): return "\(join(root, ctx.codingPath + [key])): is required"
        case let .typeMismatch(_, ctx), let .valueNotFound(_, ctx), let .dataCorrupted(ctx):
            return "\(join(root, ctx.codingPath)): \(ctx.debugDescription)"
        @unknown default: return "\(e)"
        }
    }

    static func join(_ root: String, _ path: [CodingKey]) -> String {
        path.reduce(TreePath(root: root)) { $0.appending($1) }.name
    }

    private static func firstUnknownKey(_ value: ConfigValue, path: String, log: AccessLog) -> String? {
        guard case .map(let pairs) = value else {
            if case .array(let items) = value {
                for (i, item) in items.enumerated() {
                    if let u = firstUnknownKey(item, path: "\(path)[\(i)]", log: log) { return u }
                }
            }
            return nil
        }
        for (key, child) in pairs {
            let p = path.isEmpty ? key : "\(path).\(key)"
            if !log.read.contains(p) { return p }
            if let u = firstUnknownKey(child, path: p, log: log) { return u }
        }
        return nil
    }
}

final class AccessLog {
    var read = Set<String>()
}

/// Where a value sits in the tree: its coding path below the caller's root and the same as text
/// (`model.moe_config.top_k`, `training.betas[1]`; the root itself, often empty, at the top).
/// Decoders and containers report the path, so a custom type's `DecodingError` names it too.
struct TreePath {
    let codingPath: [CodingKey]
    let text: String

    init(root: String) {
        codingPath = []
        text = root
    }

    private init(codingPath: [CodingKey], text: String) {
        self.codingPath = codingPath
        self.text = text
    }

    func appending(_ key: CodingKey) -> TreePath {
        let t = key.intValue.map { "\(text)[\($0)]" } ?? (text.isEmpty ? key.stringValue : "\(text).\(key.stringValue)")
        return TreePath(codingPath: codingPath + [key], text: t)
    }

    func appending(index: Int) -> TreePath { appending(ConfigKey(index: index)) }

    /// The text for a message: "config" at an unnamed top.
    var name: String { text.isEmpty ? "config" : text }
}

struct TreeDecoder: Decoder {
    let value: ConfigValue
    let at: TreePath
    let log: AccessLog
    var codingPath: [CodingKey] { at.codingPath }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .map(let pairs) = value else {
            throw ConfigError("\(at.name): expected a mapping, got \(value.shortDescription)")
        }
        return KeyedDecodingContainer(KeyedContainer<Key>(pairs: pairs, at: at, log: log))
    }

    func unkeyedContainer() throws -> UnkeyedDecodingContainer {
        guard case .array(let items) = value else {
            throw ConfigError("\(at.name): expected a list, got \(value.shortDescription)")
        }
        return UnkeyedContainer(items: items, at: at, log: log)
    }

    func singleValueContainer() throws -> SingleValueDecodingContainer {
        SingleContainer(value: value, at: at, log: log)
    }
}

/// Primitive conversions shared by the containers; the error names the path and what was expected.
enum Primitive {
    static func decode<T: Decodable>(_ type: T.Type, _ value: ConfigValue, at: TreePath, log: AccessLog) throws -> T {
        func mismatch(_ expected: String) -> ConfigError {
            ConfigError("\(at.text): expected \(expected), got \(value.shortDescription)")
        }
        switch type {
        case is String.Type:
            switch value {
            case .string(let s): return s as! T
            case .int(let i): return String(i) as! T
            case .double(let d): return String(d) as! T
            default: throw mismatch("a string")
            }
        case is Bool.Type:
            guard case .bool(let b) = value else { throw mismatch("true or false") }
            return b as! T
        case is Int.Type:
            guard case .int(let i) = value else { throw mismatch("an integer") }
            return i as! T
        case is UInt64.Type:
            guard case .int(let i) = value, i >= 0 else { throw mismatch("a non-negative integer") }
            return UInt64(i) as! T
        case is Double.Type:
            switch value {
            case .int(let i): return Double(i) as! T
            case .double(let d): return d as! T
            default: throw mismatch("a number")
            }
        case is Float.Type:
            switch value {
            case .int(let i): return Float(i) as! T
            case .double(let d): return Float(d) as! T
            default: throw mismatch("a number")
            }
        default:
            return try T(from: TreeDecoder(value: value, at: at, log: log))
        }
    }
}

struct KeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let pairs: [(key: String, value: ConfigValue)]
    let at: TreePath
    let log: AccessLog
    var codingPath: [CodingKey] { at.codingPath }
    var allKeys: [Key] { pairs.compactMap { Key(stringValue: $0.key) } }

    private func lookup(_ key: Key) -> ConfigValue? {
        guard let v = pairs.first(where: { $0.key == key.stringValue })?.value else { return nil }
        log.read.insert(at.appending(key).text)
        return v
    }

    func contains(_ key: Key) -> Bool { lookup(key) != nil }

    func decodeNil(forKey key: Key) throws -> Bool {
        guard let v = lookup(key) else { return true }
        return v == .null
    }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        guard let v = lookup(key), v != .null else { throw ConfigError("\(at.appending(key).text): is required") }
        return try Primitive.decode(type, v, at: at.appending(key), log: log)
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        guard let v = lookup(key) else { throw ConfigError("\(at.appending(key).text): is required") }
        return try TreeDecoder(value: v, at: at.appending(key), log: log).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> UnkeyedDecodingContainer {
        guard let v = lookup(key) else { throw ConfigError("\(at.appending(key).text): is required") }
        return try TreeDecoder(value: v, at: at.appending(key), log: log).unkeyedContainer()
    }

    func superDecoder() throws -> Decoder { TreeDecoder(value: .map(pairs), at: at, log: log) }
    func superDecoder(forKey key: Key) throws -> Decoder { TreeDecoder(value: lookup(key) ?? .null, at: at.appending(key), log: log) }
}

struct UnkeyedContainer: UnkeyedDecodingContainer {
    let items: [ConfigValue]
    let at: TreePath
    let log: AccessLog
    var codingPath: [CodingKey] { at.codingPath }
    var count: Int? { items.count }
    var currentIndex = 0
    var isAtEnd: Bool { currentIndex >= items.count }

    init(items: [ConfigValue], at: TreePath, log: AccessLog) {
        self.items = items
        self.at = at
        self.log = log
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd else { return true }
        if items[currentIndex] == .null { currentIndex += 1; return true }
        return false
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        guard !isAtEnd else { throw ConfigError("\(at.text): too few elements") }
        let v = try Primitive.decode(type, items[currentIndex], at: at.appending(index: currentIndex), log: log)
        currentIndex += 1
        return v
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try superDecoder().container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> UnkeyedDecodingContainer {
        try superDecoder().unkeyedContainer()
    }

    mutating func superDecoder() throws -> Decoder {
        let d = TreeDecoder(value: items[currentIndex], at: at.appending(index: currentIndex), log: log)
        currentIndex += 1
        return d
    }
}

struct SingleContainer: SingleValueDecodingContainer {
    let value: ConfigValue
    let at: TreePath
    let log: AccessLog
    var codingPath: [CodingKey] { at.codingPath }
    func decodeNil() -> Bool { value == .null }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try Primitive.decode(type, value, at: at, log: log) }
}
