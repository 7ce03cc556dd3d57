/// `${NAME}` placeholders in MCP server configs (DESIGN.md §4).
///
///     ${NAME}             the context's value
///     ${NAME:-fallback}   fallback (literal text) when NAME is unset or empty
///     ${env:NAME}         alias of ${NAME} (VS Code / Cursor configs)
///     $${                 a literal "${"
///     $NAME, $5, $(x)     left alone: only "${" starts a placeholder
///
/// The scanner makes one pass over the UTF-8 bytes. Inserted values are appended to the
/// output and never scanned again, so a value containing "${X}" stays literal: no recursive
/// expansion, no injection.
public enum Placeholder {
    public enum Segment: Sendable, Equatable {
        case literal(String)
        /// `column` is the 1-based position (in Unicode scalars) of the `$`.
        case reference(name: String, fallback: String?, column: Int)
    }

    public enum Problem: Sendable, Equatable, CustomStringConvertible {
        case unterminated(column: Int)
        case badName(column: Int)
        case unsupported(column: Int)
        case missing(name: String, column: Int)

        public var column: Int {
            switch self {
            case .unterminated(let c), .badName(let c), .unsupported(let c), .missing(_, let c): c
            }
        }

        /// Never includes a value: only names and the kind of problem.
        public var description: String {
            switch self {
            case .unterminated: "unterminated ${ (close it with }, or write $${ for a literal ${)"
            case .badName: "bad variable name inside ${…}; names must match [A-Za-z_][A-Za-z0-9_]*"
            case .unsupported: "unsupported expansion; only ${NAME}, ${NAME:-fallback} and ${env:NAME} are supported"
            case .missing(let name, _): "${\(name)} is not set in the execution context"
            }
        }
    }

    /// Splits a template into literals and references, reporting every syntax problem.
    public static func parse(_ text: String) -> (segments: [Segment], problems: [Problem]) {
        let bytes = Array(text.utf8)
        var segments: [Segment] = []
        var problems: [Problem] = []
        var literal: [UInt8] = []
        var i = 0
        let n = bytes.count
        var columns = ScalarColumns(bytes)

        func flush() {
            if !literal.isEmpty {
                segments.append(.literal(String(decoding: literal, as: UTF8.self)))
                literal.removeAll(keepingCapacity: true)
            }
        }

        while i < n {
            // Literal text up to the next `$`, copied at once.
            guard bytes[i] == UInt8(ascii: "$") else {
                let next = bytes[i...].firstIndex(of: UInt8(ascii: "$")) ?? n
                literal.append(contentsOf: bytes[i..<next])
                i = next
                continue
            }
            let b = bytes[i]
            // `$${` is an escaped, literal `${`.
            if i + 2 < n, bytes[i + 1] == UInt8(ascii: "$"), bytes[i + 2] == UInt8(ascii: "{") {
                literal.append(contentsOf: [UInt8(ascii: "$"), UInt8(ascii: "{")])
                i += 3
                continue
            }
            guard i + 1 < n, bytes[i + 1] == UInt8(ascii: "{") else { literal.append(b); i += 1; continue }

            let column = columns.at(i)
            guard let close = bytes[(i + 2)...].firstIndex(of: UInt8(ascii: "}")) else {
                // Nothing after this can be interpreted reliably.
                problems.append(.unterminated(column: column))
                literal.append(contentsOf: bytes[i...])
                break
            }
            var body = bytes[(i + 2)..<close]
            if body.count >= 4, body[body.startIndex] == UInt8(ascii: "e"), body[body.startIndex + 1] == UInt8(ascii: "n"),
               body[body.startIndex + 2] == UInt8(ascii: "v"), body[body.startIndex + 3] == UInt8(ascii: ":") {
                body = body.dropFirst(4)
            }
            let nameEnd = body.firstIndex { !VariableName.isContinuation($0) } ?? body.endIndex
            let name = body[body.startIndex..<nameEnd]
            let rest = body[nameEnd...]
            var fallback: String?
            var problem: Problem?
            if rest.isEmpty {
                if !VariableName.isValid(utf8: name) { problem = .badName(column: column) }
            } else if rest.count >= 2, rest[rest.startIndex] == UInt8(ascii: ":"), rest[rest.startIndex + 1] == UInt8(ascii: "-") {
                let text = rest.dropFirst(2)
                if !VariableName.isValid(utf8: name) {
                    problem = .badName(column: column)
                } else if text.contains(UInt8(ascii: "$")) && containsOpen(text) {
                    problem = .unsupported(column: column)  // no nesting in fallbacks
                } else {
                    fallback = String(decoding: text, as: UTF8.self)
                }
            } else if name.isEmpty || VariableName.isValid(utf8: name) {
                // ${A%b}, ${A:?x}, ${#A}, ${A/x/y}, ${!A}, ${$(cmd)}: shell forms we refuse
                // rather than half-implement.
                problem = .unsupported(column: column)
            } else {
                problem = .badName(column: column)
            }
            if let problem {
                problems.append(problem)
                literal.append(contentsOf: bytes[i...close])
            } else {
                flush()
                segments.append(.reference(name: String(decoding: name, as: UTF8.self), fallback: fallback, column: column))
            }
            i = close + 1
        }
        flush()
        return (segments, problems)
    }

    /// Resolves a template. `lookup` returns nil for an unset name. All problems are
    /// reported, none of the output is returned when there is any.
    public static func resolve(_ text: String, lookup: (String) -> String?) -> Result<String, ProblemList> {
        let (segments, syntax) = parse(text)
        var problems = syntax
        var out = ""
        for segment in segments {
            switch segment {
            case .literal(let s): out += s
            case .reference(let name, let fallback, let column):
                if let value = lookup(name), !(fallback != nil && value.isEmpty) {
                    out += value
                } else if let fallback {
                    out += fallback
                } else {
                    problems.append(.missing(name: name, column: column))
                }
            }
        }
        if problems.isEmpty { return .success(out) }
        return .failure(ProblemList(problems.sorted { $0.column < $1.column }))
    }

    /// Names a template refers to (whether or not a fallback is given), in order, unique.
    public static func references(in text: String) -> [String] {
        var seen = Set<String>()
        var out: [String] = []
        for case .reference(let name, _, _) in parse(text).segments where seen.insert(name).inserted {
            out.append(name)
        }
        return out
    }

    /// The template that resolves to `text` exactly: every `${` becomes `$${`.
    public static func escape(_ text: String) -> String {
        text.replacing("${", with: "$${")
    }

    /// Columns (Unicode scalars, 1-based) of increasing indexes: each byte is counted once,
    /// so a value with many placeholders is scanned in linear time.
    struct ScalarColumns {
        let bytes: [UInt8]
        var index = 0
        var column = 1

        init(_ bytes: [UInt8]) { self.bytes = bytes }

        mutating func at(_ target: Int) -> Int {
            for b in bytes[index..<target] where b & 0xC0 != 0x80 { column += 1 }
            index = target
            return column
        }
    }

    /// Whether `text` holds a `$` at all (a scan of the string's own storage).
    static func mayHoldReference(_ text: String) -> Bool {
        var copy = text
        return copy.withUTF8 { raw in raw.contains(UInt8(ascii: "$")) }
    }

    static func containsOpen(_ bytes: ArraySlice<UInt8>) -> Bool {
        var previous: UInt8 = 0
        for b in bytes {
            if previous == UInt8(ascii: "$") && (b == UInt8(ascii: "{") || b == UInt8(ascii: "(")) { return true }
            previous = b
        }
        return false
    }

    /// A `Sendable` wrapper so `Result` can carry a list of problems.
    public struct ProblemList: Error, Sendable, Equatable {
        public var problems: [Problem]
        public init(_ problems: [Problem]) { self.problems = problems }
    }
}

/// A placeholder problem with its place in a config: server, field, column.
public struct LocatedProblem: Sendable, Equatable, CustomStringConvertible {
    public var server: String
    public var field: String
    public var problem: Placeholder.Problem

    public init(server: String, field: String, problem: Placeholder.Problem) {
        self.server = server
        self.field = field
        self.problem = problem
    }

    public var description: String {
        "server \(quoted(server)) \(field) column \(problem.column): \(problem)"
    }
}

extension McpServerDefinition {
    /// The context names this server refers to, in order, unique (its least-privilege set).
    public var referencedNames: [String] {
        var seen = Set<String>()
        var out: [String] = []
        forEachTemplate { _, template in
            for name in Placeholder.references(in: template) where seen.insert(name).inserted { out.append(name) }
        }
        return out
    }

    /// Every problem across every templated field, against `lookup`.
    public func placeholderProblems(lookup: (String) -> String?) -> [LocatedProblem] {
        check(lookup: lookup).problems
    }

    /// One pass over every templated field: its problems against `lookup` (as `resolve`
    /// finds them, without building any output) and the names referred to, in order,
    /// unique. A field's path is spelled out only when it has a problem.
    public func check(lookup: (String) -> String?) -> (problems: [LocatedProblem], names: [String]) {
        var problems: [LocatedProblem] = []
        var seen = Set<String>()
        var names: [String] = []
        forEachTemplate { field, template in
            guard Placeholder.mayHoldReference(template) else { return }
            let (segments, syntax) = Placeholder.parse(template)
            var found = syntax
            for case .reference(let name, let fallback, let column) in segments {
                if seen.insert(name).inserted { names.append(name) }
                if let value = lookup(name), !(fallback != nil && value.isEmpty) { continue }
                if fallback == nil { found.append(.missing(name: name, column: column)) }
            }
            if !found.isEmpty {
                let path = field()
                problems += found.sorted { $0.column < $1.column }.map { LocatedProblem(server: name, field: path, problem: $0) }
            }
        }
        return (problems, names)
    }

    /// Calls `body` with each templated field — the fields DESIGN.md §4 applies placeholders
    /// to (never keys or server names) — its path (built only when asked for) and text.
    func forEachTemplate(_ body: (_ field: () -> String, _ template: String) -> Void) {
        func pairs(_ prefix: String, _ list: [ConfigPair]) {
            for pair in list { body({ "\(prefix).\(pair.key)" }, pair.value) }
        }
        switch transport {
        case .stdio(let s):
            body({ "command" }, s.command)
            for (i, arg) in s.args.enumerated() { body({ "args[\(i)]" }, arg) }
            pairs("env", s.env)
            if let dir = s.workingDir { body({ "working_dir" }, dir) }
        case .http(let h):
            body({ "url" }, h.url)
            pairs("headers", h.headers)
            pairs("query_params", h.queryParams)
        case .docker(let d):
            for (i, arg) in d.args.enumerated() { body({ "args[\(i)]" }, arg) }
            pairs("env", d.env)
        }
    }
}
