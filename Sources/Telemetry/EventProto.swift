/// TensorBoard's `Event` and `Summary` protobufs (tensorboard `compat/proto/event.proto`,
/// `summary.proto`), encoded by hand: only the fields a scalar log needs.
///
/// | field | number | wire type |
/// |---|---|---|
/// | Event.wall_time (double) | 1 | fixed64 |
/// | Event.step (int64) | 2 | varint |
/// | Event.file_version (string) | 3 | bytes |
/// | Event.summary (Summary) | 5 | bytes |
/// | Summary.value (repeated Value) | 1 | bytes |
/// | Value.tag (string) | 1 | bytes |
/// | Value.simple_value (float) | 2 | fixed32 |
public enum EventProto {
    /// A decoded event: the fields above (nil/empty when absent).
    public struct Event: Equatable, Sendable {
        public var wallTime: Double = 0
        public var step: Int64 = 0
        public var fileVersion: String?
        public var scalars: [(tag: String, value: Float)] = []

        public init(wallTime: Double = 0, step: Int64 = 0, fileVersion: String? = nil, scalars: [(tag: String, value: Float)] = []) {
            self.wallTime = wallTime
            self.step = step
            self.fileVersion = fileVersion
            self.scalars = scalars
        }

        public static func == (a: Event, b: Event) -> Bool {
            a.wallTime == b.wallTime && a.step == b.step && a.fileVersion == b.fileVersion
                && a.scalars.map(\.tag) == b.scalars.map(\.tag) && a.scalars.map(\.value.bitPattern) == b.scalars.map(\.value.bitPattern)
        }
    }

    /// `Event{wall_time, file_version}`: the first record of every event file.
    public static func fileVersion(wallTime: Double, _ version: String = "brain.Event:2") -> [UInt8] {
        var out: [UInt8] = [0x09] + TFRecord.littleEndian(wallTime.bitPattern)
        out += [0x1A] + varint(UInt64(version.utf8.count)) + Array(version.utf8)
        return out
    }

    /// `Event{wall_time, step, summary{value: [{tag, simple_value}]}}`: one summary per step, one value per tag.
    public static func scalars(wallTime: Double, step: Int64, _ values: [(tag: String, value: Float)]) -> [UInt8] {
        var summary: [UInt8] = []
        for (tag, value) in values {
            var v: [UInt8] = [0x0A] + varint(UInt64(tag.utf8.count)) + Array(tag.utf8)
            v += [0x15] + TFRecord.littleEndian(value.bitPattern)
            summary += [0x0A] + varint(UInt64(v.count)) + v
        }
        var out: [UInt8] = [0x09] + TFRecord.littleEndian(wallTime.bitPattern)
        // proto3 leaves a zero step out.
        if step != 0 { out += [0x10] + varint(UInt64(bitPattern: step)) }
        out += [0x2A] + varint(UInt64(summary.count)) + summary
        return out
    }

    static func varint(_ x: UInt64) -> [UInt8] {
        var x = x, out: [UInt8] = []
        repeat {
            let low = UInt8(x & 0x7F)
            x >>= 7
            out.append(x == 0 ? low : low | 0x80)
        } while x != 0
        return out
    }

    public struct DecodeError: Error, Equatable { public let reason: String }

    /// Decodes an Event (skipping fields it does not know, as protobuf readers do).
    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> Event {
        var event = Event()
        var r = Reader(rest: bytes[...])
        while let (field, wire) = try r.key() {
            switch (field, wire) {
            case (1, 1): event.wallTime = Double(bitPattern: try r.fixed64())
            case (2, 0): event.step = Int64(bitPattern: try r.varint())
            case (3, 2): event.fileVersion = String(decoding: try r.field(), as: UTF8.self)
            case (5, 2):
                var s = Reader(rest: try r.field())
                while let (f, w) = try s.key() {
                    guard f == 1, w == 2 else { try s.skip(w); continue }
                    var v = Reader(rest: try s.field())
                    var tag = "", value: Float?
                    while let (vf, vw) = try v.key() {
                        switch (vf, vw) {
                        case (1, 2): tag = String(decoding: try v.field(), as: UTF8.self)
                        case (2, 5): value = Float(bitPattern: try v.fixed32())
                        default: try v.skip(vw)
                        }
                    }
                    if let value { event.scalars.append((tag, value)) }
                }
            default: try r.skip(wire)
            }
        }
        return event
    }

    private struct Reader {
        var rest: ArraySlice<UInt8>

        mutating func key() throws(DecodeError) -> (Int, Int)? {
            guard !rest.isEmpty else { return nil }
            let k = try varint()
            return (Int(k >> 3), Int(k & 7))
        }

        mutating func varint() throws(DecodeError) -> UInt64 {
            var x: UInt64 = 0, shift: UInt64 = 0
            while let b = rest.popFirst() {
                x |= UInt64(b & 0x7F) << shift
                if b & 0x80 == 0 { return x }
                shift += 7
                guard shift < 64 else { break }
            }
            throw DecodeError(reason: "bad varint")
        }

        mutating func fixed(_ n: Int) throws(DecodeError) -> UInt64 {
            guard rest.count >= n else { throw DecodeError(reason: "truncated fixed\(n * 8)") }
            let v = rest.prefix(n).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
            rest = rest.dropFirst(n)
            return v
        }

        mutating func fixed64() throws(DecodeError) -> UInt64 { try fixed(8) }
        mutating func fixed32() throws(DecodeError) -> UInt32 { UInt32(try fixed(4)) }

        mutating func field() throws(DecodeError) -> ArraySlice<UInt8> {
            let n = try varint()
            guard n <= UInt64(rest.count) else { throw DecodeError(reason: "truncated field") }
            let out = rest.prefix(Int(n))
            rest = rest.dropFirst(Int(n))
            return out
        }

        mutating func skip(_ wire: Int) throws(DecodeError) {
            switch wire {
            case 0: _ = try varint()
            case 1: _ = try fixed(8)
            case 2: _ = try field()
            case 5: _ = try fixed(4)
            default: throw DecodeError(reason: "unsupported wire type \(wire)")
            }
        }
    }
}
