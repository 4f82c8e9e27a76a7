import Cluster
import Common
import Foundation
import Testing

/// The token-file fetch on its own: requests, CRC-checked chunks, retries, resumption.
@Suite struct TokenFetchTests {
    static func file(bytes: Int) throws -> (URL, Data) {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("zt-fetch-\(UUID().uuidString).bin")
        let data = Data((0..<bytes).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) })
        try data.write(to: url)
        return (url, data)
    }

    /// Runs a fetch against `serve` until it completes or fails; `tamper` may change each answer.
    static func run(_ fetch: inout TokenFetch, file: String, tamper: (inout ControlMessage) -> Void = { _ in })
        -> (data: Data, requests: [Int], outcome: TokenFetch.Action?) {
        var data = Data(), requests: [Int] = [], pending = fetch.start()
        let start = fetch.cached
        while let action = pending.first {
            pending.removeFirst()
            switch action {
            case let .request(m):
                requests.append(m.offset!)
                var answer = TokenFetch.serve(m, files: [file])
                tamper(&answer)
                pending += fetch.received(answer)
            case let .append(offset, chunk):
                #expect(offset == start + data.count)
                data += chunk
            case .complete, .fail:
                return (data, requests, action)
            }
        }
        return (data, requests, nil)
    }

    @Test func fetchesEveryByteInChunks() throws {
        let (url, expected) = try Self.file(bytes: 2 * TokenFetch.chunkBytes + 12345)
        defer { try? FileManager.default.removeItem(at: url) }
        var f = TokenFetch(path: url.path, cachedBytes: 0)
        let r = Self.run(&f, file: url.path)
        #expect(r.outcome == .complete && r.data == expected)
        #expect(r.requests == [0, TokenFetch.chunkBytes, 2 * TokenFetch.chunkBytes])
        #expect(f.size == expected.count && f.cached == expected.count)
    }

    @Test func resumesAfterTheCachedBytes() throws {
        let (url, expected) = try Self.file(bytes: 3 * TokenFetch.chunkBytes)
        defer { try? FileManager.default.removeItem(at: url) }
        var f = TokenFetch(path: url.path, cachedBytes: TokenFetch.chunkBytes + 7)
        let r = Self.run(&f, file: url.path)
        #expect(r.outcome == .complete && r.requests.first == TokenFetch.chunkBytes + 7)
        #expect(r.data == expected[(TokenFetch.chunkBytes + 7)...])
        // A complete cache costs one round trip.
        var done = TokenFetch(path: url.path, cachedBytes: expected.count)
        let again = Self.run(&done, file: url.path)
        #expect(again.outcome == .complete && again.requests == [expected.count] && again.data.isEmpty)
    }

    @Test func aCorruptChunkIsAskedForAgainThenFails() throws {
        let (url, expected) = try Self.file(bytes: 100_000)
        defer { try? FileManager.default.removeItem(at: url) }
        var corruptions = 0
        var f = TokenFetch(path: url.path, cachedBytes: 0)
        let r = Self.run(&f, file: url.path) { m in
            if corruptions < 2, var d = m.data, !d.isEmpty { d[d.startIndex + 5] ^= 1; m.data = d; corruptions += 1 }
        }
        #expect(r.outcome == .complete && r.data == expected && r.requests == [0, 0, 0])
        var g = TokenFetch(path: url.path, cachedBytes: 0)
        let bad = Self.run(&g, file: url.path) { m in m.crc = m.crc.map { $0 ^ 1 } }
        guard case let .fail(reason)? = bad.outcome else { Issue.record("\(String(describing: bad.outcome))"); return }
        #expect(reason.contains("failed its CRC-32C 4 times") && bad.data.isEmpty)
    }

    @Test func onlyTheJobsDataFilesAreServedAndStaleChunksAreIgnored() throws {
        let (url, _) = try Self.file(bytes: 10)
        defer { try? FileManager.default.removeItem(at: url) }
        var request = ControlMessage(.fetch)
        request.path = "/etc/shadow"
        request.offset = 0
        request.length = 10
        #expect(TokenFetch.serve(request, files: [url.path]).reason == "only the job's data files are served")
        var f = TokenFetch(path: "/etc/shadow", cachedBytes: 0)
        guard case .fail(let reason)? = f.received(TokenFetch.serve(request, files: [url.path])).first else { Issue.record("accepted"); return }
        #expect(reason.contains("only the job's data files"))
        var g = TokenFetch(path: url.path, cachedBytes: 4)
        request.path = url.path
        #expect(g.received(TokenFetch.serve(request, files: [url.path])).isEmpty, "an answer for offset 0 when 4 bytes are cached")
    }
}
