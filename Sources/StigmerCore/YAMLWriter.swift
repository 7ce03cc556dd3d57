/// Writes a `Document` as block-style YAML that reads back as the same JSON value (used
/// by `inject`, whose output goes to `kubectl apply`). A string is plain only when it can
/// be nothing else — letters, digits and `_./-`, starting with a letter or `/`, and not one of
/// YAML 1.1's booleans or nulls; everything else is double-quoted with JSON's escapes,
/// which YAML's double-quoted style shares.
public enum YAMLWriter {
    public static func write(_ doc: Document) -> String {
        var out = ""
        switch doc.kind {
        case .mapping(let entries) where !entries.isEmpty: mapping(entries, indent: 0, into: &out)
        case .sequence(let items) where !items.isEmpty: sequence(items, indent: 0, into: &out)
        default: out += scalar(doc) + "\n"
        }
        return out
    }

    /// How long a key may be on its own line's start: YAML limits an implicit key to 1024
    /// characters (libyaml counts them), so a longer one is written explicitly, `? key` then
    /// `: value` (found by fuzzing: a long key did not read back).
    static let implicitKeyLimit = 1000

    static func mapping(_ entries: [Document.Entry], indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        for entry in entries {
            let key = string(entry.key)
            if key.utf8.count > implicitKeyLimit {
                out += pad + "? " + key + "\n" + pad + ":"
                value(entry.value, indent: indent, sequenceIndent: indent + 2, into: &out)
            } else {
                out += pad + key + ":"
                value(entry.value, indent: indent, into: &out)
            }
        }
    }

    static func sequence(_ items: [Document], indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        for item in items {
            out += pad + "-"
            switch item.kind {
            case .mapping(let entries) where !entries.isEmpty:
                // The first key on the dash's line, the rest aligned under it.
                var nested = ""
                mapping(entries, indent: indent + 2, into: &nested)
                out += " " + nested.dropFirst(indent + 2)
            case .sequence(let inner) where !inner.isEmpty:
                out += "\n"
                sequence(inner, indent: indent + 2, into: &out)
            default:
                out += " " + scalar(item) + "\n"
            }
        }
    }

    /// A value after `key:`: on the same line if scalar or empty, else below it.
    /// A sequence goes at the key's own indent (`sequenceIndent`), as YAML allows for a
    /// simple key; under an explicit one, indented.
    static func value(_ node: Document, indent: Int, sequenceIndent: Int? = nil, into out: inout String) {
        switch node.kind {
        case .mapping(let entries) where !entries.isEmpty:
            out += "\n"
            mapping(entries, indent: indent + 2, into: &out)
        case .sequence(let items) where !items.isEmpty:
            out += "\n"
            sequence(items, indent: sequenceIndent ?? indent, into: &out)
        default:
            out += " " + scalar(node) + "\n"
        }
    }

    static func scalar(_ node: Document) -> String {
        switch node.kind {
        case .null: "null"
        case .mapping: "{}"
        case .sequence: "[]"
        case .scalar(let text, let plain): plain && JSONWriter.isBare(text) ? text : string(text)
        }
    }

    static let reserved: Set<String> = ["y", "n", "yes", "no", "on", "off", "true", "false", "null"]

    static func string(_ text: String) -> String {
        let bytes = Array(text.utf8)
        guard let first = bytes.first, ((first | 0x20) >= 0x61 && (first | 0x20) <= 0x7A) || first == 0x2F,
              !reserved.contains(text.lowercased()) else { return quote(text) }
        for b in bytes {
            let letter = (b | 0x20) >= 0x61 && (b | 0x20) <= 0x7A
            guard letter || (b >= 0x30 && b <= 0x39) || b == 0x5F || b == 0x2E || b == 0x2F || b == 0x2D else {
                return quote(text)
            }
        }
        return text
    }

    /// JSON's quoting, plus the characters YAML reads as line breaks or may not hold
    /// unescaped (DEL, C1 controls, NEL, the line and paragraph separators, a BOM).
    static func quote(_ text: String) -> String {
        let json = JSONWriter.quote(text)
        guard json.unicodeScalars.contains(where: { ($0.value >= 0x7F && $0.value <= 0x9F) || [0x2028, 0x2029, 0xFEFF].contains($0.value) }) else {
            return json
        }
        var out = ""
        for scalar in json.unicodeScalars {
            if (scalar.value >= 0x7F && scalar.value <= 0x9F) || [0x2028, 0x2029, 0xFEFF].contains(scalar.value) {
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
