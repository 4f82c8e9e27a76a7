import Bench
import ZeroTrainTestKit

// One rank of the multi-process tests: JSON commands on stdin, replies on stdout (TestRank.worker).
TestRank.worker().run()
