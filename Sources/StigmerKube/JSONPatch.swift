import StigmerCore

/// One RFC 6902 operation: the injector only adds (an `add` on an existing object member
/// replaces it), so `add` is all it emits; `apply` also knows `replace` and `remove` for
/// tests and for what a reader might hand it.
public enum PatchOperation: Sendable {
    case add(String, Document)
    case replace(String, Document)
    case remove(String)

    public var path: String {
        switch self {
        case .add(let path, _), .replace(let path, _), .remove(let path): path
        }
    }

    /// An object key as a JSON Pointer token (RFC 6901: `~` → `~0`, `/` → `~1`).
    public static func escape(_ key: String) -> String {
        key.replacingAll("~", with: "~0").replacingAll("/", with: "~1")
    }

    static func unescape(_ token: Substring) -> String {
        String(token).replacingAll("~1", with: "/").replacingAll("~0", with: "~")
    }

    /// The operations as one JSON array (what AdmissionReview's `patch` carries, base64'd).
    public static func json(_ ops: [PatchOperation]) -> String {
        var out = "["
        for (i, op) in ops.enumerated() {
            if i > 0 { out += "," }
            switch op {
            case .add(let path, let value), .replace(let path, let value):
                out += "{\"op\":\"\(op.name)\",\"path\":\(JSONWriter.quote(path)),\"value\":"
                JSONWriter.writeCompact(value, into: &out)
                out += "}"
            case .remove(let path):
                out += "{\"op\":\"remove\",\"path\":\(JSONWriter.quote(path))}"
            }
        }
        return out + "]"
    }

    var name: String {
        switch self {
        case .add: "add"
        case .replace: "replace"
        case .remove: "remove"
        }
    }

    /// `document` with the operations applied in order, or the first one that cannot be.
    public static func apply(_ ops: [PatchOperation], to document: Document) throws(InjectionDenied) -> Document {
        var result = document
        for op in ops {
            guard op.path.hasPrefix("/") else { throw InjectionDenied("patch path \(quoted(op.path)) must start with /") }
            let tokens = op.path.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map(unescape)
            result = try apply(op, tokens: tokens[...], to: result)
        }
        return result
    }

    static func apply(_ op: PatchOperation, tokens: ArraySlice<String>, to node: Document) throws(InjectionDenied) -> Document {
        guard let token = tokens.first else {
            throw InjectionDenied("patch path \(quoted(op.path)) names the whole document")
        }
        let last = tokens.count == 1
        switch node.kind {
        case .mapping(var entries):
            let index = entries.firstIndex { $0.key == token }
            if last {
                switch op {
                case .add(_, let value):
                    if let index { entries[index].value = value } else { entries.append(Document.Entry(key: token, keyLine: 0, keyColumn: 0, value: value)) }
                case .replace(_, let value):
                    guard let index else { throw InjectionDenied("patch path \(quoted(op.path)) does not exist") }
                    entries[index].value = value
                case .remove:
                    guard let index else { throw InjectionDenied("patch path \(quoted(op.path)) does not exist") }
                    entries.remove(at: index)
                }
            } else {
                guard let index else { throw InjectionDenied("patch path \(quoted(op.path)) does not exist") }
                entries[index].value = try apply(op, tokens: tokens.dropFirst(), to: entries[index].value)
            }
            return Document(.mapping(entries), line: node.line, column: node.column)
        case .sequence(var items):
            let position: Int
            if token == "-" {
                guard last, case .add = op else { throw InjectionDenied("patch path \(quoted(op.path)): '-' only appends") }
                position = items.count
            } else {
                guard let n = Int(token), n >= 0, n <= items.count, token == String(n) else {
                    throw InjectionDenied("patch path \(quoted(op.path)): \(quoted(token)) is not an index of the list")
                }
                position = n
            }
            if last {
                switch op {
                case .add(_, let value): items.insert(value, at: position)
                case .replace(_, let value):
                    guard position < items.count else { throw InjectionDenied("patch path \(quoted(op.path)) does not exist") }
                    items[position] = value
                case .remove:
                    guard position < items.count else { throw InjectionDenied("patch path \(quoted(op.path)) does not exist") }
                    items.remove(at: position)
                }
            } else {
                guard position < items.count else { throw InjectionDenied("patch path \(quoted(op.path)) does not exist") }
                items[position] = try apply(op, tokens: tokens.dropFirst(), to: items[position])
            }
            return Document(.sequence(items), line: node.line, column: node.column)
        default:
            throw InjectionDenied("patch path \(quoted(op.path)) goes through a scalar")
        }
    }
}
