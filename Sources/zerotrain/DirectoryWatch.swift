import Cluster
import Foundation
import Glibc

/// Calls `changed` whenever a file in one of the watched directories is created, written or
/// moved in (Linux inotify), from a thread of its own that sleeps in poll(2) until the kernel
/// has an event: how the sweep follows its trials' metrics.jsonl without polling the files.
final class DirectoryWatch: @unchecked Sendable {
    // Safe: the descriptors are set once in init; the thread only reads them; `close` runs once.
    private let inotify: Int32
    private let wakeRead: Int32, wakeWrite: Int32
    private let finished = DispatchSemaphore(value: 0)

    init(changed: @escaping @Sendable () -> Void) throws {
        inotify = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        guard inotify >= 0 else { throw ClusterError(.runtime, "cannot watch the trials' files: inotify_init1: \(String(cString: strerror(errno)))") }
        var pipeEnds: [Int32] = [0, 0]
        guard pipe(&pipeEnds) == 0 else {
            Glibc.close(inotify)
            throw ClusterError(.runtime, "cannot watch the trials' files: pipe: \(String(cString: strerror(errno)))")
        }
        (wakeRead, wakeWrite) = (pipeEnds[0], pipeEnds[1])
        for end in pipeEnds { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        let (fd, wake, finished) = (inotify, wakeRead, finished)
        let thread = Thread {
            var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: wake, events: Int16(POLLIN), revents: 0)]
            var buffer = [UInt8](repeating: 0, count: 16 << 10)
            while true {
                if poll(&fds, 2, -1) < 0 {
                    if errno == EINTR { continue }
                    break
                }
                if fds[1].revents != 0 { break }
                guard fds[0].revents != 0 else { continue }
                // Drain what is queued (the events' names do not matter: the reader checks its files).
                while buffer.withUnsafeMutableBytes({ read(fd, $0.baseAddress, $0.count) }) > 0 {}
                changed()
            }
            finished.signal()
        }
        thread.name = "zerotrain-directory-watch"
        thread.start()
    }

    /// Watches `directory` (which must exist) from now on.
    func watch(_ directory: URL) throws {
        let mask = UInt32(IN_CREATE | IN_MODIFY | IN_MOVED_TO | IN_CLOSE_WRITE)
        guard inotify_add_watch(inotify, directory.path, mask) >= 0 else {
            throw ClusterError(.runtime, "cannot watch \(directory.path): \(String(cString: strerror(errno)))")
        }
    }

    /// Stops the thread and closes the descriptors.
    func close() {
        var one: UInt8 = 1
        _ = write(wakeWrite, &one, 1)
        finished.wait()
        for fd in [inotify, wakeRead, wakeWrite] { Glibc.close(fd) }
    }
}
