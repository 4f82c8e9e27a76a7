import Cluster
import Foundation
import Testing

/// Control messages from the network are decoded against their schema and checked before use;
/// registrations are rate-limited.
@Suite struct ControlValidationTests {
    static func decoded(_ json: String) -> Result<ControlMessage, ControlMessageRejection> { ControlMessage.decodeChecked(Data(json.utf8)) }

    @Test(arguments: [
        ("not json", "not a control message"),
        (#"{"kind":"register","devices":"two"}"#, "wrong type at devices"),
        (#"{"kind":"explode"}"#, "not a control message"),
        (#"{"kind":"register","protocolVersion":2,"devices":2,"endpoints":["tcp://a:1"]}"#, "one endpoint per device"),
        (#"{"kind":"register","protocolVersion":2,"devices":0,"endpoints":[]}"#, "devices must be 1…1024"),
        (#"{"kind":"register","protocolVersion":2,"devices":1,"endpoints":["http://x"]}"#, "invalid endpoint"),
        (#"{"kind":"fetch","path":"/t","offset":0,"length":1073741824}"#, "length must be 0…1048576"),
        (#"{"kind":"assign","ranks":[0,5],"worldSize":2,"successors":["tcp://a:1","tcp://b:1"]}"#, "inside the world size"),
        (#"{"kind":"step_done","step":3}"#, "needs epoch, step and metrics"),
        (#"{"kind":"ready","epoch":0}"#, "epoch must be ≥ 1"),
        (#"{"kind":"assign","ranks":[0],"worldSize":2,"successors":["tcp://a:1"],"memoryDomains":["d"]}"#, "one domain (≤ 200 bytes) per rank"),
    ])
    func refusesMalformedMessages(json: String, reason: String) {
        guard case let .failure(rejection) = Self.decoded(json) else {
            Issue.record("accepted \(json)")
            return
        }
        #expect(rejection.reason.contains(reason), "\(rejection.reason)")
    }

    @Test func acceptsWhatTheDaemonsSend() {
        var r = ControlMessage(.register)
        r.protocolVersion = ControlMessage.protocolVersion
        r.build = ControlMessage.build
        r.devices = 2
        r.endpoints = ["tcp://10.0.0.2:40000", "inproc://zerotrain-1-1"]
        r.host = "node1"
        r.pid = 42
        r.jobToken = "t"
        r.memoryDomain = "5dbdf05b-4167-4752-abd7-8cc5fc2e5983:25:1"
        #expect(throws: Never.self) { try ControlMessage.decodeChecked(r.encoded()).get() }
        var h = ControlMessage(.heartbeat)
        h.epoch = 3
        #expect(throws: Never.self) { try ControlMessage.decodeChecked(h.encoded()).get() }
        let long = String(repeating: "x", count: 5000)
        #expect(throws: ControlMessageRejection.self) { try Self.decoded(#"{"kind":"failed","reason":"\#(long)"}"#).get() }
    }

    @Test func rateLimiterAdmitsABurstThenTheRate() {
        var limiter = RateLimiter(perSecond: 20, burst: 40)
        let first = (0..<100).filter { _ in limiter.admit(now: 0) }.count
        #expect(first == 40)
        #expect(limiter.takeRefusals() == 60)
        let later = (0..<100).filter { _ in limiter.admit(now: 1) }.count
        #expect(later == 20)
        #expect(limiter.takeRefusals() == 80 && limiter.refusals == 0)
    }
}
