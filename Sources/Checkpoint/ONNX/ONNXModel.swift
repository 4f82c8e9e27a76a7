import Foundation

/// An ONNX model (onnx.proto3's ModelProto) held as a graph of standard operators plus its
/// initializers, written straight in the protobuf wire format (no protobuf library).
///
/// Initializers carry fp32 or int64 data; a weight's values are produced when the file is
/// written (`ONNXModel.Payload.weight`), one tensor at a time. With `externalData` every weight
/// goes to one side file instead (ONNX's external-data convention: `location`, `offset`, `length`
/// entries and `data_location = EXTERNAL`), which models above protobuf's 2 GB limit need.
public struct ONNXModel {
    /// onnx.proto TensorProto.DataType.
    public enum DataType: Int, Sendable { case float = 1, int64 = 7, bool = 9 }

    public enum Attribute {
        case int(String, Int)
        case float(String, Float)
        case ints(String, [Int])
        /// A one-element tensor attribute (ConstantOfShape's `value`).
        case floatTensor(String, Float)
    }

    public struct Node {
        public let op: String
        public let inputs: [String]
        public let outputs: [String]
        public let name: String
        public let attributes: [Attribute]
    }

    /// A dimension of a graph input or output: fixed, or named (dynamic).
    public enum Dim { case fixed(Int), named(String) }

    public struct ValueInfo {
        public let name: String
        public let type: DataType
        public let shape: [Dim]
    }

    public enum Payload {
        case floats([Float])
        case int64s([Int])
        /// `count` floats written into the buffer by the closure when the file is written.
        case weight(count: Int, fill: (UnsafeMutablePointer<Float>) throws -> Void)
    }

    public struct Initializer {
        public let name: String
        public let dims: [Int]
        public let payload: Payload

        var type: DataType { if case .int64s = payload { return .int64 } else { return .float } }
        var byteCount: Int {
            switch payload {
            case .floats(let v): 4 * v.count
            case .int64s(let v): 8 * v.count
            case .weight(let count, _): 4 * count
            }
        }
    }

    public var graphName = "zerotrain"
    public var opset = 17
    /// IR version 8 is the one of opset 17 (onnx 1.12).
    public var irVersion = 8
    public var producerVersion = "1"
    public private(set) var nodes: [Node] = []
    public private(set) var initializers: [Initializer] = []
    public var inputs: [ValueInfo] = []
    public var outputs: [ValueInfo] = []
    private var counter = 0
    private var constants: [String: String] = [:]

    public init() {}

    /// Adds a node; returns its output names (`outputCount` fresh names, or `names` when given).
    @discardableResult
    public mutating func node(_ op: String, _ inputs: [String], _ attributes: [Attribute] = [], outputs outputCount: Int = 1,
                              names: [String]? = nil) -> [String] {
        counter += 1
        let outs = names ?? (0..<outputCount).map { "\(op.lowercased())_\(counter)" + (outputCount > 1 ? "_\($0)" : "") }
        nodes.append(Node(op: op, inputs: inputs, outputs: outs, name: "\(op)_\(counter)", attributes: attributes))
        return outs
    }

    /// As `node`, with one output.
    public mutating func op(_ op: String, _ inputs: [String], _ attributes: [Attribute] = [], name: String? = nil) -> String {
        node(op, inputs, attributes, names: name.map { [$0] })[0]
    }

    public mutating func initializer(_ name: String, dims: [Int], _ payload: Payload) {
        initializers.append(Initializer(name: name, dims: dims, payload: payload))
    }

    /// A small int64 constant (an initializer, shared by value); a scalar when `scalar`.
    public mutating func ints(_ values: [Int], scalar: Bool = false) -> String {
        let key = "i\(scalar ? "s" : "")\(values)"
        if let name = constants[key] { return name }
        let name = "const_\(constants.count)"
        constants[key] = name
        initializer(name, dims: scalar ? [] : [values.count], .int64s(values))
        return name
    }

    /// A float scalar constant.
    public mutating func float(_ value: Float) -> String {
        let key = "f\(value.bitPattern)"
        if let name = constants[key] { return name }
        let name = "const_\(constants.count)"
        constants[key] = name
        initializer(name, dims: [], .floats([value]))
        return name
    }

    /// Bytes of all initializer data.
    public var initializerBytes: Int { initializers.reduce(0) { $0 + $1.byteCount } }

    // MARK: writing

    /// Writes the model to `url`; with `externalData`, the weights go to `<file name>.data` beside it.
    /// Returns the files written.
    @discardableResult
    public func write(to url: URL, externalData: Bool) throws -> [URL] {
        let dataName = url.lastPathComponent + ".data"
        let dataURL = url.deletingLastPathComponent().appendingPathComponent(dataName)
        var side: FileHandle?
        if externalData {
            _ = FileManager.default.createFile(atPath: dataURL.path, contents: nil)
            side = try FileHandle(forWritingTo: dataURL)
        } else if FileManager.default.fileExists(atPath: dataURL.path) {
            try FileManager.default.removeItem(at: dataURL)
        }
        defer { try? side?.close() }
        var sideOffset = 0
        var scratch = [Float]()
        var model = ProtobufWriter()
        model.int(1, irVersion)
        model.string(2, "zerotrain")
        model.string(3, producerVersion)
        var graphError: Error?
        model.message(7) { g in
            for n in nodes { g.message(1) { Self.encode(n, into: &$0) } }
            g.string(2, graphName)
            for i in initializers {
                g.message(5) { t in
                    for d in i.dims { t.int(1, d) }
                    t.int(2, i.type.rawValue)
                    t.string(8, i.name)
                    do {
                        let raw = try Self.rawBytes(i, scratch: &scratch)
                        if let file = side, case .weight = i.payload {
                            let padding = (64 - sideOffset % 64) % 64
                            if padding > 0 { try file.write(contentsOf: Data(count: padding)) }
                            sideOffset += padding
                            try file.write(contentsOf: raw)
                            for (key, value) in [("location", dataName), ("offset", "\(sideOffset)"), ("length", "\(raw.count)")] {
                                t.message(13) { e in e.string(1, key); e.string(2, value) }
                            }
                            t.int(14, 1)
                            sideOffset += raw.count
                        } else {
                            t.bytes(9, raw)
                        }
                    } catch { graphError = graphError ?? error }
                }
            }
            for v in inputs { g.message(11) { Self.encode(v, into: &$0) } }
            for v in outputs { g.message(12) { Self.encode(v, into: &$0) } }
        }
        if let graphError { throw graphError }
        model.message(8) { o in o.string(1, ""); o.int(2, opset) }
        guard model.bytes.count < Int(Int32.max) else {
            throw CheckpointError(.invalidArgument, "the ONNX model is \(model.bytes.count) bytes, above protobuf's 2 GB limit: write its weights as external data")
        }
        try Data(model.bytes).write(to: url)
        return externalData ? [url, dataURL] : [url]
    }

    private static func rawBytes(_ i: Initializer, scratch: inout [Float]) throws -> [UInt8] {
        switch i.payload {
        case .floats(let v): return v.withUnsafeBytes { Array($0) }
        case .int64s(let v): return v.map { Int64($0).littleEndian }.withUnsafeBytes { Array($0) }
        case .weight(let count, let fill):
            if scratch.count < count { scratch = [Float](repeating: 0, count: count) }
            try scratch.withUnsafeMutableBufferPointer { try fill($0.baseAddress!) }
            return scratch.withUnsafeBytes { Array($0.prefix(4 * count)) }
        }
    }

    private static func encode(_ n: Node, into w: inout ProtobufWriter) {
        for i in n.inputs { w.string(1, i) }
        for o in n.outputs { w.string(2, o) }
        w.string(3, n.name)
        w.string(4, n.op)
        for a in n.attributes {
            w.message(5) { p in
                switch a {
                case .int(let name, let v): p.string(1, name); p.int(3, v); p.int(20, 2)
                case .float(let name, let v): p.string(1, name); p.float(2, v); p.int(20, 1)
                case .ints(let name, let v): p.string(1, name); for x in v { p.int(8, x) }; p.int(20, 7)
                case .floatTensor(let name, let v):
                    p.string(1, name)
                    p.message(5) { t in t.int(1, 1); t.int(2, DataType.float.rawValue); t.bytes(9, withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) }) }
                    p.int(20, 4)
                }
            }
        }
    }

    private static func encode(_ v: ValueInfo, into w: inout ProtobufWriter) {
        w.string(1, v.name)
        w.message(2) { type in
            type.message(1) { tensor in
                tensor.int(1, v.type.rawValue)
                tensor.message(2) { shape in
                    for d in v.shape {
                        shape.message(1) { dim in
                            switch d {
                            case .fixed(let n): dim.int(1, n)
                            case .named(let s): dim.string(2, s)
                            }
                        }
                    }
                }
            }
        }
    }
}
