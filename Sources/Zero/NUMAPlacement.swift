import CNUMA

/// Binds the calling thread (and the threads it starts afterwards) and its memory preference to a
/// NUMA node. Where libnuma reports no NUMA support, or there is one node, it does nothing.
public enum NUMAPlacement {
    /// Number of NUMA nodes, or 1 when libnuma is unavailable.
    public static var nodeCount: Int {
        guard numa_available() >= 0 else { return 1 }
        return Int(numa_max_node()) + 1
    }

    /// Places the calling thread on `node` (taken modulo the node count). Returns the node used,
    /// or nil when nothing was done.
    @discardableResult
    public static func bindCurrentThread(toNode node: Int) -> Int? {
        let nodes = nodeCount
        guard nodes > 1 else { return nil }
        let n = Int32(node % nodes)
        guard numa_run_on_node(n) == 0 else { return nil }
        numa_set_preferred(n)
        return Int(n)
    }
}
