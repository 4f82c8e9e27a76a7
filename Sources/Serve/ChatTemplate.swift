/// How chat messages become a prompt. ZeroTrain's models have no chat training of their own, so
/// the server uses one documented default (docs/serving.md), and `zerotrain export` writes the same
/// template as Jinja into tokenizer_config.json, so transformers' `apply_chat_template` builds the
/// same prompt:
///
///     ### System:\n{content}\n\n### User:\n{content}\n\n### Assistant:\n
///
/// one block per message (the role capitalised), then the assistant's header. Chat completions
/// also stop at "\n### " (the start of the next block), besides the request's own stop sequences.
public enum ChatTemplate {
    public struct Message: Sendable, Equatable {
        public var role: String
        public var content: String
        public init(role: String, content: String) { self.role = role; self.content = content }
    }

    public static func prompt(_ messages: [Message]) -> String {
        var text = ""
        for m in messages { text += "### \(capitalised(m.role)):\n\(m.content)\n\n" }
        return text + "### Assistant:\n"
    }

    /// Where a reply ends: the header of the next block.
    public static let stop = "\n### "

    /// The same template in Jinja (tokenizer_config.json's `chat_template`).
    public static let jinja = "{% for message in messages %}### {{ message['role'] | capitalize }}:\n{{ message['content'] }}\n\n{% endfor %}"
        + "{% if add_generation_prompt %}### Assistant:\n{% endif %}"

    /// Jinja's `capitalize`: the first character upper case, the rest lower case.
    static func capitalised(_ s: String) -> String { s.prefix(1).uppercased() + s.dropFirst().lowercased() }
}
