import Data
import Model

/// What a generation asks for.
public struct GenerationRequest: Sendable {
    public var prompt: [Int32]
    /// Tokens to generate at most (fewer when the model's max_seq_len comes first).
    public var maxTokens: Int
    public var sampling: SamplingParameters
    /// Texts that end the generation; the result stops before the first one.
    public var stop: [String]

    public init(prompt: [Int32], maxTokens: Int, sampling: SamplingParameters = .init(), stop: [String] = []) {
        self.prompt = prompt
        self.maxTokens = maxTokens
        self.sampling = sampling
        self.stop = stop
    }
}

/// Why a generation ended (OpenAI's finish_reason).
public enum FinishReason: String, Sendable {
    /// A stop sequence or the end-of-sequence token.
    case stop
    /// max_tokens, or the model's context (max_seq_len) is full.
    case length
}

/// One sequence being generated: its cache, sampler and stop matcher. `input` is what the next
/// engine step must run (the prompt first, then the last sampled token); `accept` takes that
/// step's logits.
public final class Generation {
    public let request: GenerationRequest
    public let cache: KVCache
    public private(set) var tokens: [Int32] = []
    public private(set) var finishReason: FinishReason?
    private var sampler: Sampler
    private var matcher: StopMatcher
    private let tokenizer: ModelTokenizer
    private let limit: Int

    /// Throws `badInput` for an empty prompt or one that leaves no room in max_seq_len.
    public init(_ request: GenerationRequest, engine: InferenceEngine, tokenizer: ModelTokenizer) throws {
        let maxSeqLen = engine.config.maxSeqLen
        guard !request.prompt.isEmpty else { throw ServeError(.badInput, "the prompt is empty") }
        guard request.prompt.count < maxSeqLen else {
            throw ServeError(.badInput, "the prompt has \(request.prompt.count) tokens; the model's context (max_seq_len) is \(maxSeqLen)")
        }
        guard request.maxTokens >= 0 else { throw ServeError(.badInput, "max_tokens must be ≥ 0, got \(request.maxTokens)") }
        if let problem = request.sampling.problem { throw ServeError(.badInput, problem) }
        self.request = request
        self.tokenizer = tokenizer
        limit = min(request.maxTokens, maxSeqLen - request.prompt.count)
        cache = engine.makeCache(positions: request.prompt.count + limit)
        sampler = Sampler(request.sampling)
        matcher = StopMatcher(stops: request.stop)
        if limit == 0 { finishReason = .length }
    }

    /// The tokens the next step runs.
    public var input: [Int32] { tokens.isEmpty ? request.prompt : [tokens[tokens.count - 1]] }

    /// Samples the next token from `logits` (of the last input token); returns the text that may be
    /// shown now (UTF-8 bytes; held back while it may still start a stop sequence). Sets
    /// `finishReason` when the generation is over.
    public func accept(logits: [Float]) -> [UInt8] {
        precondition(finishReason == nil, "the generation is over")
        let token = sampler.next(logits: logits, context: request.prompt + tokens)
        if token == tokenizer.eosId {
            finishReason = .stop
            return matcher.finish()
        }
        tokens.append(token)
        var text = matcher.append(tokenizer.decodeBytes([token]))
        if matcher.stopped {
            finishReason = .stop
        } else if tokens.count >= limit {
            finishReason = .length
            text += matcher.finish()
        }
        return text
    }

    /// The generated text (before a stop sequence, if one appeared).
    public var text: String { String(decoding: matcher.bytes, as: UTF8.self) }
}

extension InferenceEngine {
    /// Generates every request to its end, all in one running batch (prefill together, then one
    /// decode step per token for those still going). Returns the finished generations, in order.
    public func generate(_ requests: [GenerationRequest], tokenizer: ModelTokenizer,
                         onText: ((Int, [UInt8]) -> Void)? = nil) throws -> [Generation] {
        let generations = try requests.map { try Generation($0, engine: self, tokenizer: tokenizer) }
        var running = generations.indices.filter { generations[$0].finishReason == nil }
        while !running.isEmpty {
            let logits = try step(running.map { Item(cache: generations[$0].cache, tokens: generations[$0].input) })
            for (slot, i) in running.enumerated() {
                let text = generations[i].accept(logits: logits[slot])
                if !text.isEmpty { onText?(i, text) }
            }
            running.removeAll { generations[$0].finishReason != nil }
        }
        return generations
    }
}
