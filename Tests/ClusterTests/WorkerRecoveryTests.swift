import Cluster
import Foundation
import Testing
import Training

/// The worker's side of recovery (fault_tolerance.policy restart): a failed device waits for the
/// coordinator's decision, a reset or a lost coordinator rebinds the ring links and registers again.
@Suite struct WorkerRecoveryTests {
    struct Boom: Error, CustomStringConvertible { var description: String { "peer lost" } }

    /// Registered, assigned ranks 0 and 1 under the restart policy, devices ready.
    func running() throws -> WorkerState {
        var s = WorkerState(settings: WorkerStateTests.settings())
        _ = s.event(.start(now: 0))
        _ = s.event(.message(try WorkerStateTests.assign(policy: .restart), now: 0.1))
        _ = s.event(.device(.ready(device: 0), now: 0.2))
        _ = s.event(.device(.ready(device: 1), now: 0.2))
        #expect(s.phase == .ready)
        return s
    }

    func sent(_ actions: [WorkerState.Action]) -> [ControlMessage] {
        actions.compactMap { if case let .send(m) = $0, m.kind != .heartbeat { return m } else { return nil } }
    }

    @Test func aFailedDeviceWaitsForTheCoordinatorInsteadOfExiting() throws {
        var s = try running()
        _ = s.event(.message(ControlMessage(.heartbeat), now: 0.9))
        let actions = s.event(.device(.failed(device: 1, DeviceFailure(rank: 1, error: Boom())), now: 1))
        #expect(sent(actions).map(\.kind) == [.failed] && sent(actions)[0].epoch == 1)
        #expect(actions.contains(.stopDevices))
        #expect(!actions.contains { if case .exit = $0 { return true }; return false })
        #expect(s.phase == .awaiting)
        // The devices stop; the worker keeps heartbeating and waits.
        _ = s.event(.device(.stopped(device: 0), now: 1.1))
        #expect(s.event(.device(.stopped(device: 1), now: 1.1)).isEmpty)
        #expect(s.phase == .awaiting)
        // The coordinator's reset: the devices are already stopped, so new links are bound at once.
        var reset = ControlMessage(.reset)
        reset.epoch = 2
        let after = s.event(.message(reset, now: 1.2))
        #expect(after.contains(.rebindLinks))
        #expect(s.phase == .resetting)
        // With the new links the worker registers again, announcing them.
        let again = s.event(.linksBound(["tcp://w:7", "tcp://w:8"], now: 1.3))
        guard case let .register(r)? = again.first else { Issue.record("no registration: \(again)"); return }
        #expect(r.endpoints == ["tcp://w:7", "tcp://w:8"] && s.phase == .registering)
        // The next assignment starts the next generation of devices.
        var next = try WorkerStateTests.assign(policy: .restart)
        next.epoch = 2
        let started = s.event(.message(next, now: 1.4))
        guard case let .startDevices(a)? = started.last else { Issue.record("no devices: \(started)"); return }
        #expect(a.epoch == 2)
    }

    @Test func aResetWhileTrainingStopsTheDevicesFirst() throws {
        var s = try running()
        var reset = ControlMessage(.reset)
        reset.epoch = 2
        let actions = s.event(.message(reset, now: 1))
        #expect(actions.contains(.stopDevices) && !actions.contains(.rebindLinks))
        _ = s.event(.device(.stopped(device: 0), now: 1.1))
        #expect(s.event(.device(.stopped(device: 1), now: 1.2)) .contains(.rebindLinks))
    }

    @Test func devicesThatDoNotStopDoNotBlockTheNextMembership() throws {
        var s = try running()
        var reset = ControlMessage(.reset)
        reset.epoch = 2
        _ = s.event(.message(reset, now: 1))
        #expect(s.nextDeadline == 1 + WorkerStateTests.settings().deviceStopGraceSeconds)
        #expect(s.event(.tick(now: 3.5)).contains(.rebindLinks))
    }

    @Test func aLostCoordinatorIsWaitedForWithRecovery() throws {
        var s = try running()
        // Heartbeat timeout 1 s: the worker stops its devices and will register again.
        let actions = s.event(.tick(now: 1.3))
        #expect(actions.contains(.stopDevices))
        #expect(!actions.contains { if case .exit = $0 { return true }; return false })
        _ = s.event(.device(.stopped(device: 0), now: 1.4))
        #expect(s.event(.device(.stopped(device: 1), now: 1.4)).contains(.rebindLinks))
        let again = s.event(.linksBound(["tcp://w:5", "tcp://w:6"], now: 1.5))
        guard case .register? = again.first else { Issue.record("no registration: \(again)"); return }
        // It keeps trying for at least the rejoin window (30 s by default), not the 10 s connect timeout.
        #expect(!s.event(.tick(now: 20)).contains { if case .exit = $0 { return true }; return false })
        #expect(s.event(.tick(now: 31.6)).contains { if case .exit(.failed) = $0 { return true }; return false })
    }
}
