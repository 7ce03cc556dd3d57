import ArgumentParser
import Logging
import StigmerCore
import StigmerEngine
import StigmerLaunch
import StigmerManifests
import StigmerStore
import StigmerSystem

/// Everything `run` and `mcp run` take, as plain values: filled by ArgumentParser (help,
/// errors), or by `LaunchArguments.fastParse` on the hot path. Both parse through the
/// same flag table's names; `StigmerCLITests` proves they agree flag by flag.
public struct LaunchArguments: Equatable {
    public var settings = Settings()
    public var store: String?
    public var executionID: String?
    public var hardening = HardeningSpec()
    public var remote = RemoteInputs()
    // run
    public var sources = Sources()
    public var runtime = RuntimeInputs()
    public var cleanEnv = false
    public var deleteOnExit = false
    /// `--file-var NAME`: NAME as a sealed memfd, `NAME_FILE=/dev/fd/N`.
    public var fileVariables: [String] = []
    public var command: [String] = []
    // mcp run
    public var config: String?
    public var mcpServer: String?
    /// The HTTP bridge: plain http:// with a secret to a host other than loopback.
    public var allowInsecureHTTP = false
    /// The HTTP bridge: a CA (PEM) to trust besides the system's.
    public var httpCA: String?

    public init() {}

    /// `--execution-id`, else `STIGMER_EXECUTION_ID` (empty: unset).
    public var resolvedExecutionID: String? { ControlVariable.executionID.or(executionID) }

    /// The execution id, required and well-formed (`mcp check`, `mcp wrap`).
    public func checkedExecutionID() throws(StigmerError) -> String {
        guard let id = resolvedExecutionID else { throw .usage("give --execution-id ID (or set STIGMER_EXECUTION_ID)") }
        try Engine.checkExecutionID(id)
        return id
    }

    /// Where the context is; warns (once, here) when `--store` carries a password.
    func contextLocation() throws(StigmerError) -> ContextLocation {
        if let errorFD = settings.errorFD, errorFD == settings.keyFD || errorFD == remote.tokenFD {
            throw .usage("--error-fd must be a descriptor of its own, not the one of --key-fd or --token-fd")
        }
        var location = ContextLocation(home: settings.home, store: StoreLocation(store), server: remote.server, keyFD: settings.keyFD,
                                       helperOptions: remote.helperArgs + (settings.logLevel.map { ["--log-level", $0.rawValue] } ?? []))
        location.protectedFiles = remote.tokenFile.map { [$0] } ?? []
        location.tokenFD = remote.tokenFD
        location.store.warnIfPasswordInArgv()
        return location
    }

    /// `run`: a stored context with `--execution-id`, else an ephemeral merge.
    public func runPlan() throws(StigmerError) -> LaunchPlan {
        let logger = try settings.logger()
        let values: LaunchPlan.Values
        if let id = resolvedExecutionID {
            guard runtime.isEmpty && sources.isEmpty else {
                throw .usage("--execution-id uses a stored context; --env/--secret/--env-file/--agent/--instance/--env-ref are for an ephemeral run without it")
            }
            values = .stored(executionID: id)
        } else {
            values = .ephemeral(sources: sources, runtime: runtime)
        }
        var child = ChildSpec.command(command, base: cleanEnv ? ChildEnvironment.cleanBase : nil)
        var seen = Set<String>()
        child.fileVariables = fileVariables.filter { seen.insert($0).inserted }
        return LaunchPlan(values: values, location: try contextLocation(), child: child,
                          hardening: hardening, deleteOnExit: deleteOnExit, logger: logger)
    }

    /// `mcp run`: one server of a config, with only the names it refers to.
    public func mcpPlan() throws(StigmerError) -> LaunchPlan {
        let logger = try settings.logger()
        guard let id = resolvedExecutionID else { throw .usage("give --execution-id ID (or set STIGMER_EXECUTION_ID)") }
        guard let file = config, let name = mcpServer else { throw .usage("give --config FILE and --server NAME") }
        let config = try Loader.mcpConfig(path: file)
        guard let definition = config.server(named: name) else {
            throw .notFound("server \(quoted(name)) is not in \(file); it has: \(config.servers.map(\.name).joined(separator: ", "))")
        }
        // The entry's own sandbox profile, relative to the config.
        var hardening = hardening
        if let profile = definition.sandbox {
            hardening.sandbox.profiles.append(RelativePath.beside(file, profile))
        }
        if case .http = definition.transport {
            return LaunchPlan(values: .stored(executionID: id), location: try contextLocation(), child: try bridgeSpec(definition, file: file),
                              hardening: hardening, logger: logger)
        }
        let child = try McpResolver.child(definition, file: file)
        var spec = ChildSpec(argv: [child.command] + child.args, environment: .templates(child.env),
                             base: ChildEnvironment.mcpBase + (child.isDocker ? ChildEnvironment.dockerBase : []),
                             workingDirectory: child.workingDir, file: file, server: name)
        spec.container = child.isDocker
        return LaunchPlan(values: .stored(executionID: id), location: try contextLocation(), child: spec, hardening: hardening, logger: logger)
    }

    /// An http server: the companion's bridge (`stigmer-exec-full mcp-bridge`), started as
    /// any child is (hardened, MCP base environment), with the url, headers and query
    /// parameters handed over a pipe — never its argv or environment. It holds the only
    /// network stack of the two executables (DESIGN.md §9).
    func bridgeSpec(_ definition: McpServerDefinition, file: String) throws(StigmerError) -> ChildSpec {
        let remote = try McpResolver.remote(definition, file: file)
        var argv = [try Companion.path(), "mcp-bridge", "--server", remote.server, "--transport", remote.legacySSE ? "sse" : "streamable-http"]
        if let timeout = remote.timeoutSeconds { argv += ["--timeout", "\(timeout)"] }
        if allowInsecureHTTP { argv.append("--allow-insecure-http") }
        if let httpCA { argv += ["--http-ca", httpCA] }
        if let level = settings.logLevel { argv += ["--log-level", level.rawValue] }
        var spec = ChildSpec(argv: argv.enumerated().map { Template(literal: $0.element, field: "argv[\($0.offset)]") },
                             environment: .templates([]), base: ChildEnvironment.mcpBase, file: file, server: remote.server)
        spec.handoff = Handoff(fields: [Handoff.Field(.url, "", remote.url)]
                                   + remote.headers.map { Handoff.Field(.header, $0.name, $0.template) }
                                   + remote.queryParams.map { Handoff.Field(.query, $0.name, $0.template) },
                               flag: "--spec-fd")
        return spec
    }

    /// `mcp check`: every placeholder of the config (or of `--server`) against the stored
    /// context's names — no value is opened — as a table of names; 78 lists every problem.
    public func mcpCheck() throws(StigmerError) {
        // A one-shot reader, like a launch: no shared WAL index set up, no page cache bulk.
        SQLiteStore.configureShortLived()
        let logger = try settings.logger()
        let id = try checkedExecutionID()
        guard let file = config else { throw .usage("give --config FILE") }
        let config = try Loader.mcpConfig(path: file)
        var servers = config.servers
        if let mcpServer {
            guard let one = config.server(named: mcpServer) else {
                throw .notFound("server \(quoted(mcpServer)) is not in \(file); it has: \(config.servers.map(\.name).joined(separator: ", "))")
            }
            servers = [one]
        }
        let location = StoreLocation(store)
        location.warnIfPasswordInArgv()
        let store = try location.open(home: try settings.resolvedHome(), create: false, readOnly: true)
        let context = try settings.engine(store, logger).storedContext(id)
        // Existence is all a check needs: no value is opened. (A fallback covers an empty
        // value as well as a missing one.)
        let lookup: (String) -> String? = { context.data[$0] == nil ? nil : "x" }
        var problems: [LocatedProblem] = []
        var rows: [[String]] = []
        for s in servers {
            let (found, names) = s.check(lookup: lookup)
            problems += found
            rows.append([s.name, s.transport.name, found.isEmpty ? "ok" : "\(found.count) problem\(found.count == 1 ? "" : "s")",
                         Table.words(names)])
        }
        try Stdout.write(Table.render(["SERVER", "TYPE", "STATUS", "VARIABLES"], rows))
        if !problems.isEmpty { throw McpResolver.error(problems, file: file) }
    }

    // MARK: the flag table

    /// A flag of `run` or `mcp run`: its name, whether it takes a value, and where it goes.
    /// `set` returns false for a value the fast path does not accept (ArgumentParser then
    /// parses the same argv and gives its message).
    public struct Flag: Sendable {
        public let name: String
        public let takesValue: Bool
        let set: @Sendable (inout LaunchArguments, String) -> Bool

        init(_ name: String, value: Bool = true, _ set: @escaping @Sendable (inout LaunchArguments, String) -> Bool) {
            self.name = name
            self.takesValue = value
            self.set = set
        }
    }

    static func descriptor(_ text: String) -> Int32? {
        guard let fd = Int32(text), fd >= 0 else { return nil }
        return fd
    }

    /// Where the context is: every command that reads one takes these.
    static let contextFlags: [Flag] = [
        Flag("--home") { $0.settings.home = $1; return true },
        Flag("--key-fd") { guard let fd = descriptor($1) else { return false }; $0.settings.keyFD = fd; return true },
        Flag("--log-level") { guard let level = Logger.Level(rawValue: $1) else { return false }; $0.settings.logLevel = level; return true },
        Flag("--error-fd") {
            guard let fd = descriptor($1), fd > 2 else { return false }
            $0.settings.errorFD = fd
            ErrorReport.use(fd)
            return true
        },
        Flag("--store") { $0.store = $1; return true },
        Flag("--execution-id") { $0.executionID = $1; return true },
    ]

    /// Flags both launch commands take.
    public static let commonFlags: [Flag] = contextFlags + [
        Flag("--seccomp") { $0.hardening.seccomp = $1; $0.hardening.seccompGiven = true; return true },
        Flag("--memory-limit") { $0.hardening.memoryLimit = $1; return true },
        Flag("--allow-core-dumps", value: false) { a, _ in a.hardening.allowCoreDumps = true; return true },
        Flag("--init", value: false) { a, _ in a.hardening.initMode = true; return true },
        Flag("--mask-output", value: false) { a, _ in a.hardening.maskOutput = true; return true },
        Flag("--require-isolation", value: false) { a, _ in
            guard a.hardening.isolation != .off else { return false }
            a.hardening.isolation = .require
            return true
        },
        Flag("--no-isolation", value: false) { a, _ in
            guard a.hardening.isolation != .require else { return false }
            a.hardening.isolation = .off
            return true
        },
        Flag("--fs-read") { $0.hardening.sandbox.fsRead.append($1); return true },
        Flag("--fs-write") { $0.hardening.sandbox.fsWrite.append($1); return true },
        Flag("--fs-exec") { $0.hardening.sandbox.fsExec.append($1); return true },
        Flag("--net-connect") { guard let p = SandboxSpec.ports($1) else { return false }; $0.hardening.sandbox.netConnect += p; return true },
        Flag("--net-bind") { guard let p = SandboxSpec.ports($1) else { return false }; $0.hardening.sandbox.netBind += p; return true },
        Flag("--no-network", value: false) { a, _ in a.hardening.sandbox.noNetwork = true; return true },
        Flag("--allow-unix-sockets", value: false) { a, _ in a.hardening.sandbox.unixSockets = true; return true },
        Flag("--sandbox") { $0.hardening.sandbox.add($1); return true },
        Flag("--token-file") { $0.remote.tokenFile = $1; return true },
        Flag("--token-fd") { guard let fd = descriptor($1) else { return false }; $0.remote.tokenFD = fd; return true },
        Flag("--tls-ca") { $0.remote.tlsCA = $1; return true },
        Flag("--fetch-timeout") { $0.remote.fetchTimeout = $1; return true },
        Flag("--allow-plaintext", value: false) { a, _ in a.remote.allowPlaintext = true; return true },
        Flag("--server-key") { $0.remote.serverKey = $1; return true },
    ]

    public static let runFlags: [Flag] = commonFlags + [
        Flag("--server") { $0.remote.server = $1; return true },
        Flag("--clean-env", value: false) { a, _ in a.cleanEnv = true; return true },
        Flag("--delete-on-exit", value: false) { a, _ in a.deleteOnExit = true; return true },
        Flag("--agent") { $0.sources.agent = $1; return true },
        Flag("--instance") { $0.sources.instance = $1; return true },
        Flag("--env-ref") { $0.sources.envRefs.append($1); return true },
        Flag("--env") { $0.runtime.env.append($1); return true },
        Flag("--secret") { $0.runtime.secret.append($1); return true },
        Flag("--env-file") { $0.runtime.envFile.append($1); return true },
        Flag("--secret-file") { $0.runtime.secretFile.append($1); return true },
        Flag("--file-var") { guard VariableName.isValid($1) else { return false }; $0.fileVariables.append($1); return true },
    ]

    /// `--server` names the MCP server here, so the context server is `--context-server`.
    public static let mcpRunFlags: [Flag] = commonFlags + [
        Flag("--config") { $0.config = $1; return true },
        Flag("--server") { $0.mcpServer = $1; return true },
        Flag("--context-server") { $0.remote.server = $1; return true },
        Flag("--allow-insecure-http", value: false) { a, _ in a.allowInsecureHTTP = true; return true },
        Flag("--http-ca") { $0.httpCA = $1; return true },
    ]

    /// `mcp check` launches nothing: the context's flags, the config and one server.
    public static let mcpCheckFlags: [Flag] = contextFlags + [
        Flag("--config") { $0.config = $1; return true },
        Flag("--server") { $0.mcpServer = $1; return true },
    ]

    /// The hot path's own parser: ArgumentParser's first reflection-driven parse costs
    /// ~2 ms in a binary this size. Anything it does not take — help, a typo, a bad value,
    /// a missing command — returns nil, and ArgumentParser parses the same argv to give its
    /// usual message. `run` needs `-- COMMAND`; `mcp run` must not have one.
    public static func fastParse(_ args: ArraySlice<String>, flags: [Flag], needsCommand: Bool, needsServer: Bool = true) -> LaunchArguments? {
        var request = LaunchArguments()
        var i = args.startIndex
        while i < args.endIndex {
            let arg = args[i]
            if arg == "--" {
                guard needsCommand else { return nil }
                request.command = Array(args[(i + 1)...])
                break
            }
            guard arg.hasPrefix("--") else { return nil }
            let equals = arg.firstIndex(of: "=")
            let name = equals.map { String(arg[..<$0]) } ?? arg
            guard let flag = flags.first(where: { $0.name == name }) else { return nil }
            var value = ""
            if flag.takesValue {
                if let equals {
                    value = String(arg[arg.index(after: equals)...])
                } else {
                    // ArgumentParser reads a separate word starting with "-" as an option,
                    // not a value (`--home --init`): leave such argv to it.
                    guard i + 1 < args.endIndex, !args[i + 1].hasPrefix("-") else { return nil }
                    i += 1
                    value = args[i]
                }
            } else if equals != nil {
                return nil
            }
            guard flag.set(&request, value) else { return nil }
            i += 1
        }
        if needsCommand {
            guard !request.command.isEmpty else { return nil }
            do { try request.runtime.check(); try request.sources.check() } catch { return nil }
        } else {
            guard request.config != nil, request.mcpServer != nil || !needsServer else { return nil }
        }
        if let limit = request.hardening.memoryLimit, (try? HardeningSpec.size(limit)) == nil { return nil }
        return request
    }
}
