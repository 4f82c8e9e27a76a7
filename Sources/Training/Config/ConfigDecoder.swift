import Common

/// Decodes `Codable` config structs from a `ConfigValue` strictly: wrong types and missing
/// required fields are errors naming the path, and after decoding every key the structs did not
/// read is reported as unknown (`model.moe_config.topk: unknown key`).
public enum ConfigDecoder {
    public static func decode<T: Decodable>(_ type: T.Type, from value: ConfigValue, root: String = "") throws -> T {
        let log = AccessLog()
        let decoder = TreeDecoder(value: value, path: root, log: log)
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
        var s = root
        for k in path {
            if let i = k.intValue { s += "[\(i)]" } else { s += s.isEmpty ? k.stringValue : ".\(k.stringValue)" }
        }
        return s.isEmpty ? "config" : s
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

struct TreeDecoder: Decoder {
    let value: ConfigValue
    let path: String
    let log: AccessLog
    var codingPath: [CodingKey] = []
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .map(let pairs) = value else {
            throw ConfigError("\(path.isEmpty ? "config" : path): expected a mapping, got \(value.shortDescription)")
        }
        return KeyedDecodingContainer(KeyedContainer<Key>(pairs: pairs, path: path, log: log))
    }

    func unkeyedContainer() throws -> UnkeyedDecodingContainer {
        guard case .array(let items) = value else {
            throw ConfigError("\(path): expected a list, got \(value.shortDescription)")
        }
        return UnkeyedContainer(items: items, path: path, log: log)
    }

    func singleValueContainer() throws -> SingleValueDecodingContainer {
        SingleContainer(value: value, path: path, log: log)
    }
}

/// Primitive conversions shared by the containers; the error names the path and what was expected.
enum Primitive {
    static func decode<T: Decodable>(_ type: T.Type, _ value: ConfigValue, path: String, log: AccessLog) throws -> T {
        func mismatch(_ expected: String) -> ConfigError {
            ConfigError("\(path): expected \(expected), got \(value.shortDescription)")
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
            return try T(from: TreeDecoder(value: value, path: path, log: log))
        }
    }
}

struct KeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let pairs: [(key: String, value: ConfigValue)]
    let path: String
    let log: AccessLog
    var codingPath: [CodingKey] { [] }
    var allKeys: [Key] { pairs.compactMap { Key(stringValue: $0.key) } }

    private func childPath(_ key: Key) -> String { path.isEmpty ? key.stringValue : "\(path).\(key.stringValue)" }

    private func lookup(_ key: Key) -> ConfigValue? {
        guard let v = pairs.first(where: { $0.key == key.stringValue })?.value else { return nil }
        log.read.insert(childPath(key))
        return v
    }

    func contains(_ key: Key) -> Bool { lookup(key) != nil }

    func decodeNil(forKey key: Key) throws -> Bool {
        guard let v = lookup(key) else { return true }
        return v == .null
    }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        guard let v = lookup(key), v != .null else { throw ConfigError("\(childPath(key)): is required") }
        return try Primitive.decode(type, v, path: childPath(key), log: log)
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        guard let v = lookup(key) else { throw ConfigError("\(childPath(key)): is required") }
        return try TreeDecoder(value: v, path: childPath(key), log: log).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> UnkeyedDecodingContainer {
        guard let v = lookup(key) else { throw ConfigError("\(childPath(key)): is required") }
        return try TreeDecoder(value: v, path: childPath(key), log: log).unkeyedContainer()
    }

    func superDecoder() throws -> Decoder { TreeDecoder(value: .map(pairs), path: path, log: log) }
    func superDecoder(forKey key: Key) throws -> Decoder { TreeDecoder(value: lookup(key) ?? .null, path: childPath(key), log: log) }
}

struct UnkeyedContainer: UnkeyedDecodingContainer {
    let items: [ConfigValue]
    let path: String
    let log: AccessLog
    var codingPath: [CodingKey] { [] }
    var count: Int? { items.count }
    var currentIndex = 0
    var isAtEnd: Bool { currentIndex >= items.count }

    init(items: [ConfigValue], path: String, log: AccessLog) {
        self.items = items
        self.path = path
        self.log = log
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd else { return true }
        if items[currentIndex] == .null { currentIndex += 1; return true }
        return false
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        guard !isAtEnd else { throw ConfigError("\(path): too few elements") }
        let p = "\(path)[\(currentIndex)]"
        let v = try Primitive.decode(type, items[currentIndex], path: p, log: log)
        currentIndex += 1
        return v
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        let d = TreeDecoder(value: items[currentIndex], path: "\(path)[\(currentIndex)]", log: log)
        currentIndex += 1
        return try d.container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> UnkeyedDecodingContainer {
        let d = TreeDecoder(value: items[currentIndex], path: "\(path)[\(currentIndex)]", log: log)
        currentIndex += 1
        return try d.unkeyedContainer()
    }

    mutating func superDecoder() throws -> Decoder {
        let d = TreeDecoder(value: items[currentIndex], path: "\(path)[\(currentIndex)]", log: log)
        currentIndex += 1
        return d
    }
}

struct SingleContainer: SingleValueDecodingContainer {
    let value: ConfigValue
    let path: String
    let log: AccessLog
    var codingPath: [CodingKey] { [] }
    func decodeNil() -> Bool { value == .null }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try Primitive.decode(type, value, path: path, log: log) }
}
