import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Writes one safetensors file tensor by tensor, for files larger than memory: the header is
/// computed from the tensors' names, dtypes and shapes and written first, then each tensor's data
/// in the order given (`append`), converted from Float to the tensor's dtype through one fixed
/// write buffer. The file is written as `NAME.tmp` and renamed by `finish()` (or `complete()`
/// then `commit()`); a writer dropped before that removes its temporary file.
///
/// The header is what Hugging Face loaders expect: `{"format": "pt"}` metadata first, tensors in
/// data order with contiguous `data_offsets`, JSON padded with spaces to a multiple of 8 bytes.
public final class SafeTensorsStreamWriter {
    /// One tensor of the file.
    public struct Tensor: Sendable, Equatable {
        public let name: String
        public let dtype: SafeTensorsDType
        public let shape: [Int]
        public var count: Int { shape.reduce(1, *) }
        public var byteCount: Int { count * dtype.byteSize }

        public init(name: String, dtype: SafeTensorsDType, shape: [Int]) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
        }
    }

    /// Element types `append` can produce from Float.
    public static let writableDTypes: Set<SafeTensorsDType> = [.f32, .bf16]

    public let url: URL
    public let tensors: [Tensor]
    private let tempPath: String
    private var fd: Int32
    private var next = 0
    private var buffer: UnsafeMutableRawBufferPointer
    private var used = 0
    private var committed = false

    /// The padded JSON header (without the 8-byte length) for `tensors` in this order.
    public static func header(for tensors: [Tensor], metadata: [String: String] = ["format": "pt"]) -> Data {
        var parts: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.keys.sorted().map { "\(safeTensorsJSONString($0)):\(safeTensorsJSONString(metadata[$0]!))" }
            parts.append("\"__metadata__\":{\(pairs.joined(separator: ","))}")
        }
        var offset = 0
        for t in tensors {
            let end = offset + t.byteCount
            parts.append("\(safeTensorsJSONString(t.name)):{\"dtype\":\"\(t.dtype.rawValue)\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(end)]}")
            offset = end
        }
        var bytes = Data(("{" + parts.joined(separator: ",") + "}").utf8)
        while bytes.count % 8 != 0 { bytes.append(0x20) }
        return bytes
    }

    /// Opens `url`'s temporary file and writes the header. `bufferBytes`: size of the write buffer.
    public init(to url: URL, tensors: [Tensor], metadata: [String: String] = ["format": "pt"], bufferBytes: Int = 4 << 20) throws {
        precondition(tensors.allSatisfy { Self.writableDTypes.contains($0.dtype) }, "SafeTensorsStreamWriter writes F32 and BF16 only")
        precondition(bufferBytes >= 64, "write buffer too small")
        self.url = url
        self.tensors = tensors
        self.tempPath = url.path + ".tmp"
        fd = open(tempPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        buffer = .allocate(byteCount: bufferBytes, alignment: 64)
        guard fd >= 0 else {
            let err = errno
            throw CheckpointError(.io, "cannot create \(tempPath): \(String(cString: strerror(err))) (errno \(err))")
        }
        let header = Self.header(for: tensors, metadata: metadata)
        var prefix = Data()
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { prefix.append(contentsOf: $0) }
        prefix.append(header)
        try prefix.withUnsafeBytes { try writeFully($0) }
    }

    deinit {
        releaseBuffer()
        if fd >= 0 { close(fd) }
        if !committed { unlink(tempPath) }
    }

    /// The data of the next tensor, `tensors[k].count` values, converted to its dtype.
    public func append(_ values: UnsafeBufferPointer<Float>) throws {
        precondition(fd >= 0, "append after finish")
        precondition(next < tensors.count, "more tensors appended than the header lists")
        let t = tensors[next]
        precondition(values.count == t.count, "\(t.name): \(values.count) values for shape \(t.shape)")
        let size = t.dtype.byteSize
        var i = 0
        while i < values.count {
            if used == buffer.count { try flush() }
            let n = min(values.count - i, (buffer.count - used) / size)
            if n == 0 { try flush(); continue }
            let dst = buffer.baseAddress! + used
            switch t.dtype {
            case .f32:
                for j in 0..<n { dst.storeBytes(of: values[i + j].bitPattern.littleEndian, toByteOffset: 4 * j, as: UInt32.self) }
            case .bf16:
                for j in 0..<n { dst.storeBytes(of: floatToBFloat16(values[i + j]).littleEndian, toByteOffset: 2 * j, as: UInt16.self) }
            default:
                preconditionFailure("unreachable: dtype checked in init")
            }
            used += n * size
            i += n
        }
        next += 1
    }

    /// Writes what is buffered, checks that every tensor was appended, and renames the file into place.
    public func finish() throws {
        try complete()
        try commit()
    }

    /// Writes what is buffered, checks that every tensor was appended, syncs and closes the
    /// temporary file; `commit()` then renames it (so several files can be renamed together once
    /// all are complete). Dropped before `commit()`, the writer removes the temporary file.
    public func complete() throws {
        precondition(next == tensors.count, "\(tensors.count - next) tensors were not appended")
        guard fd >= 0 else { return }
        try flush()
        releaseBuffer()
        if fsync(fd) != 0 { throw ioError("cannot write") }
        let closed = close(fd)
        fd = -1
        if closed != 0 { throw ioError("cannot write") }
    }

    private func releaseBuffer() {
        if buffer.baseAddress != nil { buffer.deallocate() }
        buffer = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    }

    /// Renames the completed temporary file to `url`.
    public func commit() throws {
        precondition(fd < 0 && next == tensors.count, "commit before complete")
        guard !committed else { return }
        if rename(tempPath, url.path) != 0 { throw ioError("cannot rename \(tempPath) to") }
        committed = true
    }

    private func flush() throws {
        guard used > 0 else { return }
        try writeFully(UnsafeRawBufferPointer(start: buffer.baseAddress, count: used))
        used = 0
    }

    private func writeFully(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw ioError("cannot write")
            }
            done += n
        }
    }

    private func ioError(_ what: String) -> CheckpointError {
        let err = errno
        return CheckpointError(.io, "\(what) \(url.path): \(String(cString: strerror(err))) (errno \(err))")
    }
}

/// fp32 → bfloat16 bits, rounding to nearest with ties to even; NaN stays a (quiet) NaN.
/// The same rule as the bf16 gradient wire format (Comm's `BFloat16.encode`).
@inline(__always)
public func floatToBFloat16(_ value: Float) -> UInt16 {
    let bits = value.bitPattern
    if value.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) | 0x40 }
    let rounded = bits &+ 0x7FFF &+ ((bits >> 16) & 1)
    return UInt16(truncatingIfNeeded: rounded >> 16)
}

/// A JSON string literal for a safetensors header.
func safeTensorsJSONString(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        default:
            if scalar.value < 0x20 { out += String(format: "\\u%04x", scalar.value) } else { out.unicodeScalars.append(scalar) }
        }
    }
    return out + "\""
}
