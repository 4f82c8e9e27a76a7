import Foundation

/// A parsed request of one of the generation endpoints, whatever its JSON dialect.
public struct APIRequest: Sendable {
    public enum Endpoint: String, Sendable {
        /// POST /predict: {"prompt" (or "text"), "max_new_tokens", sampling…} → {"generated_text", …}.
        case predict
        /// POST /v1/completions (OpenAI).
        case completions = "completions"
        /// POST /v1/chat/completions (OpenAI).
        case chatCompletions = "chat_completions"
    }

    public var endpoint: Endpoint
    /// The prompt text (for chat: the messages through `ChatTemplate`).
    public var prompt: String
    /// Tokens to generate; nil = the endpoint's default.
    public var maxTokens: Int?
    public var sampling: SamplingParameters
    public var stop: [String]
    public var stream: Bool
    public var model: String?

    /// Parses `body` (JSON) for `endpoint`; throws `badInput` naming the field and the rule.
    public init(endpoint: Endpoint, body: Data) throws {
        guard case let .object(object)? = try? JSONDecoder().decode(JSONValue.self, from: body) else {
            throw ServeError(.badInput, body.isEmpty ? "the request has no body: expected a JSON object" : "the body is not a JSON object")
        }
        let j = Fields(object)
        self.endpoint = endpoint
        model = try j.string("model")
        stream = try j.bool("stream") ?? false
        switch endpoint {
        case .predict:
            guard let text = try j.string("prompt") ?? j.string("text") else { throw ServeError(.badInput, "prompt: required (a string)") }
            prompt = text
            maxTokens = try j.int("max_new_tokens") ?? j.int("max_tokens")
        case .completions:
            if case let .string(text)? = object["prompt"] {
                prompt = text
            } else if case let .array(list)? = object["prompt"], list.count == 1, case let .string(text) = list[0] {
                prompt = text
            } else {
                throw ServeError(.badInput, object["prompt"] == nil ? "prompt: required (a string)"
                                 : "prompt: must be a string (or a list of one string)")
            }
            maxTokens = try j.int("max_tokens") ?? 16   // OpenAI's default for completions
        case .chatCompletions:
            guard case let .array(list)? = object["messages"], !list.isEmpty else {
                throw ServeError(.badInput, "messages: required (a non-empty list of {role, content})")
            }
            var messages: [ChatTemplate.Message] = []
            for (i, item) in list.enumerated() {
                guard case let .object(m) = item, case let .string(role)? = m["role"], !role.isEmpty else {
                    throw ServeError(.badInput, "messages[\(i)]: must be an object with a string role")
                }
                let content: String
                if case let .string(text)? = m["content"] {
                    content = text
                } else if case let .array(parts)? = m["content"] {
                    // Content parts: the text ones, concatenated.
                    content = try parts.enumerated().map { k, part in
                        guard case let .object(p) = part, p["type"] == .string("text"), case let .string(text)? = p["text"] else {
                            throw ServeError(.badInput, "messages[\(i)].content[\(k)]: only {type: text, text} parts are supported")
                        }
                        return text
                    }.joined()
                } else {
                    throw ServeError(.badInput, "messages[\(i)].content: must be a string")
                }
                messages.append(.init(role: role, content: content))
            }
            prompt = ChatTemplate.prompt(messages)
            maxTokens = try j.int("max_completion_tokens") ?? j.int("max_tokens")
        }
        if let n = try j.int("n"), n != 1 { throw ServeError(.badInput, "n: only 1 is supported, got \(n)") }
        var sampling = SamplingParameters()
        // OpenAI's default temperature is 1; /predict's is greedy.
        sampling.temperature = try j.double("temperature") ?? (endpoint == .predict ? 0 : 1)
        sampling.topK = try j.int("top_k") ?? 0
        sampling.topP = try j.double("top_p") ?? 1
        sampling.repetitionPenalty = try j.double("repetition_penalty") ?? 1
        if let seed = try j.int("seed") {
            guard seed >= 0 else { throw ServeError(.badInput, "seed: must be ≥ 0, got \(seed)") }
            sampling.seed = UInt64(seed)
        }
        if let problem = sampling.problem { throw ServeError(.badInput, problem) }
        self.sampling = sampling
        switch object["stop"] {
        case let .string(one)?: stop = [one]
        case let .array(list)?:
            stop = try list.map {
                guard case let .string(s) = $0 else { throw ServeError(.badInput, "stop: must be a string or a list of strings") }
                return s
            }
        case nil, .null?: stop = []
        default: throw ServeError(.badInput, "stop: must be a string or a list of strings")
        }
        if stop.count > 4 { throw ServeError(.badInput, "stop: at most 4 sequences, got \(stop.count)") }
        if endpoint == .chatCompletions { stop.append(ChatTemplate.stop) }
        if let maxTokens, maxTokens < 0 { throw ServeError(.badInput, "max_tokens: must be ≥ 0, got \(maxTokens)") }
    }

    /// Typed access to a JSON object's optional fields (null = absent); a wrong type is `badInput`.
    struct Fields {
        let object: [String: JSONValue]
        init(_ object: [String: JSONValue]) { self.object = object }

        func string(_ key: String) throws -> String? {
            switch object[key] {
            case nil, .null?: return nil
            case let .string(s)?: return s
            default: throw ServeError(.badInput, "\(key): must be a string")
            }
        }

        func bool(_ key: String) throws -> Bool? {
            switch object[key] {
            case nil, .null?: return nil
            case let .bool(b)?: return b
            default: throw ServeError(.badInput, "\(key): must be true or false")
            }
        }

        func int(_ key: String) throws -> Int? {
            switch object[key] {
            case nil, .null?: return nil
            case let .number(x)? where x == x.rounded() && abs(x) < 1e15: return Int(x)
            default: throw ServeError(.badInput, "\(key): must be a whole number")
            }
        }

        func double(_ key: String) throws -> Double? {
            switch object[key] {
            case nil, .null?: return nil
            case let .number(x)?: return x
            default: throw ServeError(.badInput, "\(key): must be a number")
            }
        }
    }
}

/// Any JSON value (what a request body may hold).
enum JSONValue: Decodable, Equatable, Sendable {
    case null, bool(Bool), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let x = try? c.decode(Double.self) { self = .number(x) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }
}
