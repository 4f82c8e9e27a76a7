/// A manifest's `config` left undecoded, for readers that need only the tensors (e.g.
/// `CheckpointStore.parameters(of:table:)`, which works whatever config type wrote the checkpoint).
struct IgnoredConfig: Codable, Sendable {
    init() {}
    init(from decoder: any Decoder) throws {}
    func encode(to encoder: any Encoder) throws {}
}
