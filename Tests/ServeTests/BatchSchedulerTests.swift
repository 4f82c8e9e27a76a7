@testable import Serve
import Testing

/// The continuous-batching state machine without threads or clocks.
@Suite struct BatchSchedulerTests {
    @Test func requestsJoinAndLeaveTheRunningBatchEachStep() {
        var s = BatchScheduler(maxBatch: 2, maxQueue: 1)
        #expect(s.nextStep() == nil)   // idle: the loop waits
        #expect(s.submit(1) == .accepted && s.submit(2) == .accepted)
        #expect(s.nextStep() == .init(admitted: [1, 2], batch: [1, 2]))
        #expect(s.submit(3) == .accepted)          // waits (the batch is full)
        #expect(s.submit(4) == .queueFull)         // the queue holds 1
        #expect(s.nextStep() == .init(admitted: [], batch: [1, 2]))
        s.remove(1)                                // finished: its place goes to 3 at the next step
        #expect(s.nextStep() == .init(admitted: [3], batch: [2, 3]))
        #expect(s.submit(4) == .accepted)
        s.remove(4)                                // cancelled while waiting
        s.remove(2); s.remove(3)
        #expect(s.nextStep() == nil && s.waiting.isEmpty)
    }

    @Test func shutdownDrainsWhatWasAccepted() {
        var s = BatchScheduler(maxBatch: 1, maxQueue: 4)
        _ = s.submit(1); _ = s.submit(2)
        _ = s.nextStep()
        s.shutdown()
        #expect(s.submit(3) == .shuttingDown)
        #expect(!s.isDrained)
        s.remove(1)
        #expect(s.nextStep() == .init(admitted: [2], batch: [2]))   // the waiting one still runs
        s.remove(2)
        #expect(s.isDrained && s.nextStep() == nil)
    }
}
