/// Turning an MCP server definition into a process to start (DESIGN.md §4).

/// A stdio (or docker) server with every placeholder resolved. Holds plaintext.
public struct ResolvedServer: Sendable, Redacted {
    public var name: String
    public var command: String
    public var args: [String]
    /// The resolved `env` (for docker: the variables the docker CLI forwards by name).
    public var env: [ConfigPair]
    public var workingDir: String?
    /// Which args hold a secret value (argv is world-readable in /proc).
    public var secretArgs: [Int]

    public var redactedDescription: String {
        "ResolvedServer(\(name): \(command), \(args.count) args, env \(redactedList(env.map(\.key))))"
    }
}

public enum McpResolver {
    /// Resolves every templated field of a stdio or docker server against `lookup`.
    /// All problems come back together, located (server, field, column).
    public static func resolve(_ server: McpServerDefinition, lookup: (String) -> String?,
                               isSecret: (String) -> Bool = { _ in false }) -> Result<ResolvedServer, ProblemList> {
        var problems: [LocatedProblem] = []
        func value(_ field: String, _ template: String) -> String {
            switch Placeholder.resolve(template, lookup: lookup) {
            case .success(let s): return s
            case .failure(let list):
                problems += list.problems.map { LocatedProblem(server: server.name, field: field, problem: $0) }
                return ""
            }
        }
        func secretIn(_ template: String) -> Bool {
            Placeholder.references(in: template).contains(where: isSecret)
        }
        var resolved: ResolvedServer
        switch server.transport {
        case .http:
            return .failure(ProblemList([], http: true))
        case .stdio(let s):
            let args = s.args.enumerated().map { value("args[\($0.offset)]", $0.element) }
            resolved = ResolvedServer(
                name: server.name, command: value("command", s.command), args: args,
                env: s.env.map { ConfigPair($0.key, value("env.\($0.key)", $0.value)) },
                workingDir: s.workingDir.map { value("working_dir", $0) },
                secretArgs: s.args.indices.filter { secretIn(s.args[$0]) })
        case .docker(let d):
            // docker run -i --rm … -e NAME … IMAGE ARGS: names only in argv; the docker
            // CLI reads the values from its own environment.
            var args = ["run", "-i", "--rm"]
            if let name = d.containerName { args += ["--name", name] }
            if let network = d.network { args += ["--network", network] }
            for volume in d.volumes { args += ["-v", volume] }
            for port in d.ports { args += ["-p", port] }
            for pair in d.env { args += ["-e", pair.key] }
            args.append(d.image)
            let offset = args.count
            let userArgs = d.args.enumerated().map { value("args[\($0.offset)]", $0.element) }
            resolved = ResolvedServer(
                name: server.name, command: "docker", args: args + userArgs,
                env: d.env.map { ConfigPair($0.key, value("env.\($0.key)", $0.value)) }, workingDir: nil,
                secretArgs: d.args.indices.filter { secretIn(d.args[$0]) }.map { $0 + offset })
        }
        if !problems.isEmpty { return .failure(ProblemList(problems)) }
        return .success(resolved)
    }

    public struct ProblemList: Error, Sendable {
        public var problems: [LocatedProblem]
        /// An http server: nothing to launch.
        public var http: Bool
        public init(_ problems: [LocatedProblem], http: Bool = false) {
            self.problems = problems
            self.http = http
        }
    }

    /// The one-line error for a list of problems (exit 78). Names and places only.
    public static func error(_ problems: [LocatedProblem], file: String) -> StigmerError {
        let count = problems.count
        let list = problems.map(\.description).joined(separator: "; ")
        return .unresolved("\(count) unresolvable placeholder\(count == 1 ? "" : "s") in \(file): \(list)")
    }
}
