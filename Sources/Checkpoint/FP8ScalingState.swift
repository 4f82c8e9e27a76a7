/// The delayed-scaling state of an fp8 run as a checkpoint records it (`manifest.json`'s
/// `fp8_scaling`; absent in other precisions): every weight matrix's amax histories, one entry per
/// optimizer step, the same on every rank of the job (the amaxes are reduced over the ranks each
/// step). A resumed run casts with the scales the uninterrupted run would have used.
public struct FP8ScalingState: Codable, Sendable, Equatable {
    /// Steps each history covers (`training.fp8_amax_history` of the run that wrote it).
    public var historyLength: Int
    /// By weight matrix (Hugging Face name): the amax histories of its weight, its input and its
    /// output gradient, oldest first, back to back (3 · `historyLength` values).
    public var student: [String: [Float]]
    /// The distillation teacher's, as `student` (nil without an fp8 teacher).
    public var teacher: [String: [Float]]?

    enum CodingKeys: String, CodingKey { case historyLength = "history_length", student, teacher }

    public init(historyLength: Int, student: [String: [Float]], teacher: [String: [Float]]? = nil) {
        self.historyLength = historyLength
        self.student = student
        self.teacher = teacher
    }

    /// `histories` (3 histories of `historyLength` per matrix) with `length` entries per history:
    /// the newest ones kept, zeros (no amax) for steps before the oldest.
    public func resized(_ histories: [String: [Float]], to length: Int) -> [String: [Float]] {
        let h = historyLength
        guard length != h else { return histories }
        return histories.mapValues { values in
            (0..<3).flatMap { part -> [Float] in
                let history = values.count == 3 * h ? Array(values[(part * h)..<((part + 1) * h)]) : []
                return Array(repeating: 0, count: max(0, length - history.count)) + history.suffix(length)
            }
        }
    }

    /// Every history, the student's then the teacher's, each in the order of the sorted names,
    /// as one vector (for a collective).
    public var flattened: [Float] {
        func flat(_ h: [String: [Float]]) -> [Float] { h.keys.sorted().flatMap { h[$0]! } }
        return flat(student) + flat(teacher ?? [:])
    }

    /// This state's shape (names, lengths) filled with `values` as `flattened` orders them.
    public func filled(with values: [Float]) -> FP8ScalingState {
        precondition(values.count == flattened.count, "\(flattened.count) values expected, got \(values.count)")
        var at = 0
        func fill(_ h: [String: [Float]]) -> [String: [Float]] {
            var out: [String: [Float]] = [:]
            for name in h.keys.sorted() {
                out[name] = Array(values[at..<(at + h[name]!.count)])
                at += h[name]!.count
            }
            return out
        }
        let s = fill(student)
        return FP8ScalingState(historyLength: historyLength, student: s, teacher: teacher.map(fill))
    }
}
