/// A section of the config tree (`model:`, `training:`, `zero:` …) whose coding is its field
/// list: `init()` gives every default, `fields` names each key once, and the decoder and encoder
/// below walk that list. A present key overrides the default, a missing or null one keeps it, so a
/// file (or a JSON from an older build) may leave out any key but the `required` ones.
///
/// ```swift
/// public struct DataConfig: ConfigSection {
///     /// Tokens per training sequence.
///     public var seqLen = 128
///     public init() {}
///     public static let fields: [ConfigField<Self>] = [.init("seq_len", \.seqLen)]
/// }
/// ```
///
/// Works with any `Decoder`: the strict config-tree decoder sees every key the list reads (so it
/// can report the others as unknown), and `JSONDecoder` fills what a message or checkpoint lacks.
public protocol ConfigSection: Codable, Sendable {
    /// Every field at its default.
    init()
    /// The section's keys in encoding order, each with the property it fills.
    static var fields: [ConfigField<Self>] { get }
}

extension ConfigSection {
    public init(from decoder: any Decoder) throws {
        self.init()
        let container = try decoder.container(keyedBy: ConfigKey.self)
        for field in Self.fields { try field.decode(&self, container) }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: ConfigKey.self)
        for field in Self.fields { try field.encode(self, &container) }
    }
}

/// One key of a `ConfigSection` and the property behind it.
public struct ConfigField<Section>: Sendable {
    /// The key in YAML and JSON (`num_layers`).
    public let key: String
    private let decodeValue: @Sendable (inout Section, KeyedDecodingContainer<ConfigKey>, ConfigKey) throws -> Void
    private let encodeValue: @Sendable (Section, inout KeyedEncodingContainer<ConfigKey>, ConfigKey) throws -> Void

    private init(_ key: String,
                 decode: @escaping @Sendable (inout Section, KeyedDecodingContainer<ConfigKey>, ConfigKey) throws -> Void,
                 encode: @escaping @Sendable (Section, inout KeyedEncodingContainer<ConfigKey>, ConfigKey) throws -> Void) {
        self.key = key
        decodeValue = decode
        encodeValue = encode
    }

    func decode(_ section: inout Section, _ container: KeyedDecodingContainer<ConfigKey>) throws {
        try decodeValue(&section, container, ConfigKey(key))
    }

    func encode(_ section: Section, _ container: inout KeyedEncodingContainer<ConfigKey>) throws {
        try encodeValue(section, &container, ConfigKey(key))
    }
}

extension ConfigField {
    /// A field with a default: a present key overrides `init()`'s value, a missing one keeps it.
    public init<Value: Codable & Sendable>(_ key: String, _ property: WritableKeyPath<Section, Value> & Sendable) {
        self.init(key, decode: { section, c, k in
            if let value = try c.decodeIfPresent(Value.self, forKey: k) { section[keyPath: property] = value }
        }, encode: { section, c, k in
            try c.encode(section[keyPath: property], forKey: k)
        })
    }

    /// An optional field: set when the key is present, written only when not nil.
    public init<Value: Codable & Sendable>(_ key: String, _ property: WritableKeyPath<Section, Value?> & Sendable) {
        self.init(key, decode: { section, c, k in
            if let value = try c.decodeIfPresent(Value.self, forKey: k) { section[keyPath: property] = value }
        }, encode: { section, c, k in
            try c.encodeIfPresent(section[keyPath: property], forKey: k)
        })
    }

    /// A field without a default: a missing key is an error (`model.num_layers: is required`).
    public static func required<Value: Codable & Sendable>(_ key: String, _ property: WritableKeyPath<Section, Value> & Sendable) -> Self {
        Self(key, decode: { section, c, k in
            section[keyPath: property] = try c.decode(Value.self, forKey: k)
        }, encode: { section, c, k in
            try c.encode(section[keyPath: property], forKey: k)
        })
    }

    /// A field written in a form of its own (a tier by name, a byte count with a unit): `read`
    /// parses the key's value, throwing `InvalidConfigValue` for one it rejects (reported at the
    /// field's path); `write` gives what to encode, nil for nothing. A missing or null key keeps
    /// `init()`'s value.
    public init<Value: Sendable>(_ key: String, _ property: WritableKeyPath<Section, Value> & Sendable,
                                 read: @escaping @Sendable (any SingleValueDecodingContainer) throws -> Value,
                                 write: @escaping @Sendable (Value) -> (any Encodable)?) {
        self.init(key, decode: { section, c, k in
            if let value = try Self.read(c, k, read) { section[keyPath: property] = value }
        }, encode: { section, c, k in
            if let value = write(section[keyPath: property]) { try c.encode(value, forKey: k) }
        })
    }

    /// This field of a section that is a property of `Outer`, as a field of `Outer`: how a
    /// section's keys stand directly in its parent's mapping (the optimizer's under `training:`).
    public func inlined<Outer>(at section: WritableKeyPath<Outer, Section> & Sendable) -> ConfigField<Outer> {
        ConfigField<Outer>(key, decode: { outer, c, k in
            try decodeValue(&outer[keyPath: section], c, k)
        }, encode: { outer, c, k in
            try encodeValue(outer[keyPath: section], &c, k)
        })
    }

    /// The custom field's value, nil when the key is missing or null; a rejection becomes a
    /// `DecodingError.dataCorrupted` whose coding path names the key.
    private static func read<Value>(_ c: KeyedDecodingContainer<ConfigKey>, _ k: ConfigKey,
                                    _ parse: (any SingleValueDecodingContainer) throws -> Value) throws -> Value? {
        guard c.contains(k), try !c.decodeNil(forKey: k) else { return nil }
        let decoder = try c.superDecoder(forKey: k)
        do {
            return try parse(decoder.singleValueContainer())
        } catch let rejected as InvalidConfigValue {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: rejected.rule))
        }
    }
}

/// A value a custom field's `read` rejects; the decoder reports it at the field's path
/// (`zero.offload_optimizer: must be none, host or disk, got nvme`).
public struct InvalidConfigValue: ZeroTrainError, Sendable {
    public enum Code: String, Sendable { case invalidValue }
    /// What the value breaks, phrased to follow the path and a colon.
    public let rule: String
    public init(_ rule: String) { self.rule = rule }
    public var code: Code { .invalidValue }
    public var message: String { rule }
    public var cause: (any Error)? { nil }
    public var kind: ErrorKind { .badInput }
}

/// A key of a config mapping, or an index in a list.
public struct ConfigKey: CodingKey, Sendable, Hashable {
    public let stringValue: String
    public let intValue: Int?

    public init(_ name: String) {
        stringValue = name
        intValue = nil
    }

    public init(index: Int) {
        stringValue = "\(index)"
        intValue = index
    }

    public init?(stringValue: String) { self.init(stringValue) }
    public init?(intValue: Int) { self.init(index: intValue) }
}
