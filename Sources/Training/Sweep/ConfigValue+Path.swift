import Common

extension ConfigValue {
    /// The tree with `value` at the dotted `path` (`training.lr`), creating the mappings on the
    /// way. Whether the path names a config field is the decoder's business: an unknown key it
    /// did not read is an error naming the path.
    public func setting(_ value: ConfigValue, at path: String) throws -> ConfigValue {
        let keys = path.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard !keys.isEmpty, !keys.contains(where: \.isEmpty) else { throw ConfigError("\(path): not a dotted config path") }
        return try setting(value, keys: keys[...], path: path)
    }

    private func setting(_ value: ConfigValue, keys: ArraySlice<String>, path: String) throws -> ConfigValue {
        guard let key = keys.first else { return value }
        var pairs: [(key: String, value: ConfigValue)]
        switch self {
        case .map(let p): pairs = p
        case .null: pairs = []
        default: throw ConfigError("\(path): \(key) sits below \(typeName), not a mapping")
        }
        if let i = pairs.firstIndex(where: { $0.key == key }) {
            pairs[i].value = try pairs[i].value.setting(value, keys: keys.dropFirst(), path: path)
        } else {
            pairs.append((key, try ConfigValue.null.setting(value, keys: keys.dropFirst(), path: path)))
        }
        return .map(pairs)
    }

    /// The value as a YAML/CSV scalar: numbers and booleans plain, strings as they are.
    public var scalarText: String {
        switch self {
        case .null: "null"
        case .bool(let b): "\(b)"
        case .int(let i): "\(i)"
        case .double(let d): "\(d)"
        case .string(let s): s
        case .array(let items): "[" + items.map(\.scalarText).joined(separator: ", ") + "]"
        case .map(let pairs): "{" + pairs.map { "\($0.key): \($0.value.scalarText)" }.joined(separator: ", ") + "}"
        }
    }
}
