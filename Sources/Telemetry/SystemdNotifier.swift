import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// systemd's notify protocol without libsystemd (sd_notify(3)): one datagram of newline-separated
/// `KEY=VALUE` lines to the AF_UNIX socket named by `$NOTIFY_SOCKET` (a leading `@` is the
/// abstract namespace). Does nothing when the variable is unset, so a daemon calls it always.
/// The watchdog is on when `$WATCHDOG_USEC` is set (and `$WATCHDOG_PID`, if set, is this
/// process): `watchdog()` then pings at most every WATCHDOG_USEC/2, and the training loop calls
/// it after each step, so a hung step stops the pings.
public final class SystemdNotifier: Sendable {
    /// The socket address bytes (the path, or NUL + the abstract name).
    private let address: [UInt8]?
    /// Seconds between pings (half the watchdog timeout); nil = no watchdog.
    public let watchdogInterval: Double?
    private let lastPing = Mutex(0.0)

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        if var p = environment["NOTIFY_SOCKET"].map({ Array($0.utf8) }), let first = p.first, first == UInt8(ascii: "@") || first == UInt8(ascii: "/") {
            if first == UInt8(ascii: "@") { p[0] = 0 }
            address = p
        } else {
            address = nil
        }
        if address != nil, let usec = environment["WATCHDOG_USEC"].flatMap(Double.init), usec > 0,
           environment["WATCHDOG_PID"].map({ Int32($0) == getpid() }) ?? true {
            watchdogInterval = usec / 2e6
        } else {
            watchdogInterval = nil
        }
    }

    public var isEnabled: Bool { address != nil }

    /// Sends `lines` (`READY=1`, `STATUS=…`) in one datagram; false if not delivered (or not under systemd).
    @discardableResult
    public func notify(_ lines: String...) -> Bool { send(lines.joined(separator: "\n"), wait: true) }

    /// `WATCHDOG=1`, if the watchdog is on and half its interval has passed since the last ping.
    public func watchdog(now: Double = ProcessInfo.processInfo.systemUptime) {
        guard let interval = watchdogInterval else { return }
        let due = lastPing.withLock { last in
            guard now - last >= interval || last == 0 else { return false }
            last = now
            return true
        }
        if due { send("WATCHDOG=1", wait: false) }
    }

    /// The receiver's queue is short (net.unix.max_dgram_qlen, often 10): a state change waits
    /// for room for up to a second, a watchdog ping is dropped rather than hold the loop up.
    @discardableResult
    private func send(_ message: String, wait: Bool) -> Bool {
        guard let address else { return false }
        var a = sockaddr_un()
        a.sun_family = sa_family_t(AF_UNIX)
        guard address.count < MemoryLayout.size(ofValue: a.sun_path) else { return false }
        withUnsafeMutableBytes(of: &a.sun_path) { d in
            for (i, b) in address.enumerated() { d[i] = b }
        }
        // The exact length: an abstract name is not NUL-terminated.
        let length = socklen_t(MemoryLayout<sa_family_t>.size + address.count + (address[0] == 0 ? 0 : 1))
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let flags = Int32(MSG_NOSIGNAL) | (wait ? 0 : Int32(MSG_DONTWAIT))
        let bytes = Array(message.utf8)
        let sent = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, bytes, bytes.count, flags, $0, length) }
        }
        return sent == bytes.count
    }
}
