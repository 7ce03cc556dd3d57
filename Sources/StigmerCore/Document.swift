/// A parsed YAML or JSON document, reduced to what manifests and configs need, with the
/// position of every node so errors can say `file:line:column`. Parsers (StigmerManifests)
/// build it; the decoders in this module read it without any I/O.
public struct Document: Sendable {
    public enum Kind: Sendable {
        case null
        /// A scalar as written. `plain` is true for an unquoted YAML scalar (so `true` is a
        /// boolean and `~` is null only when unquoted).
        case scalar(String, plain: Bool)
        case mapping([Entry])
        case sequence([Document])
    }

    public struct Entry: Sendable {
        public var key: String
        public var keyLine: Int
        public var keyColumn: Int
        public var value: Document

        public init(key: String, keyLine: Int, keyColumn: Int, value: Document) {
            self.key = key
            self.keyLine = keyLine
            self.keyColumn = keyColumn
            self.value = value
        }
    }

    public var kind: Kind
    /// 1-based; 0 when unknown.
    public var line: Int
    public var column: Int

    public init(_ kind: Kind, line: Int = 0, column: Int = 0) {
        self.kind = kind
        self.line = line
        self.column = column
    }

    var kindName: String {
        switch kind {
        case .null: "null"
        case .scalar: "a scalar"
        case .mapping: "a mapping"
        case .sequence: "a list"
        }
    }
}

/// A node being decoded, with the file and field path it was reached by, so that every
/// error names `file:line:column: path: problem`.
public struct Field: Sendable {
    public let node: Document
    public let file: String
    /// The path is spelled out only when asked (an error, a problem): a 10,000-element
    /// list does not build 10,000 strings to decode cleanly.
    let parent: String
    let step: Step

    enum Step: Sendable {
        case whole
        case key(String)
        case index(Int)
    }

    public init(root: Document, file: String) {
        self.init(node: root, parent: "", step: .whole, file: file)
    }

    init(node: Document, parent: String, step: Step, file: String) {
        self.node = node
        self.parent = parent
        self.step = step
        self.file = file
    }

    public var path: String {
        switch step {
        case .whole: parent
        case .key(let key): parent.isEmpty ? key : "\(parent).\(key)"
        case .index(let index): "\(parent)[\(index)]"
        }
    }

    /// An error located at this field. Messages never include the field's value: it may be
    /// a secret written where a flag was expected.
    public func error(_ problem: String) -> StigmerError {
        var location = file
        if node.line > 0 { location += ":\(node.line):\(node.column)" }
        let at = path.isEmpty ? "" : " \(path):"
        return .data("\(location):\(at) \(problem)")
    }

    public func child(_ key: String, _ node: Document) -> Field {
        Field(node: node, parent: path, step: .key(key), file: file)
    }

    public func element(_ index: Int, _ node: Document) -> Field {
        Field(node: node, parent: path, step: .index(index), file: file)
    }

    public var isNull: Bool {
        if case .null = node.kind { return true }
        return false
    }

    public func mapping() throws(StigmerError) -> FieldMap {
        guard case .mapping(let entries) = node.kind else {
            throw error("expected a mapping, found \(node.kindName)")
        }
        return FieldMap(field: self, entries: entries)
    }

    public func sequence() throws(StigmerError) -> [Field] {
        switch node.kind {
        case .sequence(let items):
            let here = path
            return items.enumerated().map { Field(node: $0.element, parent: here, step: .index($0.offset), file: file) }
        case .null: return []
        default: throw error("expected a list, found \(node.kindName)")
        }
    }

    /// A scalar as text. Numbers and booleans are taken as written (`30` is "30").
    public func string() throws(StigmerError) -> String {
        guard case .scalar(let text, _) = node.kind else {
            throw error("expected a string, found \(node.kindName)")
        }
        return text
    }

    public func nonEmptyString() throws(StigmerError) -> String {
        let text = try string()
        guard !text.isEmpty else { throw error("must not be empty") }
        return text
    }

    public func optionalString() throws(StigmerError) -> String? {
        isNull ? nil : try string()
    }

    public func bool() throws(StigmerError) -> Bool {
        guard case .scalar(let text, _) = node.kind else {
            throw error("expected true or false, found \(node.kindName)")
        }
        switch text.lowercased() {
        case "true": return true
        case "false": return false
        default: throw error("expected true or false")
        }
    }

    public func int() throws(StigmerError) -> Int {
        guard case .scalar(let text, _) = node.kind, let value = Int(text) else {
            throw error("expected a whole number")
        }
        return value
    }

    public func stringList() throws(StigmerError) -> [String] {
        var out: [String] = []
        for item in try sequence() { out.append(try item.string()) }
        return out
    }

    /// A mapping of string to string, in order (env, headers, query parameters).
    public func pairs(validatingNames: Bool = false) throws(StigmerError) -> [ConfigPair] {
        if isNull { return [] }
        var out: [ConfigPair] = []
        let map = try mapping()
        for (key, field) in map.fields {
            if validatingNames && !VariableName.isValid(key) {
                throw map.keyError(key, VariableName.problem(key))
            }
            out.append(ConfigPair(key, try field.string()))
        }
        return out
    }
}

/// A mapping being decoded. Keys may be written in snake_case (YAML manifests) or in
/// lowerCamelCase (protobuf JSON), as Stigmer's own tools accept both.
public struct FieldMap: Sendable {
    public let field: Field
    let entries: [Document.Entry]

    /// Every entry, in order, as a field.
    public var fields: [(key: String, field: Field)] {
        entries.map { entry in
            var node = entry.value
            if node.line == 0 { node.line = entry.keyLine; node.column = entry.keyColumn }
            return (entry.key, field.child(entry.key, node))
        }
    }

    public subscript(key: String) -> Field? {
        let camel = Self.camelCase(key)
        guard let entry = entries.first(where: { $0.key == key || $0.key == camel }) else { return nil }
        var node = entry.value
        // A null value has no useful position of its own in some parsers: use its key's.
        if node.line == 0 { node.line = entry.keyLine; node.column = entry.keyColumn }
        return field.child(entry.key, node)
    }

    /// The field, or nil when absent or null.
    public func optional(_ key: String) -> Field? {
        guard let f = self[key], !f.isNull else { return nil }
        return f
    }

    public func require(_ key: String) throws(StigmerError) -> Field {
        guard let f = self[key], !f.isNull else {
            throw field.error("missing required field \(quoted(key))")
        }
        return f
    }

    /// An error located at a key itself (a bad name, an unknown field), not at its value.
    public func keyError(_ key: String, _ problem: String) -> StigmerError {
        guard let entry = entries.first(where: { $0.key == key }) else { return field.error(problem) }
        let at = field.child(key, Document(.null, line: entry.keyLine, column: entry.keyColumn))
        return at.error(problem)
    }

    /// Rejects keys outside `known` — used where a typo would silently change meaning
    /// (an `is_sercet:` must not quietly store a secret as plaintext).
    public func rejectUnknown(_ known: [String]) throws(StigmerError) {
        // Short lists: a linear search beats building a set (this runs on a launch that
        // reads a sandbox profile).
        let allowed = known + known.map(Self.camelCase)
        for entry in entries where !allowed.contains(entry.key) {
            throw keyError(entry.key, "unknown field \(quoted(entry.key)); expected one of \(known.joined(separator: ", "))")
        }
    }

    /// `snake_case` → `snakeCase`. Keys are ASCII: byte-wise (Character's uppercasing
    /// is Unicode's, and cost a launch reading a profile 40 k instructions).
    static func camelCase(_ snake: String) -> String {
        guard snake.utf8.contains(UInt8(ascii: "_")) else { return snake }
        var out: [UInt8] = []
        out.reserveCapacity(snake.utf8.count)
        var upper = false
        for b in snake.utf8 {
            if b == UInt8(ascii: "_") { upper = true; continue }
            out.append(upper && b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z") ? b - 32 : b)
            upper = false
        }
        return String(decoding: out, as: UTF8.self)
    }
}
