/// `${NAME}` placeholders in MCP server configs (DESIGN.md §4).
///
///     ${NAME}             the context's value
///     ${NAME:-fallback}   fallback (literal text) when NAME is unset or empty
///     ${env:NAME}         alias of ${NAME} (VS Code / Cursor configs)
///     ${file:NAME}        the path of a sealed memfd holding NAME's value (`/dev/fd/N`):
///                         a stdio server's args and env values only
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
        /// `${file:NAME}`: resolved to the path of a file holding the value.
        case file(name: String, column: Int)
    }

    public enum Problem: Sendable, Equatable, CustomStringConvertible {
        case unterminated(column: Int)
        case badName(column: Int)
        case unsupported(column: Int)
        case missing(name: String, column: Int)
        /// `${file:NAME}` where no file can be handed over.
        case fileNotHere(column: Int)

        public var column: Int {
            switch self {
            case .unterminated(let c), .badName(let c), .unsupported(let c), .missing(_, let c), .fileNotHere(let c): c
            }
        }

        /// Never includes a value: only names and the kind of problem.
        public var description: String {
            switch self {
            case .unterminated: "unterminated ${ (close it with }, or write $${ for a literal ${)"
            case .badName: "bad variable name inside ${…}; names must match [A-Za-z_][A-Za-z0-9_]*"
            case .unsupported: "unsupported expansion; only ${NAME}, ${NAME:-fallback}, ${env:NAME} and ${file:NAME} are supported"
            case .missing(let name, _): "${\(name)} is not set in the execution context"
            case .fileNotHere: "${file:…} is only for a stdio server's args and env values (a descriptor cannot be handed to a command name, a directory, an http server or a container); use ${NAME} here"
            }
        }
    }

    /// The first `byte` in `bytes[from..<to]`, eight bytes at a time: literal text is
    /// most of a config, and `mcp check` scans a whole one (benchmarks/mcp-check.sh).
    static func find(_ byte: UInt8, in bytes: UnsafeBufferPointer<UInt8>, from: Int, to: Int) -> Int? {
        var j = from
        if let base = bytes.baseAddress {
            let raw = UnsafeRawPointer(base)
            let ones: UInt64 = 0x0101_0101_0101_0101
            let pattern = UInt64(byte) &* ones
            while j + 8 <= to {
                // A zero byte of x is a match; the lowest flagged byte is always a true one.
                let x = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: j, as: UInt64.self)) ^ pattern
                let found = (x &- ones) & ~x & 0x8080_8080_8080_8080
                if found != 0 { return j + found.trailingZeroBitCount / 8 }
                j += 8
            }
        }
        while j < to {
            if bytes[j] == byte { return j }
            j += 1
        }
        return nil
    }

    /// The grammar, in one pass over `bytes` and without building anything: `literal` gets
    /// each run of input taken as it is (the `${` of a `$${`, a lone `$`, a placeholder with a
    /// problem), `reference` each well-formed reference — its name's and fallback's byte
    /// ranges, its column, and whether it is a `${file:NAME}`. Returns every syntax problem.
    /// `parse` builds segments on it; `mcp check` only looks names up.
    public static func scan(_ bytes: UnsafeBufferPointer<UInt8>, literal: (Range<Int>) -> Void,
                            reference: (_ name: Range<Int>, _ fallback: Range<Int>?, _ column: Int, _ file: Bool) -> Void) -> [Problem] {
        var problems: [Problem] = []
        var i = 0
        let n = bytes.count
        // Columns (Unicode scalars, 1-based) of increasing indexes: each byte counted once,
        // eight at a time (a byte that is not a UTF-8 continuation starts a scalar).
        var counted = 0, column = 1
        func columnAt(_ target: Int) -> Int {
            if let base = bytes.baseAddress {
                let raw = UnsafeRawPointer(base)
                while counted + 8 <= target {
                    let w = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: counted, as: UInt64.self))
                    column += 8 - (w & ~(w << 1) & 0x8080_8080_8080_8080).nonzeroBitCount
                    counted += 8
                }
            }
            while counted < target {
                if bytes[counted] & 0xC0 != 0x80 { column += 1 }
                counted += 1
            }
            return column
        }
        func find(_ byte: UInt8, from: Int, to: Int) -> Int? {
            Placeholder.find(byte, in: bytes, from: from, to: to)
        }
        while i < n {
            // Literal text up to the next `$`, at once.
            guard bytes[i] == UInt8(ascii: "$") else {
                let next = find(UInt8(ascii: "$"), from: i, to: n) ?? n
                literal(i..<next)
                i = next
                continue
            }
            // `$${` is an escaped, literal `${`.
            if i + 2 < n, bytes[i + 1] == UInt8(ascii: "$"), bytes[i + 2] == UInt8(ascii: "{") {
                literal((i + 1)..<(i + 3))
                i += 3
                continue
            }
            guard i + 1 < n, bytes[i + 1] == UInt8(ascii: "{") else { literal(i..<(i + 1)); i += 1; continue }

            let at = columnAt(i)
            guard let close = find(UInt8(ascii: "}"), from: i + 2, to: n) else {
                // Nothing after this can be interpreted reliably.
                problems.append(.unterminated(column: at))
                literal(i..<n)
                break
            }
            var nameStart = i + 2
            var file = false
            if close - nameStart >= 4, bytes[nameStart] == UInt8(ascii: "e"), bytes[nameStart + 1] == UInt8(ascii: "n"),
               bytes[nameStart + 2] == UInt8(ascii: "v"), bytes[nameStart + 3] == UInt8(ascii: ":") {
                nameStart += 4
            } else if close - nameStart >= 5, bytes[nameStart] == UInt8(ascii: "f"), bytes[nameStart + 1] == UInt8(ascii: "i"),
                      bytes[nameStart + 2] == UInt8(ascii: "l"), bytes[nameStart + 3] == UInt8(ascii: "e"),
                      bytes[nameStart + 4] == UInt8(ascii: ":") {
                nameStart += 5
                file = true
            }
            var nameEnd = nameStart
            while nameEnd < close, VariableName.isContinuation(bytes[nameEnd]) { nameEnd += 1 }
            let validName = VariableName.isValid(utf8: UnsafeBufferPointer(rebasing: bytes[nameStart..<nameEnd]))
            var fallback: Range<Int>?
            var problem: Problem?
            if nameEnd == close {
                if !validName { problem = .badName(column: at) }
            } else if close - nameEnd >= 2, bytes[nameEnd] == UInt8(ascii: ":"), bytes[nameEnd + 1] == UInt8(ascii: "-") {
                let text = (nameEnd + 2)..<close
                if !validName {
                    problem = .badName(column: at)
                } else if file {
                    problem = .unsupported(column: at)  // a file is there or it is not: no fallback
                } else if containsOpen(UnsafeBufferPointer(rebasing: bytes[text])) {
                    problem = .unsupported(column: at)  // no nesting in fallbacks
                } else {
                    fallback = text
                }
            } else if nameStart == nameEnd || validName {
                // ${A%b}, ${A:?x}, ${#A}, ${A/x/y}, ${!A}, ${$(cmd)}: shell forms we refuse
                // rather than half-implement.
                problem = .unsupported(column: at)
            } else {
                problem = .badName(column: at)
            }
            if let problem {
                problems.append(problem)
                literal(i..<(close + 1))
            } else {
                reference(nameStart..<nameEnd, fallback, at, file)
            }
            i = close + 1
        }
        return problems
    }

    /// Splits a template into literals and references, reporting every syntax problem.
    public static func parse(_ text: String) -> (segments: [Segment], problems: [Problem]) {
        let bytes = Array(text.utf8)
        var segments: [Segment] = []
        var literal: [UInt8] = []
        func flush() {
            if !literal.isEmpty {
                segments.append(.literal(String(decoding: literal, as: UTF8.self)))
                literal.removeAll(keepingCapacity: true)
            }
        }
        let problems = bytes.withUnsafeBufferPointer { buffer in
            scan(buffer, literal: { literal.append(contentsOf: buffer[$0]) }, reference: { name, fallback, column, file in
                flush()
                let name = String(decoding: buffer[name], as: UTF8.self)
                segments.append(file ? .file(name: name, column: column)
                                     : .reference(name: name, fallback: fallback.map { String(decoding: buffer[$0], as: UTF8.self) }, column: column))
            })
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
            case .file(_, let column):
                // A string has no descriptor to point at.
                problems.append(.fileNotHere(column: column))
            }
        }
        if problems.isEmpty { return .success(out) }
        return .failure(ProblemList(problems.sorted { $0.column < $1.column }))
    }

    /// Names a template refers to (whether or not a fallback is given, as a value or as a
    /// file), in order, unique.
    public static func references(in text: String) -> [String] {
        var seen = Set<String>()
        var out: [String] = []
        for segment in parse(text).segments {
            switch segment {
            case .literal: break
            case .reference(let name, _, _), .file(let name, _): if seen.insert(name).inserted { out.append(name) }
            }
        }
        return out
    }

    /// The template that resolves to `text` exactly: every `${` becomes `$${`. Byte by byte:
    /// `String.replacing` is _StringProcessing's, and every literal argument of a launch
    /// comes through here (its searcher's metadata and caches were 30 k instructions and
    /// four page faults of a launch).
    public static func escape(_ text: String) -> String {
        let dollar = UInt8(ascii: "$"), brace = UInt8(ascii: "{")
        var previous: UInt8 = 0
        guard text.utf8.contains(where: { b in defer { previous = b }; return previous == dollar && b == brace }) else { return text }
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + 8)
        for (i, b) in bytes.enumerated() {
            if b == dollar, i + 1 < bytes.count, bytes[i + 1] == brace { out.append(dollar) }
            out.append(b)
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func containsOpen(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
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
        forEachTemplate { _, template, _ in
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
        // Each name is looked up once: whether it resolves, and whether it may be empty.
        var known: [String: (set: Bool, nonEmpty: Bool)] = [:]
        known.reserveCapacity(64)
        var names: [String] = []
        // One hash per reference: the slot is found once, and filled when new.
        func state(_ slot: inout (set: Bool, nonEmpty: Bool)?, _ name: String) -> (set: Bool, nonEmpty: Bool) {
            if let known = slot { return known }
            let value = lookup(name)
            let fresh = (set: value != nil, nonEmpty: value.map { !$0.isEmpty } ?? false)
            slot = fresh
            names.append(name)
            return fresh
        }
        forEachTemplate { field, template, filesAllowed in
            var text = template
            var found: [Placeholder.Problem] = text.withUTF8 { bytes in
                var missing: [Placeholder.Problem] = []
                var syntax = Placeholder.scan(bytes, literal: { _ in }, reference: { range, fallback, column, file in
                    if file && !filesAllowed { missing.append(.fileNotHere(column: column)) }
                    let name = String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self)
                    let found = state(&known[name], name)
                    // As `resolve`: a value wins unless a fallback is given and the value is empty.
                    if found.set && (fallback == nil || found.nonEmpty) { return }
                    if fallback == nil { missing.append(.missing(name: name, column: column)) }
                })
                syntax += missing
                return syntax
            }
            if !found.isEmpty {
                found.sort { $0.column < $1.column }
                let path = field()
                problems += found.map { LocatedProblem(server: name, field: path, problem: $0) }
            }
        }
        return (problems, names)
    }

    /// Calls `body` with each templated field — the fields DESIGN.md §4 applies placeholders
    /// to (never keys or server names) — its path (built only when asked for), text, and
    /// whether `${file:NAME}` may appear in it (a stdio server's args and env values).
    func forEachTemplate(_ body: (_ field: () -> String, _ template: String, _ filesAllowed: Bool) -> Void) {
        func pairs(_ prefix: String, _ list: [ConfigPair], files: Bool) {
            for pair in list { body({ "\(prefix).\(pair.key)" }, pair.value, files) }
        }
        switch transport {
        case .stdio(let s):
            body({ "command" }, s.command, false)
            for (i, arg) in s.args.enumerated() { body({ "args[\(i)]" }, arg, true) }
            pairs("env", s.env, files: true)
            if let dir = s.workingDir { body({ "working_dir" }, dir, false) }
        case .http(let h):
            body({ "url" }, h.url, false)
            pairs("headers", h.headers, files: false)
            pairs("query_params", h.queryParams, files: false)
        case .docker(let d):
            for (i, arg) in d.args.enumerated() { body({ "args[\(i)]" }, arg, false) }
            pairs("env", d.env, files: false)
        }
    }
}
