import StigmerCore
import Yams

/// YAML through Yams (libyaml), reduced to a `Document` with positions. Error messages carry
/// the parser's problem and position only — never Yams's snippet of the input, which could
/// show a secret written in the file.
enum YAMLReader {
    /// Aliases can multiply a small file into a huge tree ("billion laughs"): cap the nodes.
    static let nodeLimit = 1_000_000

    static func documents(_ text: String, file: String) throws(StigmerError) -> [Document] {
        var out: [Document] = []
        do {
            var budget = nodeLimit
            var sequence = try Yams.compose_all(yaml: text)
            while let node = sequence.next() {
                out.append(try convert(node, file: file, budget: &budget))
            }
            // The sequence keeps a parse error in `error` instead of throwing it.
            if let error = sequence.error { throw error }
        } catch let error as StigmerError {
            throw error
        } catch let error as YamlError {
            throw describe(error, file: file)
        } catch {
            throw .data("\(file): invalid YAML")
        }
        return out
    }

    static func convert(_ node: Node, file: String, budget: inout Int) throws(StigmerError) -> Document {
        budget -= 1
        guard budget >= 0 else { throw .data("\(file): document too large after expanding aliases; simplify it") }
        let line = node.mark?.line ?? 0
        let column = node.mark?.column ?? 0
        switch node {
        case .scalar(let scalar):
            let plain = scalar.style == .plain
            if plain && ["", "~", "null", "Null", "NULL"].contains(scalar.string) {
                return Document(.null, line: line, column: column)
            }
            return Document(.scalar(scalar.string, plain: plain), line: line, column: column)
        case .mapping(let mapping):
            var entries: [Document.Entry] = []
            for (key, value) in mapping {
                guard case .scalar(let k) = key else {
                    throw .data("\(file):\(key.mark?.line ?? line):\(key.mark?.column ?? column): mapping keys must be plain strings")
                }
                entries.append(Document.Entry(key: k.string, keyLine: key.mark?.line ?? 0,
                                              keyColumn: key.mark?.column ?? 0,
                                              value: try convert(value, file: file, budget: &budget)))
            }
            return Document(.mapping(entries), line: line, column: column)
        case .sequence(let sequence):
            var items: [Document] = []
            for item in sequence { items.append(try convert(item, file: file, budget: &budget)) }
            return Document(.sequence(items), line: line, column: column)
        case .alias:
            throw .data("\(file):\(line):\(column): YAML aliases are not supported here; write the value out")
        }
    }

    static func describe(_ error: YamlError, file: String) -> StigmerError {
        switch error {
        case .scanner(let context, let problem, let mark, _),
             .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            let ctx = context.map { " \($0.text)" } ?? ""
            return .data("\(file):\(mark.line):\(mark.column): invalid YAML: \(problem)\(ctx)")
        case .reader(let problem, let offset, _, _):
            return .data("\(file): invalid YAML: \(problem)\(offset.map { " at byte \($0)" } ?? "")")
        case .duplicatedKeysInMapping(let duplicates, let context):
            return .data("\(file):\(context.mark.line):\(context.mark.column): duplicate key\(duplicates.count == 1 ? "" : "s") \(duplicates.map(quoted).joined(separator: ", ")); keep one")
        default:
            return .data("\(file): invalid YAML")
        }
    }
}
