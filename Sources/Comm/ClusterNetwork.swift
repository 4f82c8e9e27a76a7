import Foundation

/// How a job's processes reach each other: the control plane (coordinator ↔ workers) and each
/// rank's ring link (the data plane). The cluster is written against these protocols only; the CLI
/// hands it the ZeroMQ implementation (`CommZMQ.ZMQNetwork`).
public protocol ClusterNetwork: Sendable {
    /// The coordinator's end of the control plane, bound at `endpoint` (a port of `*` picks a free one).
    func listen(_ endpoint: String) throws -> any ControlServer
    /// A worker's end of the control plane. Connecting does not wait for the coordinator to be there.
    func connect(coordinator endpoint: String) throws -> any ControlClient
    /// Binds the ring link of device `device` (of `devices`) of this process. Device 0's
    /// predecessor is on another worker, which reaches it at `advertiseHost`; the others'
    /// predecessors are devices of this process.
    func bindRingLink(device: Int, devices: Int, advertiseHost: String) throws -> any RingLink
    /// Who may connect to this process's ring links from another process, from the membership's
    /// assignment: the predecessors of its ranks (their CURVE keys, or their hosts when the ring is
    /// not encrypted). nil = nobody yet: connections wait for the next call (a link is bound before
    /// the worker knows its predecessor). A network without authentication ignores it.
    func admitRingPredecessors(_ peers: [RingPeer]?)
    /// Whether ring links are CURVE-encrypted (then `RingLink.connect` needs the successor's key).
    var encryptsRing: Bool { get }
}

/// A ring neighbour in another process: its data endpoint and, with CURVE, its public key.
public struct RingPeer: Sendable, Equatable {
    public var endpoint: String
    public var publicKey: String?
    public init(endpoint: String, publicKey: String?) {
        self.endpoint = endpoint
        self.publicKey = publicKey
    }
}

/// A rank's ring link: receives from the predecessor at `boundEndpoint` (give it to the
/// predecessor), sends to the successor once connected. Bound on one thread, then used by the
/// rank's communication thread only.
public protocol RingLink: Transport {
    var boundEndpoint: String { get }
    /// Connects to the successor's endpoint; `publicKey`: its CURVE key, pinned (nil: no CURVE).
    func connect(successor: String, publicKey: String?) throws
}

/// What a daemon's event loop wakes up for.
public enum ControlEvent: Sendable, Equatable {
    /// A message: from `peer` (its identity) on a server, from the coordinator (empty peer) on a client.
    case message(peer: Data, Data)
    /// `Wakeup.signal()` was called: another thread (a device, a signal) has something for the loop.
    case wakeup
    /// The deadline passed and nothing else happened.
    case deadline
}

/// Wakes a daemon's event loop from any thread. Never blocks; signals that arrive while the loop
/// is busy are not lost (the next wait returns `.wakeup` at once).
public protocol Wakeup: Sendable {
    func signal()
}

/// One end of the control plane, used by one thread (the daemon's loop). Messages are single
/// frames of bytes (JSON `ControlMessage`s, which the cluster encodes).
public protocol ControlEndpoint: AnyObject {
    /// Waits for the next event; `deadline` nil = no deadline, the loop waits for an event.
    func next(until deadline: ContinuousClock.Instant?) throws -> ControlEvent
    /// Wakes `next` from another thread.
    var wakeup: any Wakeup { get }
    /// Closes, giving queued messages up to `linger` to leave (a last `bye`).
    func close(linger: Duration)
}

/// The coordinator's end: many workers, each known by the identity its messages carry.
public protocol ControlServer: ControlEndpoint {
    /// The endpoint bound, with the real port when `*` was asked for.
    var endpoint: String { get }
    /// Sends to `peer`; false when the peer is not connected (gone).
    func send(_ data: Data, to peer: Data) throws -> Bool
    /// The CURVE public key the peer authenticated with (nil without authentication).
    func authenticatedKey(of peer: Data) -> String?
}

/// A worker's end: one peer, the coordinator.
public protocol ControlClient: ControlEndpoint {
    /// Sends to the coordinator; false while there is no connection (nothing is queued then).
    func send(_ data: Data) throws -> Bool
}
