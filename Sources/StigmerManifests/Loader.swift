import StigmerCore
import StigmerSystem

/// Reads manifests, MCP configs and env files from disk into the core model.
public enum Loader {
    /// Parses `text` as JSON when the file says so (by extension or first character),
    /// else as YAML (one or more documents).
    public static func documents(_ text: String, file: String) throws(StigmerError) -> [Document] {
        let first = text.utf8.first { ![0x20, 0x09, 0x0A, 0x0D, 0xEF, 0xBB, 0xBF].contains($0) }
        if file.hasSuffix(".json") || first == UInt8(ascii: "{") || first == UInt8(ascii: "[") {
            return [try JSONReader.document(text, file: file)]
        }
        return try YAMLReader.documents(text, file: file)
    }

    public static func text(_ path: String) throws(StigmerError) -> String {
        guard let text = try IO.readText(path) else {
            throw .data("\(path): not valid UTF-8 text; save it as UTF-8")
        }
        return text
    }

    /// Every resource in a manifest file (YAML may hold several, separated by `---`).
    public static func resources(text: String, file: String) throws(StigmerError) -> [Resource] {
        var out: [Resource] = []
        for document in try documents(text, file: file) {
            if case .null = document.kind { continue }  // empty document between `---`
            out.append(try ResourceDecoder.resource(Field(root: document, file: file)))
        }
        guard !out.isEmpty else { throw .data("\(file): no resources found; expected apiVersion, kind, metadata and spec") }
        return out
    }

    /// Every resource at `path`, as `kubectl apply -f` reads it: a file; `-` for stdin;
    /// or a directory, whose `.yaml`, `.yml` and `.json` files are read in name order (not
    /// recursively; a directory with none is an error).
    public static func resources(path: String) throws(StigmerError) -> [Resource] {
        if path == "-" {
            let bytes: [UInt8]
            do { bytes = try IO.readAll(0, limit: 64 << 20) } catch {
                throw StigmerError(.ioError, "cannot read manifests from stdin", cause: error.description)
            }
            guard let text = String(validating: bytes, as: UTF8.self) else { throw .data("stdin: not valid UTF-8 text; send UTF-8") }
            return try resources(text: text, file: "<stdin>")
        }
        guard let entries = try Directory.entries(path) else { return try resources(text: try text(path), file: path) }
        let manifests = entries.filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") || $0.hasSuffix(".json") }.sorted()
        guard !manifests.isEmpty else {
            throw .data("\(path): a directory with no .yaml, .yml or .json file; give manifests or a file")
        }
        var out: [Resource] = []
        for name in manifests { out += try resources(text: try text(path + "/" + name), file: path + "/" + name) }
        return out
    }

    public static func mcpConfig(text: String, file: String) throws(StigmerError) -> McpConfig {
        try mcpConfigDocument(text: text, file: file).config
    }

    /// The config and the document it came from (`mcp wrap` rewrites the document).
    public static func mcpConfigDocument(text: String, file: String) throws(StigmerError) -> (document: Document, config: McpConfig) {
        let documents = try documents(text, file: file).filter {
            if case .null = $0.kind { return false }
            return true
        }
        guard documents.count == 1 else {
            throw .data("\(file): expected one MCP config document, found \(documents.count)")
        }
        return (documents[0], try ResourceDecoder.mcpConfig(Field(root: documents[0], file: file)))
    }

    public static func mcpConfig(path: String) throws(StigmerError) -> McpConfig {
        try mcpConfig(text: try text(path), file: path)
    }

    public static func envFile(path: String) throws(StigmerError) -> [EnvFileEntry] {
        try EnvFile.parse(try text(path), file: path)
    }
}
