import FlyingSocks
import Foundation

/// A streamed response body: the bytes each generation event formats to (server-sent events),
/// pulled by FlyingFox as it writes the chunked response, then `trailer` once the events end.
/// When the client goes away FlyingFox stops pulling and drops the iterator, which ends the event
/// stream (its `onTermination` cancels the request).
struct EventStreamBody: AsyncBufferedSequence, Sendable {
    typealias Element = UInt8
    let events: AsyncStream<GenerationEvent>
    let format: @Sendable (GenerationEvent) -> [UInt8]
    let trailer: [UInt8]

    func makeAsyncIterator() -> Iterator { Iterator(base: events.makeAsyncIterator(), format: format, trailer: trailer) }

    struct Iterator: AsyncBufferedIteratorProtocol {
        var base: AsyncStream<GenerationEvent>.Iterator
        let format: @Sendable (GenerationEvent) -> [UInt8]
        var trailer: [UInt8]?
        var pending: ArraySlice<UInt8> = []

        init(base: AsyncStream<GenerationEvent>.Iterator, format: @escaping @Sendable (GenerationEvent) -> [UInt8], trailer: [UInt8]) {
            self.base = base
            self.format = format
            self.trailer = trailer
        }

        mutating func next() async -> UInt8? { await nextBuffer(suggested: 1)?.first }

        mutating func nextBuffer(suggested count: Int) async -> ArraySlice<UInt8>? {
            while pending.isEmpty {
                if let event = await base.next() {
                    pending = format(event)[...]
                } else if let t = trailer {
                    trailer = nil
                    pending = t[...]
                } else {
                    return nil
                }
            }
            let chunk = pending.prefix(Swift.max(1, count))
            pending = pending.dropFirst(chunk.count)
            return chunk
        }
    }
}
