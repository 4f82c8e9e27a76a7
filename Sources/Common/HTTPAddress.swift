#if canImport(Glibc)
import Glibc
#endif

/// The `ADDR:PORT` an HTTP server listens on (the coordinator's `--http`, `zerotrain serve
/// --listen`): an IPv4 or IPv6 (`[::1]:8080`) address; a bare `PORT`, `:PORT` or `localhost:PORT`
/// is loopback.
public struct HTTPAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    /// What is wrong with an address, phrased to follow "--flag TEXT: ".
    public struct Problem: Error, Sendable {
        public let reason: String
    }

    public init(parsing text: String) throws(Problem) {
        var host = "127.0.0.1", portText = text
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            host = String(text[text.index(after: text.startIndex)..<close])
            portText = String(text[text.index(after: close)...].drop { $0 == ":" })
        } else if let colon = text.lastIndex(of: ":") {
            host = String(text[..<colon])
            portText = String(text[text.index(after: colon)...])
            if host.isEmpty || host == "localhost" { host = "127.0.0.1" }
        }
        guard let port = UInt16(portText) else {
            throw Problem(reason: "expected ADDR:PORT (e.g. 127.0.0.1:8080, [::1]:8080 or 0.0.0.0:8080), port 0–65535")
        }
        var v4 = in_addr(), v6 = in6_addr()
        guard inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1 else {
            throw Problem(reason: "\(host) is not an IPv4 or IPv6 address")
        }
        self.host = host
        self.port = port
    }

    /// An address already known to be an IPv4 or IPv6 literal (no parsing, no check).
    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    public var isIPv6: Bool { host.contains(":") }

    /// Calls `body` with the address as a `sockaddr` (`sockaddr_in` or `sockaddr_in6`) and its length,
    /// for bind(2) or connect(2).
    public func withSocketAddress<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        if isIPv6 {
            var a = sockaddr_in6()
            a.sin6_family = sa_family_t(AF_INET6)
            a.sin6_port = port.bigEndian
            inet_pton(AF_INET6, host, &a.sin6_addr)
            return withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        inet_pton(AF_INET, host, &a.sin_addr)
        return withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    }
    public var description: String { isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Why the address cannot be bound now (in use, not this host's), or nil: a clear error
    /// before the server's own bind, whose failure reaches only its task.
    public func bindProblem() -> String? {
        let fd = socket(isIPv6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard withSocketAddress({ bind(fd, $0, $1) }) != 0 else { return nil }
        return errno == EADDRINUSE ? "the port is in use (pick another port, or stop the process holding it)"
            : errno == EADDRNOTAVAIL ? "\(host) is not an address of this host" : String(cString: strerror(errno))
    }
}
