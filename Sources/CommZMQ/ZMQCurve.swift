import CZeroMQ

/// A CURVE key pair in Z85 text (40 characters each).
public struct ZMQCurveKeyPair: Sendable, Equatable {
    public let publicKey: String
    public let secretKey: String

    /// A fresh random key pair (needs libzmq built with CURVE, see `ZMQContext.has("curve")`).
    public static func generate() throws -> ZMQCurveKeyPair {
        var pub = [CChar](repeating: 0, count: 41), sec = [CChar](repeating: 0, count: 41)
        if zmq_curve_keypair(&pub, &sec) != 0 { throw ZMQError.last("zmq_curve_keypair") }
        let text = { (chars: [CChar]) in String(decoding: chars.prefix(40).map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        return ZMQCurveKeyPair(publicKey: text(pub), secretKey: text(sec))
    }
}
