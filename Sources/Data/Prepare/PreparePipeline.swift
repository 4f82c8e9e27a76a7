import Foundation
import Tensor

/// `zerotrain data prepare`: ingest → quality filters → exact dedup → MinHash-LSH near dedup →
/// tokenizer (trained or loaded) → token shards, streaming in three passes over the data:
///
/// 1. read the inputs (a thread of its own, batches of a few MB), filter, hash and sketch every
///    document on the pool's threads; drop exact duplicates (a set of 64-bit hashes), put
///    signatures into the LSH index (union-find), write the survivors to an intermediate file;
/// 2. read it back, keep each cluster's first document, write documents.jsonl, collect the
///    cluster examples and (when training a tokenizer) count pre-tokens;
/// 3. encode documents.jsonl's texts on the pool and write the train and validation shards.
///
/// Memory is a few batches plus 8 bytes × (bands + 2) per document — never the text.
public final class PreparePipeline {
    public let config: PrepareConfig
    /// Called with one line of progress now and then (stage, records, MB/s).
    public var progress: (String) -> Void = { _ in }
    /// The reference model of `reference_model` (required when `config.needsScorer`).
    public var scorer: (any DocumentScorer)?

    /// Documents whose mean embedding centres the others' (semantic dedup on model embeddings).
    static let centringSample = 512

    public init(config: PrepareConfig) throws {
        try config.validate()
        self.config = config
    }

    var outputDir: URL { URL(fileURLWithPath: config.output) }
    func out(_ name: String) -> String { outputDir.appendingPathComponent(name).path }

    public func run() throws -> PrepareReport {
        try FileManager.default.createDirectory(at: outputDir, withIntermediateDirectories: true)
        var report = PrepareReport()
        let pool = ThreadPool(threads: config.threads)
        let stage1 = out(".stage1.records")
        defer { try? FileManager.default.removeItem(atPath: stage1) }

        // Pass 1.
        var t0 = Date()
        let near = config.dedup.near
        let bands = near.enabled ? near.lshBands : LSHBands(bands: 0, rows: 0)
        report.nearBands = bands.bands
        report.nearRows = bands.rows
        var index = NearDuplicateIndex(bands: bands)
        let hasher = MinHasher(numPerm: near.numPerm, ngram: near.ngram, seed: near.seed)
        let filter = QualityFilter(config: config.filters)
        let reference = try config.filters.referenceSimilarity.map { try ReferenceSimilarityFilter(config: $0, ingest: config.ingest) }
        var exactSeen = Set<UInt64>()
        let semantic = config.dedup.semantic
        var frequencies = DocumentFrequencies()
        var semanticIndex = SemanticIndex(bits: semantic.bits, bands: semantic.bands, threshold: semantic.threshold, seed: semantic.seed)
        var semanticKept: [PrepareReport.Example] = []
        let reader = PrefetchingReader(try DocumentReader(inputs: config.inputs, config: config.ingest))
        defer { reader.cancel() }
        let writer = try RecordFileWriter(path: stage1)
        var lastReport = Date()
        while true {
            let batch = try reader.next()
            if batch.isEmpty { break }
            var outcomes = [QualityFilter.Outcome](repeating: .init(), count: batch.count)
            var exact = [UInt64](repeating: 0, count: batch.count)
            var hasSig = [Bool](repeating: false, count: batch.count)
            var sigs = [UInt32](repeating: 0, count: near.enabled ? batch.count * near.numPerm : 0)
            var words = [[UInt64]](repeating: [], count: semantic.enabled ? batch.count : 0)
            outcomes.withUnsafeMutableBufferPointer { oc in
                exact.withUnsafeMutableBufferPointer { ex in
                    hasSig.withUnsafeMutableBufferPointer { hs in
                        sigs.withUnsafeMutableBufferPointer { sg in
                          words.withUnsafeMutableBufferPointer { wd in
                            let (oc, ex, hs, sg, wd) = (oc, ex, hs, sg, wd)
                            pool.parallelFor(batch.count, minChunk: 16) { range in
                                for i in range {
                                    var o = filter.apply(batch[i].text)
                                    if let text = o.text, let reference, !reference.keeps(text) {
                                        o.text = nil
                                        o.droppedBy = "reference_similarity"
                                    }
                                    oc[i] = o
                                    guard let text = o.text else { continue }
                                    ex[i] = TextHash.normalised(text)
                                    if near.enabled {
                                        hs[i] = hasher.signature(text, into: UnsafeMutableBufferPointer(rebasing: sg[(i * near.numPerm)..<((i + 1) * near.numPerm)]))
                                    }
                                    if semantic.enabled { wd[i] = MinHasher.wordHashes(text) }
                                }
                            }
                          }
                        }
                    }
                }
            }
            for (i, doc) in batch.enumerated() {
                report.lengthsIn.add(doc.text.count)
                let o = outcomes[i]
                for (k, v) in o.linesRemoved { report.linesRemovedByRule[k, default: 0] += v }
                guard let text = o.text else {
                    report.droppedByRule[o.droppedBy ?? "unknown", default: 0] += 1
                    continue
                }
                report.afterFilters += 1
                if config.dedup.exact && !exactSeen.insert(exact[i]).inserted {
                    report.exactDuplicates += 1
                    continue
                }
                if near.enabled {
                    if hasSig[i] {
                        sigs.withUnsafeBufferPointer { s in _ = index.add(UnsafeBufferPointer(rebasing: s[(i * near.numPerm)..<((i + 1) * near.numPerm)])) }
                    } else { index.add(nil) }
                }
                if semantic.enabled { frequencies.add(words: words[i]) }
                var d = doc
                d.text = text
                try writer.write(d)
            }
            if Date().timeIntervalSince(lastReport) > 0.5 {
                lastReport = Date()
                progress("ingest+filter+dedup: " + reader.progressLine(elapsed: Date().timeIntervalSince(t0)))
            }
        }
        try writer.close()
        report.ingest = reader.stats
        report.afterExact = report.afterFilters - report.exactDuplicates
        report.seconds["pass1_ingest_filter_sketch"] = Date().timeIntervalSince(t0)

        // Pass 2: cluster roots.
        t0 = Date()
        var clusterSize = [Int32](repeating: 1, count: index.clusters.count)
        if near.enabled {
            for i in 0..<index.clusters.count {
                let r = index.root(i)
                if r != i { clusterSize[r] += 1 }
            }
        }
        var examples: [Int: PrepareReport.Cluster] = [:]
        var exampleOrder: [Int] = []
        func example(_ d: Document) -> PrepareReport.Example {
            PrepareReport.Example(id: d.id, source: d.source, line: d.line, snippet: String(d.text.prefix(200)))
        }
        let documentsPath = out("documents.jsonl")
        guard FileManager.default.createFile(atPath: documentsPath, contents: nil), let docsOut = FileHandle(forWritingAtPath: documentsPath) else {
            throw DataError(.unreadable, "\(documentsPath): cannot create")
        }
        let training = config.tokenizer.path == nil
        if config.needsScorer && scorer == nil {
            throw DataError(.invalidConfig, "reference_model: \(config.referenceModel ?? "") is configured but no reference model was loaded")
        }
        // Semantic dedup on model embeddings encodes with the reference model's tokenizer.
        let embedder = config.modelEmbeddings ? try BPETokenizer.load(path: config.tokenizer.path!) : nil
        // Mean-pooled states of one model all point much the same way (anisotropy): each embedding
        // is centred on the mean of the first `centringSample` documents' before hashing.
        var center: [Float] = [], sampled: [Int: [Float]] = [:]
        if let embedder {
            let sampleReader = try RecordFileReader(path: stage1)
            while sampled.count < Self.centringSample, let d = try sampleReader.next() {
                sampled[sampled.count] = try scorer!.embeddings([embedder.encode(d.text)])[0]
            }
            center = [Float](repeating: 0, count: sampled.values.first?.count ?? 0)
            for e in sampled.values { for j in e.indices { center[j] += e[j] / Float(sampled.count) } }
        }
        var pieces: [ByteKey: Int] = [:]
        let recordsIn = try RecordFileReader(path: stage1)
        var n = 0
        var jsonl: [UInt8] = []
        var keptMask: [Bool] = []
        while true {
            let batch = try recordsIn.nextBatch()
            if batch.isEmpty { break }
            var keptTexts: [String] = []
            for d in batch {
                let i = n
                n += 1
                keptMask.append(false)
                let root = near.enabled ? index.root(i) : i
                if root != i {
                    report.nearDuplicates += 1
                    if var c = examples[root], c.removed.count < near.examplesPerCluster {
                        c.removed.append(example(d))
                        examples[root] = c
                    }
                    continue
                }
                if near.enabled && clusterSize[i] > 1 {
                    report.nearClusters += 1
                    if exampleOrder.count < near.examples {
                        examples[i] = PrepareReport.Cluster(size: Int(clusterSize[i]), kept: example(d), removed: [])
                        exampleOrder.append(i)
                    }
                }
                if semantic.enabled {
                    let sig = if let embedder {
                        semanticIndex.signature(dense: zip(try sampled.removeValue(forKey: i) ?? scorer!.embeddings([embedder.encode(d.text)])[0], center).map { $0 - $1 })
                    } else {
                        semanticIndex.signature(words: MinHasher.wordHashes(d.text), frequencies: frequencies)
                    }
                    if let earlier = semanticIndex.check(sig) {
                        report.semanticDuplicates += 1
                        if report.semanticExamples.count < near.examples {
                            let kept = earlier < semanticKept.count ? semanticKept[earlier]
                                : PrepareReport.Example(id: "?", source: "", line: 0, snippet: "(an earlier document)")
                            report.semanticExamples.append(PrepareReport.Cluster(size: 2, kept: kept, removed: [example(d)]))
                        }
                        continue
                    }
                    // Examples for the first thousand kept documents (bounded memory).
                    if semanticKept.count < 1000 { semanticKept.append(example(d)) }
                }
                keptMask[i] = true
                report.kept += 1
                report.lengthsKept.add(d.text.count)
                d.appendJSONL(to: &jsonl)
                if training { keptTexts.append(d.text) }
            }
            try docsOut.write(contentsOf: jsonl)
            jsonl.removeAll(keepingCapacity: true)
            if training && !keptTexts.isEmpty { pieces.merge(BPETrainer.countPieces(keptTexts, pool: pool), uniquingKeysWith: +) }
        }
        try docsOut.close()
        report.clusterExamples = exampleOrder.compactMap { examples[$0] }
        report.seconds["pass2_clusters_documents"] = Date().timeIntervalSince(t0)
        guard report.ingest.documents > 0 else {
            try writeReport(report)
            throw DataError(.empty, "\(config.inputs.joined(separator: ", ")): no documents read (\(report.ingest.files) files)")
        }
        guard report.kept > 0 else {
            try writeReport(report)
            throw DataError(.empty, "\(config.inputs.joined(separator: ", ")): no documents left after filtering and dedup (\(report.ingest.documents) read; the rules that dropped them are in \(out("report.md")))")
        }

        // Tokenizer.
        t0 = Date()
        let tokenizer: BPETokenizer
        if let path = config.tokenizer.path {
            tokenizer = try BPETokenizer.load(path: path)
            report.tokenizer = path
        } else {
            let trainer = try BPETrainer(vocabularySize: config.tokenizer.vocabSize, specials: config.tokenizer.specials,
                                         minFrequency: config.tokenizer.minFrequency)
            tokenizer = try trainer.train(pieces: pieces)
            pieces = [:]
            try tokenizer.save(to: out("tokenizer.json"))
            report.tokenizer = out("tokenizer.json") + " (trained)"
        }
        report.vocabularySize = tokenizer.vocabularySize
        report.seconds["tokenizer"] = Date().timeIntervalSince(t0)
        guard let eos = tokenizer.specialId(config.tokenizer.eosToken) else {
            throw DataError(.invalidConfig, "tokenizer: \(report.tokenizer) has no special token \(config.tokenizer.eosToken) (tokenizer.eos_token)")
        }
        let bos = config.shards.prependBos ? tokenizer.specialId(config.tokenizer.bosToken) : nil
        if config.shards.prependBos && bos == nil {
            throw DataError(.invalidConfig, "tokenizer: \(report.tokenizer) has no special token \(config.tokenizer.bosToken) (tokenizer.bos_token)")
        }

        // Pass 3: shards (and their difficulty files).
        t0 = Date()
        report.bytesPerToken = TokenShardFormat.bytesPerToken(vocabularySize: tokenizer.vocabularySize)
        var writers: [String: TokenShardWriter] = [:]
        var difficulties: [String: [Double]] = [:]
        var shardNumber: [String: Int] = [:]
        func finish(_ split: String) throws {
            guard let w = writers[split] else { return }
            try w.finish()
            if config.difficulty != "none" { try DifficultyFile.write(difficulties[split] ?? [], to: DifficultyFile.path(forShard: w.path)) }
            difficulties[split] = []
        }
        func writerFor(_ split: String) throws -> TokenShardWriter {
            if let w = writers[split], w.tokenCount < config.shards.maxTokensPerShard { return w }
            try finish(split)
            let k = shardNumber[split, default: 0]
            shardNumber[split] = k + 1
            let name = String(format: "%@-%05d.zts", split, k)
            report.shards.append(name)
            let w = try TokenShardWriter(path: out(name), vocabularySize: tokenizer.vocabularySize, eos: eos)
            writers[split] = w
            return w
        }
        let augmenter = try config.augment.map { try Augmenter(config: $0) }
        let augmentedPath = out("augmented.jsonl")
        if augmenter != nil { FileManager.default.createFile(atPath: augmentedPath, contents: nil) }
        let augmentedOut = augmenter == nil ? nil : FileHandle(forWritingAtPath: augmentedPath)
        if augmenter != nil && augmentedOut == nil { throw DataError(.unreadable, "\(augmentedPath): cannot create") }
        let cut = UInt64(config.shards.validationFraction * Double(UInt64.max))
        // The kept records again, from the intermediate file (same order as documents.jsonl).
        let keptIn = try RecordFileReader(path: stage1)
        var position = 0
        while true {
            var batch: [Document] = []
            var bytes = 0
            while bytes < config.ingest.batchBytes, let r = try keptIn.next() {
                let i = position
                position += 1
                if !keptMask[i] { continue }
                bytes += r.text.utf8.count + 64
                batch.append(r)
            }
            if batch.isEmpty { break }
            let ids = tokenizer.encode(batch: batch.map(\.text), pool: pool)
            let perplexities = config.difficulty == "perplexity" || config.maxPerplexity != nil ? try scorer!.perplexities(ids) : []
            var toAugment: [Document] = []
            for (k, tokens) in ids.enumerated() {
                if let cap = config.maxPerplexity, !(perplexities[k] <= cap) {
                    report.droppedByPerplexity += 1
                    continue
                }
                let validation = cut > 0 && TextHash.hash(batch[k].id, seed: 0x5EED) < cut
                let split = validation ? "validation" : "train"
                let w = try writerFor(split)
                try w.append(document: (bos.map { [$0] } ?? []) + tokens)
                let difficulty = config.difficulty == "perplexity" ? perplexities[k] : batch[k].difficulty ?? .nan
                if config.difficulty != "none" { difficulties[split, default: []].append(difficulty) }
                // Augmented copies of train documents only (a held-out document's would leak it).
                if augmenter != nil && !validation {
                    var d = batch[k]
                    d.difficulty = difficulty
                    toAugment.append(d)
                }
                if validation {
                    report.validationDocuments += 1
                    report.validationTokens += tokens.count + 1 + (bos == nil ? 0 : 1)
                } else {
                    report.trainDocuments += 1
                    report.trainTokens += tokens.count + 1 + (bos == nil ? 0 : 1)
                }
            }
            // The batch's augmented records follow its originals in the train shards; each takes
            // its original's difficulty.
            if let augmenter, !toAugment.isEmpty {
                let records = try augmenter.augment(batch: toAugment, pool: pool)
                var lines: [UInt8] = []
                for (record, ids) in zip(records, tokenizer.encode(batch: records.map(\.document.text), pool: pool)) {
                    record.appendJSONL(to: &lines)
                    try writerFor("train").append(document: (bos.map { [$0] } ?? []) + ids)
                    if config.difficulty != "none" { difficulties["train", default: []].append(record.document.difficulty ?? .nan) }
                    report.augmented[record.operation.rawValue, default: 0] += 1
                    report.trainDocuments += 1
                    report.trainTokens += ids.count + 1 + (bos == nil ? 0 : 1)
                }
                try augmentedOut?.write(contentsOf: lines)
            }
            progress("shards: \(report.trainDocuments + report.validationDocuments) documents, \(report.trainTokens + report.validationTokens) tokens")
        }
        for split in writers.keys.sorted() { try finish(split) }
        try augmentedOut?.close()
        if report.trainDocuments + report.validationDocuments == 0 {
            try writeReport(report)
            throw DataError(.empty, "\(config.inputs.joined(separator: ", ")): no documents left after the perplexity filter (max_perplexity \(config.maxPerplexity ?? 0); \(report.droppedByPerplexity) dropped)")
        }
        report.shards.sort()
        report.seconds["pass3_encode_shards"] = Date().timeIntervalSince(t0)
        try writeReport(report)
        return report
    }

    func writeReport(_ report: PrepareReport) throws {
        try report.json().write(to: URL(fileURLWithPath: out("report.json")))
        try report.markdown().write(toFile: out("report.md"), atomically: true, encoding: .utf8)
    }
}
