import Bench
import Foundation

/// The worker test process (`ZeroTrainTestWorker`): `zerotrain worker` with fault injection.
public enum TestWorker {
    /// The built `ZeroTrainTestWorker` next to the test bundle, or `$ZEROTRAIN_TEST_WORKER_BIN`.
    public static func executable() -> URL? {
        RankProcess.executable(named: "ZeroTrainTestWorker", environmentVariable: "ZEROTRAIN_TEST_WORKER_BIN")
    }
}
