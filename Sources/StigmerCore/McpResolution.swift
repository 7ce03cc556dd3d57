/// Turning an MCP server definition into a process to start (DESIGN.md §4): every
/// templated field becomes a `Template`, resolved against opened values only at launch,
/// straight into the child's secret area — no plaintext is ever assembled in a `String`.

/// A string of the child's argv or environment: literal text and `${NAME}` references.
/// Holds no value; `field` locates it for messages ("args[2]", "env.TOKEN").
public struct Template: Sendable, Equatable {
    public var segments: [Placeholder.Segment]
    public var field: String
    /// The template as written, for messages (a placeholder, never a value).
    public var source: String

    public init(literal text: String, field: String = "") {
        segments = text.isEmpty ? [] : [.literal(text)]
        self.field = field
        source = Placeholder.escape(text)
    }

    /// Parses `text`; syntax problems come back (nothing is launched if there is any).
    /// `files`: whether `${file:NAME}` may appear (a stdio server's args and env values).
    public static func parse(_ text: String, field: String, files: Bool = false) -> (Template, [Placeholder.Problem]) {
        var (segments, problems) = Placeholder.parse(text)
        if !files {
            for case .file(_, let column) in segments { problems.append(.fileNotHere(column: column)) }
            problems.sort { $0.column < $1.column }
        }
        return (Template(segments: segments, field: field, source: text), problems)
    }

    init(segments: [Placeholder.Segment], field: String, source: String) {
        self.segments = segments
        self.field = field
        self.source = source
    }

    /// The names referred to as values, in order (duplicates kept).
    public var names: [String] {
        segments.compactMap { if case .reference(let name, _, _) = $0 { name } else { nil } }
    }

    /// The names referred to as files (`${file:NAME}`), in order (duplicates kept).
    public var fileNames: [String] {
        segments.compactMap { if case .file(let name, _) = $0 { name } else { nil } }
    }
}

/// A stdio or docker server as a process to start: templates, no values.
public struct McpChild: Sendable, Redacted {
    public var server: String
    public var command: Template
    public var args: [Template]
    /// The resolved `env` (for docker: the variables the docker CLI forwards by name).
    public var env: [(name: String, template: Template)]
    public var workingDir: Template?
    public var isDocker: Bool

    public var redactedDescription: String {
        "McpChild(\(server): \(command.source), \(args.count) args, env \(redactedList(env.map(\.name))))"
    }
}

/// An http server as the bridge reaches it: templates, no values.
public struct McpRemote: Sendable, Redacted {
    public var server: String
    public var url: Template
    public var headers: [(name: String, template: Template)]
    public var queryParams: [(name: String, template: Template)]
    /// mcpServers `type: "sse"`: the legacy HTTP+SSE transport; else Streamable HTTP.
    public var legacySSE: Bool
    public var timeoutSeconds: Int?

    public var redactedDescription: String {
        "McpRemote(\(server): headers \(redactedList(headers.map(\.name))), query \(redactedList(queryParams.map(\.name))))"
    }
}

public enum McpResolver {
    /// The process a stdio or docker server starts, as templates. Every syntax problem
    /// comes back together, located (server, field, column), as one error (78).
    public static func child(_ server: McpServerDefinition, file: String) throws(StigmerError) -> McpChild {
        var problems: [LocatedProblem] = []
        func template(_ field: String, _ text: String, files: Bool = false) -> Template {
            let (t, found) = Template.parse(text, field: field, files: files)
            problems += found.map { LocatedProblem(server: server.name, field: field, problem: $0) }
            return t
        }
        var child: McpChild
        switch server.transport {
        case .http:
            throw .usage("server \(quoted(server.name)) is an http server: it is reached through the bridge (McpResolver.remote), not started")
        case .stdio(let s):
            child = McpChild(
                server: server.name, command: template("command", s.command),
                args: s.args.enumerated().map { template("args[\($0.offset)]", $0.element, files: true) },
                env: s.env.map { (name: $0.key, template: template("env.\($0.key)", $0.value, files: true)) },
                workingDir: s.workingDir.map { template("working_dir", $0) }, isDocker: false)
        case .docker(let d):
            // docker run -i --rm … -e NAME … IMAGE ARGS: names only in argv; the docker
            // CLI reads the values from its own environment.
            var fixed = ["run", "-i", "--rm"]
            if let name = d.containerName { fixed += ["--name", name] }
            if let network = d.network { fixed += ["--network", network] }
            for volume in d.volumes { fixed += ["-v", volume] }
            for port in d.ports { fixed += ["-p", port] }
            for pair in d.env { fixed += ["-e", pair.key] }
            fixed.append(d.image)
            child = McpChild(
                server: server.name, command: Template(literal: "docker", field: "command"),
                args: fixed.map { Template(literal: $0, field: "docker") }
                    + d.args.enumerated().map { template("args[\($0.offset)]", $0.element) },
                env: d.env.map { (name: $0.key, template: template("env.\($0.key)", $0.value)) },
                workingDir: nil, isDocker: true)
        }
        if !problems.isEmpty { throw error(problems, file: file) }
        return child
    }

    /// An http server as the bridge reaches it, as templates. Every syntax problem comes
    /// back together, located, as one error (78).
    public static func remote(_ server: McpServerDefinition, file: String) throws(StigmerError) -> McpRemote {
        guard case .http(let h) = server.transport else {
            throw .usage("server \(quoted(server.name)) is a \(server.transport.name) server, not an http one")
        }
        var problems: [LocatedProblem] = []
        func template(_ field: String, _ text: String) -> Template {
            let (t, found) = Template.parse(text, field: field)
            problems += found.map { LocatedProblem(server: server.name, field: field, problem: $0) }
            return t
        }
        let remote = McpRemote(
            server: server.name, url: template("url", h.url),
            headers: h.headers.map { (name: $0.key, template: template("headers.\($0.key)", $0.value)) },
            queryParams: h.queryParams.map { (name: $0.key, template: template("query_params.\($0.key)", $0.value)) },
            legacySSE: h.transportType == "sse", timeoutSeconds: h.timeoutSeconds)
        if !problems.isEmpty { throw error(problems, file: file) }
        return remote
    }

    /// The one-line error for a list of problems (exit 78). Names and places only.
    public static func error(_ problems: [LocatedProblem], file: String) -> StigmerError {
        let count = problems.count
        let list = problems.map(\.description).joined(separator: "; ")
        var error = StigmerError.unresolved("\(count) unresolvable placeholder\(count == 1 ? "" : "s") in \(file): \(list)")
        for located in problems {
            if case .missing(let name, _) = located.problem, !error.names.contains(name) { error.names.append(name) }
        }
        return error
    }
}
