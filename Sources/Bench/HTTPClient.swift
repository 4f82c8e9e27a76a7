import Common
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A minimal blocking HTTP/1.1 client over a POSIX socket, one request per connection
/// (`Connection: close`), for `zerotrain bench serve` and the server's tests: unlike URLSession it
/// has no per-host connection limit, runs on the caller's thread, and reports the bytes of a
/// streamed response as they arrive.
public enum HTTPClient {
    public struct Response: Sendable {
        public let status: Int
        /// Header names in lower case.
        public let headers: [String: String]
        /// The body, chunked transfer coding removed.
        public let body: Data
        /// Seconds from sending the request to the first byte of the body.
        public let firstByteSeconds: Double?
        public var text: String { String(decoding: body, as: UTF8.self) }
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    /// Sends `method path` to host:port (IPv4 or IPv6 literal) and reads the whole response.
    /// `onBody` sees the raw body bytes as they arrive (chunk framing included).
    public static func request(host: String, port: UInt16, method: String, path: String, body: Data? = nil,
                               headers: [String: String] = [:], timeout: Double = 60,
                               onBody: ((Data) -> Void)? = nil) throws -> Response {
        let v6 = host.contains(":")
        let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let connected = HTTPAddress(host: host, port: port).withSocketAddress { connect(fd, $0, $1) }
        guard connected == 0 else { throw Failure(description: "connect \(host):\(port): \(String(cString: strerror(errno)))") }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(v6 ? "[\(host)]" : host):\(port)\r\nConnection: close\r\n"
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        if let body { head += "Content-Length: \(body.count)\r\n" }
        let request = Data((head + "\r\n").utf8) + (body ?? Data())
        let start = ContinuousClock.now
        try request.withUnsafeBytes { raw in
            var sent = 0
            while sent < raw.count {
                let n = send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
                if n < 0 && errno == EINTR { continue }
                // The server may answer (413) and close before reading a large body: read its answer.
                if n <= 0 { break }
                sent += n
            }
        }
        var received = Data(), headerEnd: Int?, firstByte: Double?
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw Failure(description: "recv from \(host):\(port): \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            let chunk = Data(buffer[0..<n])
            received += chunk
            if headerEnd == nil, let r = received.range(of: Data("\r\n\r\n".utf8)) {
                headerEnd = r.upperBound
                let bodyPart = received[r.upperBound...]
                if !bodyPart.isEmpty {
                    firstByte = (ContinuousClock.now - start).seconds
                    onBody?(Data(bodyPart))
                }
            } else if headerEnd != nil {
                if firstByte == nil { firstByte = (ContinuousClock.now - start).seconds }
                onBody?(chunk)
            }
        }
        guard let headerEnd else { throw Failure(description: "\(host):\(port) closed the connection without a response") }
        let lines = String(decoding: received[..<(headerEnd - 4)], as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = lines[0].split(separator: " ")
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { throw Failure(description: "bad status line: \(lines[0])") }
        var fields: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var payload = Data(received[headerEnd...])
        if fields["transfer-encoding"]?.lowercased() == "chunked" { payload = try dechunk(payload) }
        return Response(status: status, headers: fields, body: payload, firstByteSeconds: firstByte)
    }

    static func dechunk(_ data: Data) throws -> Data {
        var out = Data(), i = data.startIndex
        while i < data.endIndex {
            guard let lineEnd = data[i...].range(of: Data("\r\n".utf8)) else { throw Failure(description: "bad chunked body") }
            let sizeText = String(decoding: data[i..<lineEnd.lowerBound], as: UTF8.self).split(separator: ";")[0]
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16) else { throw Failure(description: "bad chunk size \(sizeText)") }
            if size == 0 { break }
            let start = lineEnd.upperBound
            guard start + size <= data.endIndex else { throw Failure(description: "truncated chunk") }
            out += data[start..<(start + size)]
            i = start + size + 2
        }
        return out
    }
}
