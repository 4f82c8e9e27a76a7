import Model

/// Where the ranks' shards cut the model's regions (`ParameterTable.regions`): what the stage 2–3
/// engines' ragged collectives send and keep, region by region.
struct RegionShards {
    let regions: [Range<Int>]
    /// Every rank's slice of the flat buffer, and this rank's.
    let shards: [Range<Int>]
    let range: Range<Int>

    init(table: ParameterTable, plan: PartitionPlan, rank: Int) {
        regions = table.regions
        shards = (0..<plan.worldSize).map(plan.shardRange)
        range = shards[rank]
    }

    /// The pieces of region `r` each rank owns: the chunks of its ragged reduce-scatter or all-gather.
    func chunks(_ r: Int) -> [Int] { shards.map { regions[r].clamped(to: $0).count } }

    /// This rank's part of region `r`, in flat-buffer coordinates.
    func ownPart(_ r: Int) -> Range<Int> { regions[r].clamped(to: range) }
}
