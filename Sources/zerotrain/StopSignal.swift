import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Set by SIGINT/SIGTERM; the run checkpoints at the next update boundary and exits.
nonisolated(unsafe) private var stopSignal: sig_atomic_t = 0

/// Catches SIGINT and SIGTERM, and unblocks them: a parent may have spawned us with them
/// blocked (Foundation's Process does), which would make the signals pending forever.
func installStopHandlers() {
    signal(SIGINT) { _ in stopSignal = 1 }
    signal(SIGTERM) { _ in stopSignal = 1 }
    var set = sigset_t()
    sigemptyset(&set)
    sigaddset(&set, SIGINT)
    sigaddset(&set, SIGTERM)
    pthread_sigmask(SIG_UNBLOCK, &set, nil)
}

/// Whether SIGINT or SIGTERM arrived since `installStopHandlers`.
func stopRequested() -> Bool { stopSignal != 0 }
