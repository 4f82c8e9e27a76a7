import Data
import Model
import Serve
import Tensor
import Testing

/// The KV-cached engine against a full recompute: `Transformer.forward` (the training forward,
/// other code) over the whole context for every token, with the same sampler. Token for token
/// equal, greedy and sampled, for dense (GQA), MoE (with a shared expert, LayerNorm/GELU-free
/// SwiGLU experts) and sliding-window models, past the window; and a batch of requests equals
/// each request alone.
@Suite struct InferenceEngineTests {
    static func model(_ name: String) throws -> Transformer {
        var c = ModelConfig()
        c.numLayers = 2
        c.hiddenSize = 32
        c.numAttentionHeads = 4
        c.numKeyValueHeads = 2
        c.maxSeqLen = 64
        c.initialization = .init(embeddingStd: 1.0)   // peaked logits: a clear argmax at every step
        switch name {
        case "dense": break
        case "gelu-layernorm-tied": c.activation = "gelu"; c.norm = "layernorm"; c.tieEmbeddings = true; c.numKeyValueHeads = 4
        case "moe": c.moeConfig = .init(numExperts: 4, topK: 2, numSharedExperts: 1)
        case "sliding": c.attention = .init(type: "sliding_window", window: 6)
        default: preconditionFailure(name)
        }
        let m = try Transformer(config: c, pool: ThreadPool(threads: 2))
        m.initializeParameters(seed: 11)
        return m
    }

    /// Generation by full recompute: the whole context through `Transformer.forward` per token.
    static func recompute(_ model: Transformer, prompt: [Int32], count: Int, sampling: SamplingParameters) throws -> [Int32] {
        var sampler = Sampler(sampling)
        var tokens = prompt
        let v = model.config.vocabSize
        for _ in 0..<count {
            try model.forward(inputs: tokens, targets: nil, batch: 1, seqLen: tokens.count)
            let logits = Array(model.logits[((tokens.count - 1) * v)..<(tokens.count * v)])
            tokens.append(sampler.next(logits: logits, context: tokens))
        }
        return Array(tokens.dropFirst(prompt.count))
    }

    static let sampled = SamplingParameters(temperature: 0.9, topK: 50, topP: 0.95, repetitionPenalty: 1.3, seed: 42)

    @Test(arguments: ["dense", "gelu-layernorm-tied", "moe", "sliding"], [SamplingParameters(), sampled])
    func cachedGenerationEqualsFullRecompute(_ name: String, sampling: SamplingParameters) throws {
        let model = try Self.model(name)
        let engine = InferenceEngine(model: model)
        let prompt: [Int32] = [72, 101, 108, 108, 111, 44, 32, 119, 111]
        let count = 30   // the sliding model (window 6) generates far past its window
        let expected = try Self.recompute(model, prompt: prompt, count: count, sampling: sampling)
        let g = try engine.generate([GenerationRequest(prompt: prompt, maxTokens: count, sampling: sampling)], tokenizer: .bytes)[0]
        #expect(g.tokens == expected, "\(name)")
        #expect(g.finishReason == .length)
        if name == "sliding" { #expect(g.cache.capacity == 6) }   // a rolling cache of W positions
    }

    @Test func aBatchEqualsEachRequestAlone() throws {
        for name in ["dense", "moe", "sliding"] {
            let model = try Self.model(name)
            let engine = InferenceEngine(model: model)
            let requests = [
                GenerationRequest(prompt: [1, 2, 3], maxTokens: 12),
                GenerationRequest(prompt: Array(10..<30), maxTokens: 5, sampling: Self.sampled),
                GenerationRequest(prompt: [200], maxTokens: 20, sampling: .init(temperature: 1, seed: 3)),
            ]
            let together = try engine.generate(requests, tokenizer: .bytes)
            for (r, g) in zip(requests, together) {
                let alone = try engine.generate([r], tokenizer: .bytes)[0]
                #expect(g.tokens == alone.tokens, "\(name)")
                #expect(g.tokens == (try Self.recompute(model, prompt: r.prompt, count: r.maxTokens, sampling: r.sampling)), "\(name)")
            }
        }
    }

    @Test func promptsInPiecesEqualOnePrefill() throws {
        // A sliding-window cache fed its prompt in pieces (the rolling cache overwrites slots) gives
        // the logits of one prefill, to float rounding.
        let model = try Self.model("sliding")
        let engine = InferenceEngine(model: model)
        let prompt: [Int32] = Array(40..<60)
        let whole = engine.makeCache(positions: 30), pieces = engine.makeCache(positions: 30)
        let a = try engine.step([.init(cache: whole, tokens: prompt)])[0]
        _ = try engine.step([.init(cache: pieces, tokens: Array(prompt[0..<9]))])
        _ = try engine.step([.init(cache: pieces, tokens: Array(prompt[9..<17]))])
        let b = try engine.step([.init(cache: pieces, tokens: Array(prompt[17...]))])[0]
        let worst = zip(a, b).map { abs($0 - $1) }.max()!
        #expect(worst < 1e-4, "max |Δlogit| \(worst)")
        #expect(whole.length == 20 && pieces.length == 20)
    }

    @Test func limitsAndBadInput() throws {
        let model = try Self.model("dense")
        let engine = InferenceEngine(model: model)
        // max_seq_len 64: a 60-token prompt gets 4 tokens, finish reason length.
        let g = try engine.generate([GenerationRequest(prompt: Array(repeating: 5, count: 60), maxTokens: 50)], tokenizer: .bytes)[0]
        #expect(g.tokens.count == 4 && g.finishReason == .length)
        #expect(throws: ServeError.self) { try engine.generate([GenerationRequest(prompt: [], maxTokens: 3)], tokenizer: .bytes) }
        #expect(throws: ServeError.self) { try engine.generate([GenerationRequest(prompt: Array(repeating: 1, count: 64), maxTokens: 1)], tokenizer: .bytes) }
        #expect(throws: ServeError.self) { try engine.step([.init(cache: engine.makeCache(positions: 4), tokens: [300])]) }
        #expect(throws: ServeError.self) {
            try engine.generate([GenerationRequest(prompt: [1], maxTokens: 1, sampling: .init(topP: 0))], tokenizer: .bytes)
        }
    }
}

@Suite struct SamplingTests {
    @Test func topKOneAndTinyTopPAreGreedy() {
        let logits: [Float] = [0.1, 2.5, -1, 2.4, 0]
        var greedy = Sampler(.init())
        var k1 = Sampler(.init(temperature: 1.5, topK: 1, seed: 9))
        var p = Sampler(.init(temperature: 1.5, topP: 1e-6, seed: 9))
        for _ in 0..<20 {
            #expect(greedy.next(logits: logits, context: []) == 1)
            #expect(k1.next(logits: logits, context: []) == 1)
            #expect(p.next(logits: logits, context: []) == 1)
        }
    }

    @Test func repetitionPenaltyAndSeeds() {
        let logits: [Float] = [0.1, 2.5, -1, 2.4, 0]
        var penalised = Sampler(.init(repetitionPenalty: 2))
        #expect(penalised.next(logits: logits, context: [1]) == 3)   // 2.5 / 2 < 2.4
        func draw(_ seed: UInt64) -> [Int32] {
            var s = Sampler(.init(temperature: 1, seed: seed))
            return (0..<400).map { _ in s.next(logits: logits, context: []) }
        }
        #expect(draw(1) == draw(1))
        #expect(draw(1) != draw(2))
        #expect(Set(draw(1)).isSubset(of: [0, 1, 2, 3, 4]) && Set(draw(1)).count == 5)   // 400 draws reach every token (p ≥ 0.014)
    }

    @Test func stopSequencesAreCutAndHeldBack() {
        var m = StopMatcher(stops: ["END", "\n\n"])
        var shown: [UInt8] = []
        for piece in ["he", "llo E", "N", "X wor", "ld E", "ND more"] { shown += m.append(Array(piece.utf8)) }
        #expect(String(decoding: shown, as: UTF8.self) == "hello ENX world ")
        #expect(m.stopped)
        // An unfinished UTF-8 character waits for its last byte.
        var u = StopMatcher(stops: [])
        let e = Array("é".utf8)
        #expect(u.append([e[0]]).isEmpty)
        #expect(u.append([e[1]]) == e)
    }

    @Test func theEOSTokenStopsAGeneration() throws {
        let tokenizer = try BPETrainer(vocabularySize: 300).train(["aaaa bbbb aaaa bbbb"], pool: ThreadPool(threads: 1))
        let eos = try #require(ModelTokenizer.bpe(tokenizer).eosId)
        var c = ModelConfig()
        c.numLayers = 1; c.hiddenSize = 16; c.numAttentionHeads = 2; c.maxSeqLen = 32; c.vocabSize = 300; c.norm = "layernorm"
        let model = try Transformer(config: c, pool: ThreadPool(threads: 1))
        model.initializeParameters(seed: 1)
        // The final LayerNorm outputs its bias (weight 0, bias 1), and only the EOS row of the LM head sees it.
        let p = model.parameters.pointer
        (p + model.table.offset(.finalNormWeight)).update(repeating: 0, count: 16)
        (p + model.table.offset(.finalNormBias)).update(repeating: 1, count: 16)
        (p + model.table.offset(.lmHead)).update(repeating: 0, count: 300 * 16)
        (p + model.table.offset(.lmHead) + Int(eos) * 16).update(repeating: 1, count: 16)
        let engine = InferenceEngine(model: model)
        let g = try engine.generate([GenerationRequest(prompt: [5, 6], maxTokens: 10)], tokenizer: .bpe(tokenizer))[0]
        #expect(g.finishReason == .stop && g.tokens.isEmpty)
        let bytes = try engine.generate([GenerationRequest(prompt: [5, 6], maxTokens: 10)], tokenizer: .bytes)[0]
        #expect(bytes.finishReason == .length && bytes.tokens.count == 10)   // no EOS in the byte-level tokenizer
    }
}

/// An int8 model (`Transformer.quantize`) runs its linear layers in int8 in the engine too: its
/// prefill logits differ from the fp32 engine's (the in-process quantized model keeps the fp32
/// weights, so an engine that skipped the int8 path would give the fp32 logits exactly) and stay
/// within quantization noise of `Transformer.forward` on the same int8 model (not equal: the
/// engine's LM head quantizes only the last row's activations).
@Test(arguments: ["dense", "moe"])
func theEngineRunsAnInt8ModelInInt8(_ name: String) throws {
    let fp32 = try InferenceEngineTests.model(name)
    let int8 = try Transformer(config: fp32.config, pool: ThreadPool(threads: 2), precision: .int8)
    int8.parameters.pointer.update(from: fp32.parameters.pointer, count: fp32.table.count)
    int8.quantize(perChannel: false)
    let prompt: [Int32] = [72, 101, 108, 108, 111, 44, 32, 119, 111]
    let v = fp32.config.vocabSize
    func prefill(_ m: Transformer) throws -> [Float] {
        let engine = InferenceEngine(model: m)
        return try engine.step([.init(cache: engine.makeCache(positions: 16), tokens: prompt)])[0]
    }
    let got = try prefill(int8), plain = try prefill(fp32)
    try int8.forward(inputs: prompt, targets: nil, batch: 1, seqLen: prompt.count)
    let forward = Array(int8.logits[((prompt.count - 1) * v)..<(prompt.count * v)])
    let fromFP32 = zip(got, plain).map { abs($0 - $1) }.max()!, fromForward = zip(got, forward).map { abs($0 - $1) }.max()!
    let scale = plain.map(abs).max()!
    #expect(fromFP32 > 1e-4 * scale, "\(name): the engine's int8 logits equal the fp32 ones")
    #expect(fromForward < 0.05 * scale, "\(name): engine vs forward on the int8 model: \(fromForward) (logits up to \(scale))")
}
