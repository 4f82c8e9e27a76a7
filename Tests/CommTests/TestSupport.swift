import Common
import Comm
import Foundation
import Synchronization

/// Runs `body(rank)` for ranks 0..<n, each on its own Thread (collectives block; they must not
/// run on the cooperative pool), and returns every rank's result.
func onThreads<T: Sendable>(_ n: Int, _ body: @escaping @Sendable (Int) throws -> T) -> [Result<T, any Error>] {
    let results = Mutex<[Result<T, any Error>?]>(Array(repeating: nil, count: n))
    let done = DispatchGroup()
    for rank in 0..<n {
        done.enter()
        let thread = Thread {
            let result = Result { try body(rank) }
            results.withLock { $0[rank] = result }
            done.leave()
        }
        thread.stackSize = 1 << 22
        thread.start()
    }
    done.wait()
    return results.withLock { $0.map { $0! } }
}

/// A log sink that keeps messages (so failing-collective dumps do not flood the test output).
final class CapturedLog: Sendable {
    private let lines = Mutex<[String]>([])
    var sink: CommLog { { [self] message in lines.withLock { $0.append(message) } } }
    var text: String { lines.withLock { $0.joined(separator: "\n") } }
}

func quietOptions(_ log: CapturedLog = CapturedLog()) -> ProcessGroup.Options {
    var options = ProcessGroup.Options()
    options.log = log.sink
    return options
}
