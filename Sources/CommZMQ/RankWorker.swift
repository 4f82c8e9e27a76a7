import Comm
import Foundation

/// The rank side of `zerotrain bench comm` and of the multi-process tests: reads `RankCommand`
/// lines on stdin, answers each with a `RankReply` line on stdout, until `exit` or end of input.
/// One worker = one rank of a ring over ZeroMQ (tcp or ipc); re-forming the group (new epoch,
/// new membership) is a new `bind` + `connect` in the same process.
public final class RankWorker {
    private var context: ZMQContext?
    private var transport: ZMQTransport?
    private var stalling: StallingTransport?
    private var group: ProcessGroup?
    private var pending: RankCommand?

    public init() {}

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
            if context == nil { context = try ZMQContext() }
            var options = ZMQTransport.Options()
            if let bytes = c.socketBufferBytes { options.kernelBufferBytes = bytes }
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
            try t.connect(successor: successor)
            let s = StallingTransport(t)
            stalling = s
            var options = ProcessGroup.Options()
            options.checksumPayloads = c.checksum ?? true
            if let bytes = c.segmentBytes { options.segmentBytes = bytes }
            group = try ProcessGroup(rank: bind.rank!, worldSize: bind.worldSize!, transport: s,
                                     epoch: bind.epoch ?? 0, jobID: bind.jobID ?? 0, options: options)
            return RankReply(ok: true)
        case "run":
            guard let group, let kind = c.kind else { throw CommError(.invalidArgument, "run needs a formed group and a kind") }
            stalling?.stallAfter = c.stallAfterFrames
            let timeout = Duration.milliseconds(c.timeoutMs ?? 10_000)
            let outcome = try CollectiveCheck.run(kind, group: group, count: c.count ?? 0, seed: c.seed ?? 1,
                                                  op: c.average == true ? .average : .sum,
                                                  wire: c.bfloat16 == true ? .bfloat16 : .float32,
                                                  root: c.root ?? 0, deadline: .now + timeout)
            var reply = RankReply(ok: true)
            reply.digest = String(outcome.digest, radix: 16)
            reply.seconds = outcome.seconds
            reply.droppedFrames = group.droppedFrames
            return reply
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
            throw CommError(.invalidArgument, "unknown command \(c.cmd)")
        }
    }

    private func write(_ reply: RankReply) {
        RankWorker.writeLine(reply)
    }

    static func writeLine(_ reply: RankReply) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        guard var data = try? encoder.encode(reply) else { return }
        data.append(0x0A)
        FileHandle.standardOutput.write(data)
    }
}

/// Test hook around a transport: after `stallAfter` received frames it reports `stalled` on stdout
/// and stops responding, so a test can SIGKILL the rank in the middle of a collective.
final class StallingTransport: Transport {
    let inner: ZMQTransport
    var stallAfter: Int? { didSet { received = 0 } }
    private var received = 0

    init(_ inner: ZMQTransport) { self.inner = inner }

    func send(header: FrameHeader, payload: UnsafeRawBufferPointer, release: SendRelease,
              deadline: ContinuousClock.Instant) throws {
        try inner.send(header: header, payload: payload, release: release, deadline: deadline)
    }

    func send(payloadByteCount: Int, deadline: ContinuousClock.Instant,
              fill: (UnsafeMutableRawBufferPointer) -> FrameHeader) throws {
        try inner.send(payloadByteCount: payloadByteCount, deadline: deadline, fill: fill)
    }

    func receive<R>(deadline: ContinuousClock.Instant,
                    _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> R) throws -> R {
        if let stallAfter, received >= stallAfter {
            var event = RankReply(ok: true)
            event.event = "stalled"
            RankWorker.writeLine(event)
            Thread.sleep(forTimeInterval: 60)
            throw CommError(.timeout, "stalled by the test hook and never killed")
        }
        received += 1
        return try inner.receive(deadline: deadline, body)
    }

    func trySend(header: FrameHeader, payload: [UInt8]) { inner.trySend(header: header, payload: payload) }

    func discardPendingSends() { inner.discardPendingSends() }

    func close() { inner.close() }
}
