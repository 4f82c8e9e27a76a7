import Comm
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The cluster's network over ZeroMQ: one context for the process's ring links (inproc links
/// between the devices of a worker need a shared one) and the coordinator's ROUTER, a DEALER with
/// a context of its own for a worker (`ControlDealer`), PUSH/PULL ring links (`ZMQTransport`).
/// See docs/protocol.md.
public final class ZMQNetwork: ClusterNetwork {
    public let context: ZMQContext

    public init(ioThreads: Int = 1) throws { context = try ZMQContext(ioThreads: ioThreads) }

    public func listen(_ endpoint: String) throws -> any ControlServer {
        try ControlRouter(context: context, bind: endpoint)
    }

    public func connect(coordinator endpoint: String) throws -> any ControlClient {
        try ControlDealer(connect: endpoint)
    }

    /// Device 0 binds `tcp://ADVERTISE:*` (its predecessor is on another worker); the others bind
    /// `inproc://zerotrain-PID-D` in this process's context (their predecessor is the previous device).
    public func bindRingLink(device: Int, devices: Int, advertiseHost: String) throws -> any RingLink {
        let endpoint = device == 0 ? "tcp://\(advertiseHost):*" : "inproc://zerotrain-\(getpid())-\(device)"
        return try ZMQTransport(context: context, rank: device, worldSize: max(2, devices), bind: endpoint)
    }
}

extension ZMQTransport: RingLink {}
