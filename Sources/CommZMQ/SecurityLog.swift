/// The security log of a handler thread (the ZAP handler's refusals, the handshake watcher's
/// failed handshakes): "security: …" lines, at most `burst` a second; the rest are counted and
/// summed up in one line a second later, so that a flood of bad peers cannot flood the log.
struct SecurityLog {
    let burst: Int
    /// What the summary line counts: "refusal(s)", "failed handshake(s)".
    let what: String
    let write: @Sendable (String) -> Void
    private var window = (start: ContinuousClock.now, lines: 0, suppressed: 0)

    init(burst: Int, what: String, write: @escaping @Sendable (String) -> Void) {
        self.burst = burst
        self.what = what
        self.write = write
    }

    mutating func callAsFunction(_ line: String) {
        let now = ContinuousClock.now
        if window.start.duration(to: now) >= .seconds(1) {
            if window.suppressed > 0 { write("security: \(window.suppressed) more \(what) not logged in the last second") }
            window = (now, 0, 0)
        }
        if window.lines < burst {
            window.lines += 1
            write("security: " + line)
        } else {
            window.suppressed += 1
        }
    }
}
