import Common
import Foundation
import Yams

/// A parsed config document: YAML (or JSON, which is YAML) as a plain tree. Plain YAML scalars
/// resolve to bool, int, double or null by their text; quoted ones stay strings.
public indirect enum ConfigValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([ConfigValue])
    case map([(key: String, value: ConfigValue)])

    public static func == (a: ConfigValue, b: ConfigValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.int(x), .int(y)): return x == y
        case let (.double(x), .double(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.map(x), .map(y)): return x.map(\.key) == y.map(\.key) && x.map(\.value) == y.map(\.value)
        default: return false
        }
    }

    /// Parses YAML text; syntax errors become one line with the position.
    public static func parse(yaml: String, source: String) throws -> ConfigValue {
        let node: Node?
        do {
            node = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            throw ConfigError("\(source): invalid YAML: \(oneLine(error))")
        } catch {
            throw ConfigError("\(source): invalid YAML: \(error)")
        }
        guard let node else { throw ConfigError("\(source): the file is empty") }
        return try convert(node, path: "")
    }

    private static func oneLine(_ error: YamlError) -> String {
        switch error {
        case let .scanner(_, problem, mark, _), let .parser(_, problem, mark, _), let .composer(_, problem, mark, _):
            return "\(problem) at line \(mark.line), column \(mark.column)"
        case let .duplicatedKeysInMapping(duplicates, _):
            return "duplicate keys \(duplicates.joined(separator: ", "))"
        default:
            return String(describing: error).split(separator: "\n").first.map(String.init) ?? "unreadable"
        }
    }

    private static func convert(_ node: Node, path: String) throws -> ConfigValue {
        switch node {
        case .scalar(let s):
            if s.style == .singleQuoted || s.style == .doubleQuoted || s.style == .literal || s.style == .folded {
                return .string(s.string)
            }
            let text = s.string
            switch text {
            case "", "~", "null", "Null", "NULL": return .null
            case "true", "True", "TRUE": return .bool(true)
            case "false", "False", "FALSE": return .bool(false)
            default: break
            }
            if let i = Int(text.replacingOccurrences(of: "_", with: "")), !text.hasPrefix("_") { return .int(i) }
            if let d = Double(text), text.rangeOfCharacter(from: .letters.subtracting(CharacterSet(charactersIn: "eE"))) == nil {
                return .double(d)
            }
            return .string(text)
        case .sequence(let seq):
            return .array(try seq.enumerated().map { try convert($0.element, path: "\(path)[\($0.offset)]") })
        case .mapping(let map):
            var pairs: [(key: String, value: ConfigValue)] = []
            var seen = Set<String>()
            for (k, v) in map {
                guard case .scalar(let ks) = k else { throw ConfigError("\(path.isEmpty ? "config" : path): keys must be plain strings") }
                let key = ks.string
                let childPath = path.isEmpty ? key : "\(path).\(key)"
                guard seen.insert(key).inserted else { throw ConfigError("\(childPath): duplicate key") }
                pairs.append((key, try convert(v, path: childPath)))
            }
            return .map(pairs)
        case .alias:
            throw ConfigError("\(path): YAML aliases are not supported")
        }
    }

    /// Converts a JSON object (from JSONSerialization) to a tree.
    public static func from(json: Any) -> ConfigValue {
        switch json {
        case is NSNull: return .null
        case let s as String: return .string(s)
        case let n as NSNumber:
            if String(cString: n.objCType) == "c" { return .bool(n.boolValue) }
            if n.doubleValue == n.doubleValue.rounded() && abs(n.doubleValue) < 1e15 { return .int(n.intValue) }
            return .double(n.doubleValue)
        case let a as [Any]: return .array(a.map(from(json:)))
        case let d as [String: Any]: return .map(d.keys.sorted().map { ($0, from(json: d[$0]!)) })
        default: return .string(String(describing: json))
        }
    }

    var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .int: "an integer"
        case .double: "a number"
        case .string: "a string"
        case .array: "a list"
        case .map: "a mapping"
        }
    }

    var shortDescription: String {
        switch self {
        case .null: "null"
        case .bool(let b): "\(b)"
        case .int(let i): "\(i)"
        case .double(let d): "\(d)"
        case .string(let s): "\"\(s)\""
        case .array: "a list"
        case .map: "a mapping"
        }
    }
}
