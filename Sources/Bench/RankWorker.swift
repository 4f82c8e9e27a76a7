import Comm
import CommZMQ
import Foundation

/// The rank side of `zerotrain bench comm` (and, extended, of the multi-process tests): reads
/// `RankCommand` lines on stdin, answers each with a `RankReply` line on stdout, until `exit` or
/// end of input. One worker = one rank of a ring over ZeroMQ (tcp or ipc); re-forming the group
/// (new epoch, new membership) is a new `bind` + `connect` in the same process.
///
/// Serves `bind`, `connect`, `bench` and `exit`. The test kit extends it through the initialiser:
/// `wrapTransport` wraps each connected transport before the group is formed over it, and
/// `handle` answers the commands this type does not know.
public final class RankWorker {
    /// Wraps a connected transport before the `ProcessGroup` is formed over it.
    public typealias TransportWrapper = (ZMQTransport) -> any Transport
    /// Answers a command other than `bind`, `connect`, `bench` and `exit`, given the group formed
    /// by the last `connect` (nil before); nil when the command is unknown to it as well.
    public typealias CommandHandler = (RankCommand, ProcessGroup?) throws -> RankReply?

    private let wrapTransport: TransportWrapper
    private let handleOther: CommandHandler
    private var context: ZMQContext?
    private var authenticator: ZMQAuthenticator?
    private var transport: ZMQTransport?
    private var group: ProcessGroup?
    private var pending: RankCommand?

    public init(wrapTransport: @escaping TransportWrapper = { $0 },
                handle: @escaping CommandHandler = { _, _ in nil }) {
        self.wrapTransport = wrapTransport
        handleOther = handle
    }

    /// Runs the command loop; returns when told to exit or stdin closes.
    public func run() {
        while let line = readLine() {
            guard !line.isEmpty else { continue }
            let reply: RankReply
            do {
                let command = try JSONDecoder().decode(RankCommand.self, from: Data(line.utf8))
                if command.cmd == "exit" {
                    write(RankReply(ok: true))
                    break
                }
                reply = try handle(command)
            } catch {
                reply = RankReply(error)
            }
            write(reply)
        }
        transport?.close()
    }

    private func handle(_ c: RankCommand) throws -> RankReply {
        switch c.cmd {
        case "bind":
            guard let rank = c.rank, let worldSize = c.worldSize, let endpoint = c.endpoint else {
                throw CommError(.invalidArgument, "bind needs rank, worldSize and endpoint")
            }
            group = nil
            transport?.close()
            if context == nil { context = try ZMQContext(ioThreads: c.ioThreads ?? 1) }
            var options = ZMQTransport.Options()
            if let bytes = c.socketBufferBytes { options.kernelBufferBytes = bytes }
            if let secret = c.curveSecretKey {
                // CURVE as in a job: this rank's key, and a ZAP handler that admits the predecessor's key only.
                options.curve = .init(own: try ZMQCurveKeyPair(secretKey: secret))
                options.zapDomain = "zerotrain-ring"
                if authenticator == nil { authenticator = try ZMQAuthenticator(context: context!, log: { _ in }) }
                authenticator?.setPolicy(.keys(Set([c.predecessorPublicKey].compactMap { $0 })), domain: "zerotrain-ring")
            }
            let t = try ZMQTransport(context: context!, rank: rank, worldSize: worldSize, bind: endpoint, options: options)
            transport = t
            pending = c
            var reply = RankReply(ok: true)
            reply.endpoint = t.boundEndpoint
            return reply
        case "connect":
            guard let t = transport, let bind = pending, let successor = c.successor else {
                throw CommError(.invalidArgument, "connect needs a successor endpoint after bind")
            }
            try t.connect(successor: successor, publicKey: c.successorPublicKey)
            var options = ProcessGroup.Options()
            options.checksumPayloads = c.checksum ?? true
            if let bytes = c.segmentBytes { options.segmentBytes = bytes }
            group = try ProcessGroup(rank: bind.rank!, worldSize: bind.worldSize!, transport: wrapTransport(t),
                                     epoch: bind.epoch ?? 0, jobID: bind.jobID ?? 0, options: options)
            return RankReply(ok: true)
        case "bench":
            guard let group, let kind = c.kind else { throw CommError(.invalidArgument, "bench needs a formed group and a kind") }
            let times = try CollectiveBenchmark.measure(kind, group: group, bytes: c.count ?? 0,
                                                        wire: c.bfloat16 == true ? .bfloat16 : .float32,
                                                        warmup: c.warmup ?? 2, iterations: c.iterations ?? 5,
                                                        timeout: .milliseconds(c.timeoutMs ?? 60_000))
            var reply = RankReply(ok: true)
            reply.times = times
            return reply
        default:
            guard let reply = try handleOther(c, group) else {
                throw CommError(.invalidArgument, "unknown command \(c.cmd)")
            }
            return reply
        }
    }

    private func write(_ reply: RankReply) {
        RankWorker.writeLine(reply)
    }

    /// Writes `reply` as one line of JSON (keys sorted) on stdout: the answer to a command, or an
    /// event a hook reports in the middle of one.
    public static func writeLine(_ reply: RankReply) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        guard var data = try? encoder.encode(reply) else { return }
        data.append(0x0A)
        FileHandle.standardOutput.write(data)
    }
}
