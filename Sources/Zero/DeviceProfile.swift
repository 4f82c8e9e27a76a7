import Common
import Foundation

/// The GPU the planner models a device on. ZeroTrain's devices are CPU threads with a memory
/// budget; a profile gives that budget the capacity of a familiar accelerator, so a plan (and the
/// memory ledger) behaves like the same job on that hardware would.
public enum DeviceProfile: String, Codable, Sendable, CaseIterable {
    case a100_40g = "a100-40g"
    case a100_80g = "a100-80g"
    case h100_80g = "h100-80g"
    /// Capacity given explicitly (`memory:`).
    case custom

    /// Device memory of the real part in bytes (nil for `custom`).
    public var nominalBytes: Int? {
        switch self {
        case .a100_40g: return 40 * ByteSize.gibibyte
        case .a100_80g, .h100_80g: return 80 * ByteSize.gibibyte
        case .custom: return nil
        }
    }

    /// One line for tables and help texts.
    public var summary: String {
        switch self {
        case .a100_40g: return "NVIDIA A100 40GB (40 GiB HBM2)"
        case .a100_80g: return "NVIDIA A100 80GB (80 GiB HBM2e)"
        case .h100_80g: return "NVIDIA H100 80GB (80 GiB HBM3)"
        case .custom: return "explicit memory: in bytes"
        }
    }

    /// Capacity in bytes: `memory` (overriding the profile's own size) or the profile's size, times `scale`, rounded down.
    public static func capacity(_ profile: DeviceProfile, memory: Int? = nil, scale: Double = 1) -> Int {
        let base = memory ?? profile.nominalBytes ?? 0
        return Int((Double(base) * scale).rounded(.down))
    }
}

/// The `device:` section of a config: what each device's memory is modelled on.
///
/// ```yaml
/// device:
///   profile: a100-40g     # a100-40g | a100-80g | h100-80g | custom
///   memory: 40G           # bytes (suffixes as `ByteSize.parse`); required for custom, overrides otherwise
///   scale: 0.001          # multiplies the capacity, so the budget binds on small models
/// ```
public struct DeviceConfig: ConfigSection, Equatable {
    /// The device profile, by name (validated against `DeviceProfile`).
    public var profile = DeviceProfile.a100_80g.rawValue
    /// Device memory in bytes; required for `custom`, replaces the profile's own size otherwise.
    public var memory: Int?
    /// Factor applied to the capacity, in (0, 1]: 0.001 makes an "a100-40g" hold 40 MiB-ish.
    public var scale: Double = 1

    public init() {}

    /// The defaults, with the given values instead (nil keeps the default).
    public init(profile: String? = nil, memory: Int? = nil, scale: Double? = nil) {
        if let profile { self.profile = profile }
        if let memory { self.memory = memory }
        if let scale { self.scale = scale }
    }

    public static let fields: [ConfigField<Self>] = [
        .init("profile", \.profile), .init("memory", \.memory, read: ByteSize.read, write: { $0 }), .init("scale", \.scale),
    ]

    /// The parsed profile; nil if `profile` names none.
    public var deviceProfile: DeviceProfile? { DeviceProfile(rawValue: profile) }

    /// Bytes one device may hold. Call `validate` first.
    public var capacity: Int { DeviceProfile.capacity(deviceProfile ?? .custom, memory: memory, scale: scale) }

    /// Checks every rule; the message names the path (`device.scale: …`).
    public func validate(path p: String = "device") throws {
        func fail(_ f: String, _ rule: String) -> ZeroError { ZeroError(.badInput, "\(p).\(f): \(rule)") }
        guard let kind = deviceProfile else {
            let names = DeviceProfile.allCases.map(\.rawValue).joined(separator: ", ")
            throw fail("profile", "must be one of \(names), got \"\(profile)\"")
        }
        if kind == .custom && memory == nil { throw fail("memory", "is required for profile custom") }
        if let m = memory, m <= 0 { throw fail("memory", "must be > 0 bytes, got \(m)") }
        guard scale > 0 && scale <= 1 && scale.isFinite else { throw fail("scale", "must be in (0, 1], got \(scale)") }
        guard capacity >= 1 else { throw fail("scale", "leaves no memory (\(capacity) bytes); raise scale or memory") }
    }
}

/// Byte counts with units, for config values and command-line arguments.
public enum ByteSize {
    public static let kibibyte = 1 << 10, mebibyte = 1 << 20, gibibyte = 1 << 30, tebibyte = 1 << 40

    /// Parses "123", "40G", "80GiB", "1.5T", "500MB", "2e9" into bytes. Units follow dd(1):
    /// K, M, G, T and KiB, MiB, GiB, TiB are powers of 1024; KB, MB, GB, TB are powers of 1000;
    /// B or no unit is bytes. Case-insensitive; fractions round down. Nil for anything else,
    /// for negative sizes and for sizes beyond Int.
    public static func parse(_ text: String) -> Int? {
        let s = text.trimmingCharacters(in: .whitespaces).lowercased()
        let unitStart = s.firstIndex { $0.isLetter && $0 != "e" } ?? s.endIndex
        let number = String(s[..<unitStart]).trimmingCharacters(in: .whitespaces)
        let unit = String(s[unitStart...])
        let multipliers: [String: Double] = [
            "": 1, "b": 1,
            "k": 0x1p10, "kib": 0x1p10, "kb": 1e3,
            "m": 0x1p20, "mib": 0x1p20, "mb": 1e6,
            "g": 0x1p30, "gib": 0x1p30, "gb": 1e9,
            "t": 0x1p40, "tib": 0x1p40, "tb": 1e12,
        ]
        guard !number.isEmpty, let m = multipliers[unit] else { return nil }
        if unit.isEmpty || unit == "b", let exact = Int(number) { return exact >= 0 ? exact : nil }
        guard let value = Double(number), value.isFinite, value >= 0 else { return nil }
        let bytes = (value * m).rounded(.down)
        guard bytes < 0x1p63 else { return nil }
        return Int(bytes)
    }

    /// A byte count in a config: an integer number of bytes, or a string with a unit ("40G",
    /// "80GiB", "1.5e9").
    static func read(_ value: any SingleValueDecodingContainer) throws -> Int {
        if let bytes = try? value.decode(Int.self) { return bytes }
        let text = try value.decode(String.self)
        guard let bytes = parse(text) else {
            throw InvalidConfigValue("expected bytes such as 42949672960, 40G or 80GiB, got \"\(text)\"")
        }
        return bytes
    }

    /// "1.50 GiB" style, powers of 1024, three significant digits.
    public static func format(_ bytes: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var value = Double(bytes), i = 0
        while abs(value) >= 1024 && i < units.count - 1 { value /= 1024; i += 1 }
        if i == 0 { return "\(bytes) B" }
        let digits = abs(value) >= 100 ? 0 : abs(value) >= 10 ? 1 : 2
        return String(format: "%.\(digits)f", value) + " " + units[i]
    }
}
