#if canImport(Glibc)
import Glibc
#endif
import StigmerCore
import StigmerSystem

/// One piece of a string the child gets: literal bytes or text, a `NAME=`, or an opened
/// value. Text is kept as the String it came as (no byte copy until the arena).
public enum ChildPiece {
    case text([UInt8])
    case literal(String)
    /// `NAME=`: a variable's name and the equals sign.
    case assignment(String)
    case value(SecretBytes.Entry)

    var count: Int {
        switch self {
        case .text(let bytes): bytes.count
        case .literal(let text): text.utf8.count
        case .assignment(let name): name.utf8.count + 1
        case .value(let entry): entry.range.count
        }
    }
}

/// What the child is started with, before any value is opened (DESIGN.md §4, §6).
public struct ChildSpec: Sendable {
    public enum Environment: Sendable {
        /// Every opened value under its own name (`run`).
        case everyValue
        /// These variables, resolved from templates (`mcp run`).
        case templates([(name: String, template: Template)])
    }

    public var argv: [Template]
    public var environment: Environment
    /// Only these inherited names pass (`--clean-env`, the MCP base); nil: all but `STIGMER_*`.
    public var base: [String]?
    public var workingDirectory: Template?
    /// For messages about the templates: the config file and server.
    public var file: String
    public var server: String
    /// Fields the child reads from a pipe instead of its argv or environment (the HTTP
    /// bridge's url, headers and query parameters, which may hold secrets).
    public var handoff: Handoff?
    /// `run --file-var NAME`: NAME's value as a sealed memfd, `NAME_FILE=/dev/fd/N` in the
    /// environment, no `NAME`.
    public var fileVariables: [String] = []
    /// A docker server: the child is the docker CLI, and the server runs in a container the
    /// daemon starts — out of reach of a sandbox on the CLI.
    public var container = false

    public init(argv: [Template], environment: Environment, base: [String]?, workingDirectory: Template? = nil,
                file: String = "", server: String = "") {
        self.argv = argv
        self.environment = environment
        self.base = base
        self.workingDirectory = workingDirectory
        self.file = file
        self.server = server
    }

    /// A literal command (`run -- CMD ARGS`) with every value in its environment.
    public static func command(_ command: [String], base: [String]?) -> ChildSpec {
        ChildSpec(argv: command.enumerated().map { Template(literal: $0.element, field: "argv[\($0.offset)]") },
                  environment: .everyValue, base: base)
    }

    /// The names to open: nil for every value of the context.
    public var names: [String]? {
        guard case .templates = environment else { return nil }
        var seen = Set<String>()
        return templates.flatMap { $0.names + $0.fileNames }.filter { seen.insert($0).inserted }
    }

    /// The names handed over as files (`${file:NAME}`, `--file-var`), in order, unique.
    public var fileNames: [String] {
        var seen = Set<String>()
        return (templates.flatMap(\.fileNames) + fileVariables).filter { seen.insert($0).inserted }
    }

    var templates: [Template] {
        var out = argv
        if case .templates(let env) = environment { out += env.map(\.template) }
        if let workingDirectory { out.append(workingDirectory) }
        if let handoff { out += handoff.fields.map(\.template) }
        return out
    }

    /// Every reference that has no value and no fallback, located (78 lists them all).
    public func unresolved(_ values: borrowing SecretBytes) -> StigmerError? {
        var problems: [LocatedProblem] = []
        for template in templates {
            for segment in template.segments {
                switch segment {
                case .reference(let name, nil, let column), .file(let name, let column):
                    if values.entry(name) == nil {
                        problems.append(LocatedProblem(server: server, field: template.field, problem: .missing(name: name, column: column)))
                    }
                default: break
                }
            }
        }
        if !problems.isEmpty { return McpResolver.error(problems, file: file) }
        let missing = fileVariables.filter { values.entry($0) == nil }
        if !missing.isEmpty {
            var error = StigmerError.unresolved("--file-var \(missing.joined(separator: ", ")): not set in the execution context; nothing was launched (check the name, or set it in the context)")
            error.names = missing
            return error
        }
        if case .everyValue = environment, let clash = fileVariables.first(where: { values.entry($0 + "_FILE") != nil }) {
            return .usage("--file-var \(clash) sets \(clash)_FILE, which the context sets too; nothing was launched (drop one of them)")
        }
        return nil
    }

    /// Which argv entries hold a secret (argv is readable by every user in /proc).
    public func secretArguments(_ values: borrowing SecretBytes) -> [Template] {
        argv.filter { $0.names.contains { values.entry($0)?.isSecret == true } }
    }

    static func pieces(_ template: Template, _ values: borrowing SecretBytes, files: SecretFiles? = nil) -> [ChildPiece] {
        var out: [ChildPiece] = []
        append(template, values, files: files, to: &out)
        return out
    }

    static func append(_ template: Template, _ values: borrowing SecretBytes, files: SecretFiles?, to out: inout [ChildPiece]) {
        for segment in template.segments {
            switch segment {
            case .literal(let text): out.append(.literal(text))
            case .file(let name, _):
                // Checked before: every file name has its descriptor.
                out.append(.literal(files?.path(of: name) ?? "/dev/null"))
            case .reference(let name, let fallback, _):
                // ${NAME:-fallback}: the fallback when unset or empty (DESIGN.md §4).
                if let entry = values.entry(name), !(fallback != nil && entry.range.isEmpty) {
                    out.append(.value(entry))
                } else if let fallback {
                    out.append(.literal(fallback))
                }
            }
        }
    }
}

/// Fields handed to the child over a pipe, never its argv or environment: the launch
/// resolves them into the child's secret area, writes them to a pipe whose read end the
/// child inherits, and appends `flag N` (the descriptor) to its argv. On the pipe, each
/// field is: kind (1 byte), 1 if a secret went into it else 0, the name's length (4 bytes,
/// little-endian), the name, the value's length (4 bytes), the value — lengths, not
/// separators, so a value holding any byte cannot forge a field. Each secret used follows
/// by itself (kind "S", its name).
public struct Handoff: Sendable {
    public enum Kind: UInt8, Sendable {
        case url = 0x55, header = 0x48, query = 0x51  // "U", "H", "Q"
    }

    public struct Field: Sendable {
        public var kind: Kind
        public var name: String
        public var template: Template

        public init(_ kind: Kind, _ name: String, _ template: Template) {
            self.kind = kind
            self.name = name
            self.template = template
        }
    }

    public var fields: [Field]
    public var flag: String

    public init(fields: [Field], flag: String) {
        self.fields = fields
        self.flag = flag
    }

    /// A pipe holds 64 KiB until someone reads it; the launcher writes it whole before the
    /// child starts, so a handoff must fit.
    public static let limit = 60 * 1024

    /// The pieces of the encoded handoff: the fields, then each secret that went into
    /// them by itself (kind "S"), so that the child can recognise it wherever a server
    /// echoes it (an error page), not only as the whole field.
    func pieces(_ values: borrowing SecretBytes) -> [ChildPiece] {
        func length(_ n: Int) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: n >> (8 * $0)) } }
        func field(_ kind: UInt8, _ secret: Bool, _ name: String, _ value: [ChildPiece]) -> [ChildPiece] {
            let name = Array(name.utf8)
            return [.text([kind, secret ? 1 : 0] + length(name.count) + name + length(value.reduce(0) { $0 + $1.count }))] + value
        }
        var out: [ChildPiece] = []
        var secrets: [String] = []
        for f in fields {
            let names = f.template.names.filter { values.entry($0)?.isSecret == true }
            out += field(f.kind.rawValue, !names.isEmpty, f.name, ChildSpec.pieces(f.template, values))
            secrets += names.filter { !secrets.contains($0) }
        }
        for name in secrets {
            if let entry = values.entry(name) { out += field(Self.secretKind, true, name, [.value(entry)]) }
        }
        return out
    }

    /// "S": a secret's value by itself.
    static let secretKind = UInt8(ascii: "S")
}

/// The child's argv, envp and working directory, built in a `SecretArena` (SECURITY.md,
/// step 4): the inherited environment minus every `STIGMER_*` control variable (or only
/// `base` names), then the values on top.
public struct ChildImage {
    public let arena: SecretArena
    public let argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
    public let envp: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
    public let workingDirectory: String?
    /// The encoded handoff, in the arena (`spec.handoff`), else empty.
    public let handoff: UnsafeRawBufferPointer

    public init(_ spec: ChildSpec, values: borrowing SecretBytes, inherited: [[UInt8]], files: SecretFiles? = nil) throws(StigmerError) {
        // Every string's pieces one after another, and where each string ends: a few
        // arrays for the whole image, not a few per variable (a launch builds ~100 strings).
        var pieces: [ChildPiece] = []
        var ends: [Int] = []
        // What the values set, which no inherited entry may set again. A file-only
        // variable is not inherited either.
        var overridden = Set<String>(minimumCapacity: values.entries.count + 2 * spec.fileVariables.count)
        switch spec.environment {
        case .everyValue:
            for entry in values.entries { overridden.insert(entry.name) }
            for name in spec.fileVariables { overridden.insert(name + "_FILE") }
        case .templates(let env):
            for (name, _) in env { overridden.insert(name) }
        }
        for name in spec.fileVariables { overridden.insert(name) }
        let kept = ChildEnvironment.inherited(inherited, base: spec.base, overridden: overridden)
        pieces.reserveCapacity(kept.count + 2 * values.entries.count + 2 * spec.argv.count + 8)
        ends.reserveCapacity(kept.count + values.entries.count + spec.argv.count + 2)
        for entry in kept {
            pieces.append(.text(entry))
            ends.append(pieces.count)
        }
        switch spec.environment {
        case .everyValue:
            for entry in values.entries where !spec.fileVariables.contains(entry.name) {
                pieces.append(.assignment(entry.name))
                pieces.append(.value(entry))
                ends.append(pieces.count)
            }
            for name in spec.fileVariables {
                pieces.append(.assignment(name + "_FILE"))
                pieces.append(.literal(files?.path(of: name) ?? "/dev/null"))
                ends.append(pieces.count)
            }
        case .templates(let env):
            for (name, template) in env {
                pieces.append(.assignment(name))
                ChildSpec.append(template, values, files: files, to: &pieces)
                ends.append(pieces.count)
            }
        }
        let environmentCount = ends.count
        for template in spec.argv {
            ChildSpec.append(template, values, files: files, to: &pieces)
            ends.append(pieces.count)
        }
        let argumentCount = ends.count - environmentCount
        let handoffPieces = spec.handoff?.pieces(values) ?? []

        let pointer = MemoryLayout<UnsafeMutablePointer<CChar>?>.stride
        let size = pieces.reduce(0) { $0 + $1.count } + ends.count + handoffPieces.reduce(1) { $0 + $1.count }
            + (environmentCount + argumentCount + 2) * pointer + pointer
        arena = try SecretArena(capacity: size)
        envp = try arena.pointerArray(count: environmentCount)
        argv = try arena.pointerArray(count: argumentCount)
        var start = 0
        for (i, end) in ends.enumerated() {
            let string = try arena.cString(pieces[start..<end], from: values)
            if i < environmentCount { envp[i] = string } else { argv[i - environmentCount] = string }
            start = end
        }
        if handoffPieces.isEmpty {
            handoff = UnsafeRawBufferPointer(start: nil, count: 0)
        } else {
            let start = try arena.cString(handoffPieces[...], from: values)
            handoff = UnsafeRawBufferPointer(start: start, count: handoffPieces.reduce(0) { $0 + $1.count })
        }
        // A directory name is not kept secret: it is visible in /proc/PID/cwd anyway.
        workingDirectory = spec.workingDirectory.map { String(decoding: ChildSpec.pieces($0, values).flatMap { piece -> [UInt8] in
            switch piece {
            case .text(let bytes): bytes
            case .literal(let text): Array(text.utf8)
            case .assignment(let name): Array(name.utf8) + [UInt8(ascii: "=")]
            case .value(let entry): values.withBytes(entry) { Array($0) }
            }
        }, as: UTF8.self) }
    }

    /// The command as the child will see it (argv[0]).
    public var command: String { argv[0].map { String(cString: $0) } ?? "" }

    /// The child's PATH, for resolving the command like execvp.
    public var path: String? {
        var cursor = envp
        while let entry = cursor.pointee {
            if strncmp(entry, "PATH=", 5) == 0 { return String(cString: entry + 5) }
            cursor += 1
        }
        return nil
    }
}

public enum ChildEnvironment {
    /// What `--clean-env` keeps from the launcher's environment.
    public static let cleanBase = ["PATH", "HOME", "USER", "LANG", "TZ", "TERM"]

    /// The base the MCP SDKs give a stdio server (DESIGN.md §4).
    public static let mcpBase = ["HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER"]

    /// What the docker CLI needs besides, to find its daemon and config.
    public static let dockerBase = ["DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY"]

    /// Inherited `NAME=VALUE` entries that survive: no `STIGMER_*`, none the values
    /// override, only `base` names when given — and then none whose value starts with `()`
    /// (an exported shell function, as the MCP SDKs skip).
    public static func inherited(_ entries: [[UInt8]], base: [String]?, overridden: Set<String>) -> [[UInt8]] {
        let keep = base.map(Set.init)
        return entries.filter { entry in
            guard let eq = entry.firstIndex(of: UInt8(ascii: "=")), !entry.starts(with: "STIGMER_".utf8) else { return false }
            let name = String(decoding: entry[..<eq], as: UTF8.self)
            if overridden.contains(name) { return false }
            guard let keep else { return true }
            return keep.contains(name) && !entry[(eq + 1)...].starts(with: [UInt8(ascii: "("), UInt8(ascii: ")")])
        }
    }

    /// The launcher's own environment, as `NAME=VALUE` byte strings.
    public static func current() -> [[UInt8]] {
        var out: [[UInt8]] = []
        var cursor = environ
        while let entry = cursor.pointee {
            let length = strlen(entry)
            out.append(entry.withMemoryRebound(to: UInt8.self, capacity: length) { Array(UnsafeBufferPointer(start: $0, count: length)) })
            cursor += 1
        }
        return out
    }
}
