/// Union-find over document indices whose root is always the smallest index of its set, so
/// "keep the root" keeps the first document of every cluster.
public struct UnionFind: Sendable {
    public private(set) var parent: [Int32] = []

    public init() {}

    public mutating func add() -> Int {
        parent.append(Int32(parent.count))
        return parent.count - 1
    }

    public mutating func find(_ x: Int) -> Int {
        var r = x
        while Int(parent[r]) != r { r = Int(parent[r]) }
        var c = x
        while Int(parent[c]) != r {
            let next = Int(parent[c])
            parent[c] = Int32(r)
            c = next
        }
        return r
    }

    public mutating func union(_ x: Int, _ y: Int) {
        let a = find(x), b = find(y)
        if a == b { return }
        if a < b { parent[b] = Int32(a) } else { parent[a] = Int32(b) }
    }

    public var count: Int { parent.count }
}

/// MinHash-LSH near-duplicate index: each band of a signature is a bucket key; a document
/// joins the cluster of the first document that shared any of its buckets. Memory is
/// 8 bytes × bands per document (one table per band, the key and the first index) plus the
/// union-find, never the text.
public struct NearDuplicateIndex: Sendable {
    public let bands: LSHBands
    private var tables: [[UInt64: Int32]]
    public private(set) var clusters = UnionFind()

    public init(bands: LSHBands) {
        self.bands = bands
        tables = Array(repeating: [:], count: bands.bands)
    }

    /// Adds the next document (index = number added so far) with its signature; nil signature
    /// (no words) makes a singleton. Returns the index.
    @discardableResult
    public mutating func add(_ signature: UnsafeBufferPointer<UInt32>?) -> Int {
        let id = clusters.add()
        guard let signature else { return id }
        for band in 0..<bands.bands {
            let key = bands.key(signature, band: band)
            if let first = tables[band][key] {
                clusters.union(Int(first), id)
            } else {
                tables[band][key] = Int32(id)
            }
        }
        return id
    }

    /// The document's cluster representative (its first member).
    public mutating func root(_ id: Int) -> Int { clusters.find(id) }
}
