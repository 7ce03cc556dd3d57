import StigmerCore
import StigmerManifests

/// What every harness shares: turning libFuzzer's bytes into input, planting a canary where
/// values go, and stopping loudly when an invariant breaks (libFuzzer reports the trap as a
/// crash and saves the input).
public enum Fuzz {
    /// Stands for a secret value. It holds a `-`, so it is never a valid variable name: an
    /// error that shows it echoed a value, not a key.
    public static let canary = "Zq-canary-8d1f"

    /// Harnesses read every backtick of the input as the canary: libFuzzer moves the byte
    /// anywhere, so the canary lands in every position the grammar has.
    public static let marker = UInt8(ascii: "`")

    /// libFuzzer's input (it passes a null pointer for the empty input).
    public static func bytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
        guard let data, size > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: data, count: size))
    }

    /// The input as the parsers get it: files are read as UTF-8 (Loader.text refuses
    /// anything else), so invalid sequences are repaired rather than skipped.
    public static func text(_ bytes: [UInt8]) -> String {
        String(decoding: bytes, as: UTF8.self)
    }

    /// Calls `body` with the input as text, then again with the canary planted when the
    /// input holds a marker.
    public static func eachText(_ data: UnsafePointer<UInt8>?, _ size: Int, _ body: (String) -> Void) {
        let input = bytes(data, size)
        body(text(input))
        if let planted = planted(input) { body(planted) }
    }

    /// The documents the loader reads from the input (YAML, or JSON when it starts like
    /// JSON), without those that aliases grew past 5,000 nodes (seconds each, nothing new).
    public static func documents(_ data: UnsafePointer<UInt8>?, _ size: Int, file: String) -> [Document] {
        guard let documents = try? Loader.documents(text(bytes(data, size)), file: file) else { return [] }
        return documents.filter { nodeCount($0) <= 5_000 }
    }

    /// The input with every marker replaced by the canary; nil when it holds none.
    public static func planted(_ bytes: [UInt8]) -> String? {
        guard bytes.contains(marker) else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + 16)
        for b in bytes {
            if b == marker { out += canary.utf8 } else { out.append(b) }
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func violation(_ what: String) -> Never {
        fatalError("fuzz invariant violated: \(what)")
    }

    public static func expect(_ condition: Bool, _ what: @autoclosure () -> String) {
        if !condition { violation(what()) }
    }

    /// An error never shows a value (SECURITY.md promise 1): neither its one-line form nor
    /// its parts.
    public static func expectNoCanary(_ error: StigmerError, _ where_: String) {
        let parts = [error.description, error.message, error.cause ?? ""] + error.names
        expect(!parts.contains { $0.contains(canary) }, "\(where_): an error shows a planted value: \(error.description)")
    }

    /// The same for any text meant for people (a redacted description, a problem list).
    public static func expectNoCanary(in text: String, _ where_: String) {
        expect(!text.contains(canary), "\(where_): shows a planted value: \(text)")
    }
}

extension Fuzz {
    /// Every node of a parsed document has a position within the text: errors point at it.
    /// (libyaml ends a last line that has no line break, so an empty node at the very end
    /// sits on the line after it.)
    public static func expectPositions(_ document: Document, lines: Int) {
        expect(document.line >= 1 && document.line <= lines + 1 && document.column >= 1,
               "a node at \(document.line):\(document.column), outside the text's \(lines) lines")
        switch document.kind {
        case .null, .scalar: break
        case .sequence(let items): for item in items { expectPositions(item, lines: lines) }
        case .mapping(let entries):
            for entry in entries {
                expect(entry.keyLine >= 1 && entry.keyLine <= lines + 1 && entry.keyColumn >= 1, "a key at \(entry.keyLine):\(entry.keyColumn)")
                expectPositions(entry.value, lines: lines)
            }
        }
    }

    /// How many nodes a document has (aliases can make a small YAML file a large tree).
    public static func nodeCount(_ document: Document) -> Int {
        switch document.kind {
        case .null, .scalar: 1
        case .sequence(let items): items.reduce(1) { $0 + nodeCount($1) }
        case .mapping(let entries): entries.reduce(1) { $0 + nodeCount($1.value) }
        }
    }
}

extension Fuzz {
    /// Keys whose scalars are values a user may have put a secret in: an Environment's
    /// `value`/`encrypted_value`, and everything under a server's env, headers, query
    /// parameters and args.
    static let valueKeys: Set<String> = ["value", "encrypted_value", "encryptedValue"]
    static let valueContainers: Set<String> = ["env", "env_placeholders", "envPlaceholders", "headers", "query_params", "queryParams", "args"]

    /// The document with the canary in front of every scalar in a value position.
    public static func plantingValues(_ document: Document, inside: Bool = false) -> Document {
        var out = document
        switch document.kind {
        case .null: break
        case .scalar(let text, let plain): if inside { out.kind = .scalar(canary + text, plain: plain) }
        case .sequence(let items): out.kind = .sequence(items.map { plantingValues($0, inside: inside) })
        case .mapping(let entries):
            out.kind = .mapping(entries.map { entry in
                var entry = entry
                let here = inside || valueContainers.contains(entry.key)
                    || (valueKeys.contains(entry.key) && { if case .scalar = entry.value.kind { true } else { false } }())
                entry.value = plantingValues(entry.value, inside: here)
                return entry
            })
        }
        return out
    }
}
