/// Writes a `Document` as JSON, keeping key order (used by `mcp wrap`). Unquoted YAML
/// scalars that read as JSON numbers, booleans or null stay bare; all else is a string.
public enum JSONWriter {
    public static func write(_ doc: Document, indent: Int = 0) -> String {
        var out = ""
        write(doc, indent: indent, into: &out)
        return out
    }

    static func write(_ doc: Document, indent: Int, into out: inout String) {
        let pad = String(repeating: "  ", count: indent + 1)
        let close = String(repeating: "  ", count: indent)
        switch doc.kind {
        case .null:
            out += "null"
        case .scalar(let text, let plain):
            out += plain && isBare(text) ? text : quote(text)
        case .sequence(let items):
            if items.isEmpty { out += "[]"; return }
            out += "[\n"
            for (i, item) in items.enumerated() {
                out += pad
                write(item, indent: indent + 1, into: &out)
                out += i == items.count - 1 ? "\n" : ",\n"
            }
            out += close + "]"
        case .mapping(let entries):
            if entries.isEmpty { out += "{}"; return }
            out += "{\n"
            for (i, entry) in entries.enumerated() {
                out += pad + quote(entry.key) + ": "
                write(entry.value, indent: indent + 1, into: &out)
                out += i == entries.count - 1 ? "\n" : ",\n"
            }
            out += close + "}"
        }
    }

    /// Compact JSON (no spaces or newlines), for bodies on the wire.
    public static func writeCompact(_ doc: Document, into out: inout String) {
        switch doc.kind {
        case .null:
            out += "null"
        case .scalar(let text, let plain):
            out += plain && isBare(text) ? text : quote(text)
        case .sequence(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                writeCompact(item, into: &out)
            }
            out += "]"
        case .mapping(let entries):
            out += "{"
            for (i, entry) in entries.enumerated() {
                if i > 0 { out += "," }
                out += quote(entry.key) + ":"
                writeCompact(entry.value, into: &out)
            }
            out += "}"
        }
    }

    /// Whether `text` is a JSON literal as it stands: true, false, null, or a number by
    /// RFC 8259's grammar (`-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`). YAML's
    /// `+1`, `.5`, `1.` and `007` are numbers to YAML but not JSON: they are written as
    /// strings, so the output always parses.
    static func isBare(_ text: String) -> Bool {
        if text == "true" || text == "false" || text == "null" { return true }
        let b = Array(text.utf8)
        var i = 0
        func digits() -> Int {
            let start = i
            while i < b.count, b[i] >= 0x30, b[i] <= 0x39 { i += 1 }
            return i - start
        }
        if i < b.count, b[i] == UInt8(ascii: "-") { i += 1 }
        guard i < b.count else { return false }
        if b[i] == UInt8(ascii: "0") { i += 1 } else if digits() == 0 { return false }
        if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            guard digits() > 0 else { return false }
        }
        if i < b.count, b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E") {
            i += 1
            if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") { i += 1 }
            guard digits() > 0 else { return false }
        }
        return i == b.count
    }

    public static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

extension Document {
    /// Convenience builders for rewritten configs.
    public static func string(_ s: String) -> Document { Document(.scalar(s, plain: false)) }
    public static func list(_ items: [String]) -> Document { Document(.sequence(items.map { .string($0) })) }
    public static func object(_ pairs: [(String, Document)]) -> Document {
        Document(.mapping(pairs.map { Document.Entry(key: $0.0, keyLine: 0, keyColumn: 0, value: $0.1) }))
    }

    /// The value under `key` in a mapping.
    public subscript(key: String) -> Document? {
        guard case .mapping(let entries) = kind else { return nil }
        return entries.first { $0.key == key }?.value
    }

    /// A copy with `key` set (replaced in place, or appended).
    public func setting(_ key: String, _ value: Document?) -> Document {
        guard case .mapping(var entries) = kind else { return self }
        if let i = entries.firstIndex(where: { $0.key == key }) {
            if let value { entries[i].value = value } else { entries.remove(at: i) }
        } else if let value {
            entries.append(Document.Entry(key: key, keyLine: 0, keyColumn: 0, value: value))
        }
        return Document(.mapping(entries), line: line, column: column)
    }
}
