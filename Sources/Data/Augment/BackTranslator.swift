import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Back-translation (text → pivot language → source language) through an OpenAI-compatible
/// `POST {endpoint}/chat/completions`: one request per direction, temperature 0, the text as
/// the user message after an instruction to translate it and answer with the translation only.
public final class BackTranslator: Sendable {
    public let config: BackTranslationConfig
    private let apiKey: String?

    public init(config: BackTranslationConfig) {
        self.config = config
        let key = ProcessInfo.processInfo.environment[config.apiKeyEnv]
        apiKey = (key?.isEmpty ?? true) ? nil : key
    }

    public func backTranslate(_ text: String) throws -> String {
        try translate(try translate(text, from: config.sourceLanguage, to: config.pivot), from: config.pivot, to: config.sourceLanguage)
    }

    /// One chat completion; an HTTP error, a timeout or an answer without a message is an error
    /// naming the endpoint.
    public func translate(_ text: String, from source: String, to target: String) throws -> String {
        let base = config.endpoint.hasSuffix("/") ? String(config.endpoint.dropLast()) : config.endpoint
        guard let url = URL(string: base + "/chat/completions") else {
            throw DataError(.invalidConfig, "augment.back_translation.endpoint: not a URL: \(config.endpoint)")
        }
        var request = URLRequest(url: url, timeoutInterval: config.timeoutSeconds)
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        if let apiKey { request.setValue("Bearer \(apiKey)", forHTTPHeaderField: "Authorization") }
        let body: [String: Any] = [
            "model": config.model, "temperature": 0,
            "messages": [
                ["role": "system", "content": "Translate the user's text from \(source) to \(target). Answer with the translation only."],
                ["role": "user", "content": text],
            ],
        ]
        request.httpBody = try JSONSerialization.data(withJSONObject: body)
        let (data, status) = try Self.send(request, timeout: config.timeoutSeconds + 5)
        let what = "back-translation endpoint \(url.absoluteString)"
        guard status == 200 else {
            let detail = String(decoding: data.prefix(200), as: UTF8.self).replacingOccurrences(of: "\n", with: " ")
            throw DataError(.unreadable, "\(what): HTTP \(status)\(detail.isEmpty ? "" : ": \(detail)")")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let choices = object["choices"] as? [[String: Any]], let message = choices.first?["message"] as? [String: Any],
              let content = message["content"] as? String else {
            throw DataError(.malformed, "\(what): the answer has no choices[0].message.content")
        }
        return content.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The body and status of one request, waiting for it (the pipeline's threads are synchronous).
    static func send(_ request: URLRequest, timeout: Double) throws -> (Data, Int) {
        final class Outcome: @unchecked Sendable {  // Written once by the session's callback before `done` signals.
            var data = Data(), status = 0
            var error: (any Error)?
        }
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        let task = URLSession.shared.dataTask(with: request) { data, response, error in
            outcome.data = data ?? Data()
            outcome.status = (response as? HTTPURLResponse)?.statusCode ?? 0
            outcome.error = error
            done.signal()
        }
        task.resume()
        if done.wait(timeout: .now() + timeout) == .timedOut {
            task.cancel()
            throw DataError(.unreadable, "\(request.url?.absoluteString ?? ""): no answer within \(Int(timeout)) s")
        }
        if let error = outcome.error { throw DataError(.unreadable, "\(request.url?.absoluteString ?? ""): \(error.localizedDescription)") }
        return (outcome.data, outcome.status)
    }
}
