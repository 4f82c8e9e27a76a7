import Foundation
import Tensor

/// The augmentations of `augment:` applied to one document: `copies` new records per enabled
/// operation, each with the id `<id>-<operation>-<copy>` and its origin (`augmented_from`,
/// `augmentation`) beside the original's source and line.
public struct Augmenter: Sendable {
    public let config: AugmentConfig
    let eda: EDA
    let translator: BackTranslator?

    public init(config: AugmentConfig) throws {
        try config.validate()
        self.config = config
        eda = EDA(wordNet: config.needsWordNet ? try WordNet(directory: config.wordnetDir) : nil, seed: config.seed)
        translator = config.backTranslation.map(BackTranslator.init)
    }

    public struct Record: Sendable {
        public let document: Document
        public let operation: AugmentOperation
        public let origin: String

        /// The JSONL line, with the origin fields.
        public func appendJSONL(to out: inout [UInt8]) {
            document.appendJSONL(to: &out, extra: [("augmented_from", origin), ("augmentation", operation.rawValue)])
        }
    }

    /// The new records of `document` (an augmentation that leaves the text unchanged is dropped).
    public func augment(_ document: Document) throws -> [Record] {
        var out: [Record] = []
        let docHash = TextHash.hash(document.id)
        func add(_ op: AugmentOperation, _ copy: Int, _ text: String) {
            guard text != document.text, !text.isEmpty else { return }
            let d = Document(id: "\(document.id)-\(op.rawValue)-\(copy)", text: text, source: document.source, line: document.line,
                             difficulty: document.difficulty)
            out.append(Record(document: d, operation: op, origin: document.id))
        }
        for (k, (op, rate)) in config.operations.enumerated() {
            for copy in 0..<config.copies {
                add(op, copy, eda.apply(op, rate: rate, to: document.text, stream: Philox.stream(docHash, UInt64(k), UInt64(copy))))
            }
        }
        if let translator {
            // Temperature 0: one copy (more would repeat it).
            add(.backTranslation, 0, try translator.backTranslate(document.text))
        }
        return out
    }

    /// Augments a batch on the pool's threads; records come back in document order.
    public func augment(batch: [Document], pool: ThreadPool) throws -> [Record] {
        final class Results: @unchecked Sendable {  // Each index is written by one task only.
            var records: [[Record]]
            var errors: [(any Error)?]
            init(_ n: Int) { records = Array(repeating: [], count: n); errors = Array(repeating: nil, count: n) }
        }
        let results = Results(batch.count)
        pool.parallelFor(batch.count, minChunk: 1) { range in
            for i in range {
                do { results.records[i] = try augment(batch[i]) } catch { results.errors[i] = error }
            }
        }
        if let e = results.errors.compactMap({ $0 }).first { throw e }
        return results.records.flatMap { $0 }
    }
}
