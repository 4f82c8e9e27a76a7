import Foundation

/// Tests/Fixtures, found from this file's path so tests run from any working directory.
enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    static func reference(_ name: String) -> URL { root.appendingPathComponent("reference").appendingPathComponent(name) }
}
