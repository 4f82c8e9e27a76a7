import Foundation
import Testing
import Training
@testable import Zero

@Suite struct DeviceProfileTests {
    @Test func profileCapacities() {
        #expect(DeviceProfile.capacity(.a100_40g) == 40 << 30)
        #expect(DeviceProfile.capacity(.a100_80g) == 80 << 30)
        #expect(DeviceProfile.capacity(.h100_80g) == 80 << 30)
        #expect(DeviceProfile.capacity(.a100_40g, scale: 0.5) == 20 << 30)
        #expect(DeviceProfile.capacity(.a100_80g, memory: 1000) == 1000)
        #expect(DeviceProfile.capacity(.custom, memory: 1 << 20, scale: 0.25) == 1 << 18)
        #expect(DeviceProfile.custom.nominalBytes == nil)
    }

    static let sizes: [(String, Int?)] = [
        ("123", 123), ("0", 0), ("40G", 40 << 30), ("80GiB", 80 << 30), ("80gib", 80 << 30), ("500MB", 500_000_000),
        ("1.5T", 3 << 39), ("4 MiB", 4 << 20), ("2e9", 2_000_000_000), ("1KB", 1000), ("1K", 1024), ("7B", 7),
        ("", nil), ("abc", nil), ("-1G", nil), ("40X", nil), ("G", nil), ("1e30", nil), ("1.5.2G", nil),
    ]

    @Test(arguments: sizes)
    func byteSizes(text: String, bytes: Int?) {
        #expect(ByteSize.parse(text) == bytes, "\(text)")
    }

    @Test func formatting() {
        #expect(ByteSize.format(512) == "512 B")
        #expect(ByteSize.format(3 << 29) == "1.50 GiB")
        #expect(ByteSize.format(80 << 30) == "80.0 GiB")
        #expect(ByteSize.format(111 << 30) == "111 GiB")
    }

    @Test func configValidation() throws {
        try DeviceConfig().validate()
        #expect(DeviceConfig().capacity == 80 << 30)
        #expect(DeviceConfig(profile: "a100-40g", scale: 0.001).capacity == Int(Double(40 << 30) * 0.001))
        let bad: [(DeviceConfig, String)] = [
            (DeviceConfig(profile: "v100"), "device.profile: must be one of a100-40g, a100-80g, h100-80g, custom, got \"v100\""),
            (DeviceConfig(profile: "custom"), "device.memory: is required for profile custom"),
            (DeviceConfig(profile: "custom", memory: 0), "device.memory: must be > 0 bytes, got 0"),
            (DeviceConfig(scale: 0), "device.scale: must be in (0, 1], got 0.0"),
            (DeviceConfig(scale: 2), "device.scale: must be in (0, 1], got 2.0"),
            (DeviceConfig(profile: "custom", memory: 10, scale: 0.01), "device.scale: leaves no memory (0 bytes); raise scale or memory"),
        ]
        for (config, message) in bad {
            #expect { try config.validate() } throws: { ($0 as? ZeroError)?.message == message && ($0 as? ZeroError)?.code == .badInput }
        }
    }

    /// The section decodes from YAML through the config tree (integer bytes or a size with a unit) and from JSON.
    @Test func decoding() throws {
        func yaml(_ text: String) throws -> DeviceConfig {
            try ConfigDecoder.decode(DeviceConfig.self, from: ConfigValue.parse(yaml: text, source: "test"))
        }
        #expect(try yaml("profile: custom\nmemory: 40G\nscale: 0.5") == DeviceConfig(profile: "custom", memory: 40 << 30, scale: 0.5))
        #expect(try yaml("profile: h100-80g\nmemory: 1000") == DeviceConfig(profile: "h100-80g", memory: 1000))
        #expect(try yaml("scale: 0.01") == DeviceConfig(scale: 0.01))
        #expect(throws: (any Error).self) { try yaml("memory: lots") }
        #expect(throws: (any Error).self) { try yaml("memroy: 1G") }
        let json = try JSONDecoder().decode(DeviceConfig.self, from: Data(#"{"profile": "a100-40g", "memory": "20GiB"}"#.utf8))
        #expect(json.capacity == 20 << 30)
    }
}
