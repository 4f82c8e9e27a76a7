/// Which flat buffer of a shard: the parameters or one of AdamW's moments (all in the layout of
/// the model's `ParameterTable`). The raw value is the tensor's name in the shard file.
public enum ShardTensor: String, CaseIterable, Codable, Sendable {
    case parameters, expAvg = "exp_avg", expAvgSq = "exp_avg_sq"
}
