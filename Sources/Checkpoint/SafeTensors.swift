import Foundation

/// Element types of the safetensors format that ZeroTrain reads or writes.
public enum SafeTensorsDType: String, Sendable, CaseIterable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16", i32 = "I32", i64 = "I64", u8 = "U8", i8 = "I8", f64 = "F64"

    public var byteSize: Int {
        switch self {
        case .f32, .i32: 4
        case .f16, .bf16: 2
        case .i64, .f64: 8
        case .u8, .i8: 1
        }
    }

    /// The reference writer's order (increasing alignment); files list larger types first.
    var alignmentRank: Int {
        switch self {
        case .u8: 0
        case .i8: 1
        case .f16: 2
        case .bf16: 3
        case .i32: 4
        case .f32: 5
        case .f64: 6
        case .i64: 7
        }
    }
}

/// A safetensors file held in memory (memory-mapped when large).
///
/// Layout: u64 little-endian header length N, N bytes of JSON
/// (`{"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}`),
/// then the data buffer. Every field is validated before any tensor byte is touched.
public struct SafeTensorsFile: Sendable {
    public struct Entry: Sendable {
        public let name: String
        public let dtype: SafeTensorsDType
        public let shape: [Int]
        /// Byte range inside the data buffer.
        public let begin: Int
        public let end: Int
        public var count: Int { shape.reduce(1, *) }
    }

    public let path: String
    public let metadata: [String: String]
    /// Entries in file order.
    public let entries: [Entry]
    private let index: [String: Int]
    private let bytes: Data
    private let dataStart: Int

    public init(contentsOf url: URL) throws {
        try self.init(data: CheckpointStore.readData(url, options: .alwaysMapped), path: url.path)
    }

    public init(data: Data, path: String = "<memory>") throws {
        self.path = path
        self.bytes = data
        func bad(_ why: String) -> CheckpointError { CheckpointError(.malformed, "\(path): not a valid safetensors file: \(why)") }
        guard data.count >= 8 else { throw bad("file is \(data.count) bytes, shorter than the 8-byte header length") }
        let headerLength = data.withUnsafeBytes { raw -> UInt64 in
            UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        }
        guard headerLength <= 100_000_000, Int(headerLength) <= data.count - 8 else {
            throw bad("header length \(headerLength) exceeds the file size \(data.count) (truncated file?)")
        }
        let n = Int(headerLength)
        dataStart = 8 + n
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n)))
        } catch {
            throw bad("header is not JSON")
        }
        guard let object = json as? [String: Any] else { throw bad("header is not a JSON object") }
        var metadata: [String: String] = [:]
        var entries: [Entry] = []
        for (name, value) in object {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else { throw bad("__metadata__ is not an object") }
                for (k, v) in m {
                    guard let s = v as? String else { throw bad("__metadata__.\(k) is not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard let info = value as? [String: Any] else { throw bad("entry \(name) is not an object") }
            guard let dtypeName = info["dtype"] as? String else { throw bad("entry \(name) has no dtype") }
            guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
                throw CheckpointError(.unsupportedDType, "\(path): tensor \(name) has dtype \(dtypeName); supported: F32, BF16, F16, I32, I64, U8, I8, F64")
            }
            guard let shapeAny = info["shape"] as? [Any] else { throw bad("entry \(name) has no shape") }
            var shape: [Int] = []
            for d in shapeAny {
                guard let v = (d as? NSNumber)?.intValue, v >= 0 else { throw bad("entry \(name) has an invalid shape") }
                shape.append(v)
            }
            guard let offs = info["data_offsets"] as? [Any], offs.count == 2,
                  let b = (offs[0] as? NSNumber)?.intValue, let e = (offs[1] as? NSNumber)?.intValue,
                  b >= 0, e >= b else { throw bad("entry \(name) has invalid data_offsets") }
            var elements = 1
            for d in shape {
                let (p, overflow) = elements.multipliedReportingOverflow(by: d)
                guard !overflow else { throw bad("entry \(name) shape overflows") }
                elements = p
            }
            guard e - b == elements * dtype.byteSize else {
                throw bad("entry \(name): \(e - b) bytes for shape \(shape) of \(dtypeName)")
            }
            entries.append(Entry(name: name, dtype: dtype, shape: shape, begin: b, end: e))
        }
        entries.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        var cursor = 0
        for e in entries {
            guard e.begin == cursor else { throw bad("tensor \(e.name) starts at \(e.begin), expected \(cursor) (holes or overlaps)") }
            cursor = e.end
        }
        guard dataStart + cursor == data.count else {
            throw bad("data ends at byte \(dataStart + cursor) but the file has \(data.count) bytes (truncated or padded file)")
        }
        self.metadata = metadata
        self.entries = entries
        var index: [String: Int] = [:]
        for (i, e) in entries.enumerated() { index[e.name] = i }
        self.index = index
    }

    public var names: [String] { entries.map(\.name) }

    public func entry(_ name: String) -> Entry? { index[name].map { entries[$0] } }

    private func require(_ name: String) throws -> Entry {
        guard let e = entry(name) else { throw CheckpointError(.missingTensor, "\(path): tensor \(name) is missing") }
        return e
    }

    /// Reads a floating-point tensor (F32, BF16, F16 or F64) as Float into `dst`, which must
    /// hold exactly its elements; `shape`, when given, must match.
    public func read(_ name: String, into dst: UnsafeMutableBufferPointer<Float>, shape: [Int]? = nil) throws {
        let e = try require(name)
        if let shape, shape != e.shape {
            throw CheckpointError(.shapeMismatch, "\(path): tensor \(name) has shape \(e.shape), expected \(shape)")
        }
        guard e.count == dst.count else {
            throw CheckpointError(.shapeMismatch, "\(path): tensor \(name) has \(e.count) elements, expected \(dst.count)")
        }
        let start = dataStart + e.begin
        bytes.withUnsafeBytes { raw in
            let base = raw.baseAddress! + start
            switch e.dtype {
            case .f32:
                for i in 0..<e.count { dst[i] = Float(bitPattern: UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
            case .bf16:
                for i in 0..<e.count {
                    let h = UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                    dst[i] = Float(bitPattern: UInt32(h) << 16)
                }
            case .f16:
                for i in 0..<e.count {
                    dst[i] = halfToFloat(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
                }
            case .f64:
                for i in 0..<e.count { dst[i] = Float(Double(bitPattern: UInt64(littleEndian: base.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
            case .i32, .i64, .u8, .i8:
                break
            }
        }
        if ![.f32, .bf16, .f16, .f64].contains(e.dtype) {
            throw CheckpointError(.unsupportedDType, "\(path): tensor \(name) is \(e.dtype.rawValue), expected a floating-point type")
        }
    }

    /// A floating-point tensor as an array.
    public func floats(_ name: String) throws -> [Float] {
        let e = try require(name)
        var out = [Float](repeating: 0, count: e.count)
        try out.withUnsafeMutableBufferPointer { try read(name, into: $0) }
        return out
    }

    /// An I8 tensor's values, copied into `dst` (exactly its elements; `shape`, when given, must match).
    public func read(_ name: String, into dst: UnsafeMutableBufferPointer<Int8>, shape: [Int]? = nil) throws {
        let e = try require(name)
        guard e.dtype == .i8 else {
            throw CheckpointError(.unsupportedDType, "\(path): tensor \(name) is \(e.dtype.rawValue), expected I8")
        }
        if let shape, shape != e.shape {
            throw CheckpointError(.shapeMismatch, "\(path): tensor \(name) has shape \(e.shape), expected \(shape)")
        }
        guard e.count == dst.count else {
            throw CheckpointError(.shapeMismatch, "\(path): tensor \(name) has \(e.count) elements, expected \(dst.count)")
        }
        let start = dataStart + e.begin
        bytes.withUnsafeBytes { raw in
            UnsafeMutableRawBufferPointer(dst).copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[start..<(start + e.count)]))
        }
    }

    /// An integer tensor (I32 or I64) as Int32 values.
    public func int32s(_ name: String) throws -> [Int32] {
        let e = try require(name)
        let start = dataStart + e.begin
        switch e.dtype {
        case .i32:
            return bytes.withUnsafeBytes { raw in
                (0..<e.count).map { Int32(littleEndian: raw.loadUnaligned(fromByteOffset: start + 4 * $0, as: Int32.self)) }
            }
        case .i64:
            return try bytes.withUnsafeBytes { raw in
                try (0..<e.count).map {
                    let v = Int64(littleEndian: raw.loadUnaligned(fromByteOffset: start + 8 * $0, as: Int64.self))
                    guard let x = Int32(exactly: v) else { throw CheckpointError(.malformed, "\(path): \(name) value \(v) does not fit Int32") }
                    return x
                }
            }
        default:
            throw CheckpointError(.unsupportedDType, "\(path): tensor \(name) is \(e.dtype.rawValue), expected I32 or I64")
        }
    }
}

/// IEEE half → single precision.
@inlinable
public func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exp = Int((h >> 10) & 0x1F)
    let mant = UInt32(h & 0x3FF)
    if exp == 0 {
        if mant == 0 { return Float(bitPattern: sign) }
        let v = Float(mant) * (1.0 / 16_777_216.0)   // mant · 2^-24
        return sign != 0 ? -v : v
    }
    if exp == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (mant << 13)) }
    return Float(bitPattern: sign | UInt32(exp - 15 + 127) << 23 | (mant << 13))
}

/// Builds a safetensors file: F32 and I32 tensors, written in the reference writer's order
/// (larger dtypes first, then by name) with the JSON header padded to a multiple of 8 and
/// `{"format": "pt"}` metadata so Hugging Face loaders accept it.
public struct SafeTensorsWriter {
    private struct Item { let name: String; let dtype: SafeTensorsDType; let shape: [Int]; let bytes: Data }
    private var items: [Item] = []
    public var metadata: [String: String] = ["format": "pt"]

    public init() {}

    public mutating func add(_ name: String, shape: [Int], floats: UnsafeBufferPointer<Float>) {
        precondition(shape.reduce(1, *) == floats.count, "\(name): shape \(shape) does not match \(floats.count) elements")
        var d = Data(count: floats.count * 4)
        d.withUnsafeMutableBytes { raw in
            for i in 0..<floats.count { raw.storeBytes(of: floats[i].bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self) }
        }
        items.append(Item(name: name, dtype: .f32, shape: shape, bytes: d))
    }

    public mutating func add(_ name: String, shape: [Int], floats: [Float]) {
        floats.withUnsafeBufferPointer { add(name, shape: shape, floats: $0) }
    }

    public mutating func add(_ name: String, shape: [Int], int32s: [Int32]) {
        precondition(shape.reduce(1, *) == int32s.count, "\(name): shape \(shape) does not match \(int32s.count) elements")
        var d = Data(count: int32s.count * 4)
        d.withUnsafeMutableBytes { raw in
            for i in 0..<int32s.count { raw.storeBytes(of: int32s[i].littleEndian, toByteOffset: 4 * i, as: Int32.self) }
        }
        items.append(Item(name: name, dtype: .i32, shape: shape, bytes: d))
    }

    public mutating func add(_ name: String, shape: [Int], int8s: UnsafeBufferPointer<Int8>) {
        precondition(shape.reduce(1, *) == int8s.count, "\(name): shape \(shape) does not match \(int8s.count) elements")
        items.append(Item(name: name, dtype: .i8, shape: shape, bytes: Data(buffer: int8s)))
    }

    /// The complete file.
    public func serialized() -> Data {
        let sorted = items.sorted { ($1.dtype.alignmentRank, $0.name) < ($0.dtype.alignmentRank, $1.name) }
        var header = "{"
        if !metadata.isEmpty {
            let pairs = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }
            header += "\"__metadata__\":{\(pairs.joined(separator: ","))}"
        }
        var offset = 0
        for (i, item) in sorted.enumerated() {
            if i > 0 || !metadata.isEmpty { header += "," }
            let end = offset + item.bytes.count
            header += "\(jsonString(item.name)):{\"dtype\":\"\(item.dtype.rawValue)\",\"shape\":[\(item.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(end)]}"
            offset = end
        }
        header += "}"
        var headerBytes = Data(header.utf8)
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }
        var out = Data()
        out.reserveCapacity(8 + headerBytes.count + offset)
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(headerBytes)
        for item in sorted { out.append(item.bytes) }
        return out
    }

    /// Writes the file atomically (temporary file, then rename).
    public func write(to url: URL) throws {
        do {
            try serialized().write(to: url, options: .atomic)
        } catch {
            throw CheckpointError(.io, "cannot write \(url.path)", cause: error)
        }
    }

    private func jsonString(_ s: String) -> String { safeTensorsJSONString(s) }
}
