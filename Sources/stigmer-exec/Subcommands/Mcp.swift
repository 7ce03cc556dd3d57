import ArgumentParser
import StigmerCLI
import Logging
import StigmerCore
import StigmerCrypto
import StigmerEngine
import StigmerLaunch
import StigmerManifests
import StigmerSystem

#if canImport(Glibc)
import Glibc
#endif

/// Options shared by the mcp subcommands.
struct McpOptions: ParsableArguments {
    @Option(name: .customLong("execution-id"), help: ArgumentHelp("The execution whose context to use. Default: $STIGMER_EXECUTION_ID.", valueName: "ID"))
    var executionIDOption: String?

    @Option(help: ArgumentHelp("The MCP config: an mcpServers JSON file (Claude Desktop, Cursor…) or an Agent/McpServer manifest.", valueName: "FILE"))
    var config: String

    func executionID() throws(StigmerError) -> String {
        guard let id = StigmerExec.executionID(executionIDOption) else {
            throw .usage("give --execution-id ID (or set STIGMER_EXECUTION_ID)")
        }
        try Engine.checkExecutionID(id)
        return id
    }
}

struct McpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mcp",
        abstract: "Launch MCP servers with their secrets, rewrite client configs to do so, check placeholders.",
        subcommands: [Run.self, Wrap.self, Check.self])

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start one stdio or docker server of a config, its placeholders resolved from the context.",
            discussion: """
                The server gets the MCP base environment (HOME LOGNAME PATH SHELL TERM USER) plus \
                only the variables its config refers to. stigmer-exec writes nothing to stdout \
                (the protocol channel); stdin EOF and SIGTERM reach the server.
                """)

        @OptionGroup var global: GlobalOptions
        @OptionGroup var storeOptions: StoreOptions
        @OptionGroup var mcp: McpOptions
        @Option(help: ArgumentHelp("The server's name in the config.", valueName: "NAME")) var server: String
        @OptionGroup var hardening: HardeningOptions

        // `--server` names the MCP server here, so the context server is `--context-server`
        // (or STIGMER_SERVER).
        @Option(name: .customLong("context-server"), help: ArgumentHelp("Fetch the context from this grpc[s]://HOST:PORT. Default: $STIGMER_SERVER.", valueName: "URL"))
        var contextServer: String?
        @Option(name: .customLong("token-file"), help: ArgumentHelp("The execution token, from a file.", valueName: "FILE")) var tokenFile: String?
        @Option(name: .customLong("token-fd"), help: ArgumentHelp("The execution token, from a descriptor.", valueName: "N")) var tokenFD: Int32?
        @Option(name: .customLong("tls-ca"), help: ArgumentHelp("Trust this CA for grpcs://.", valueName: "FILE")) var tlsCA: String?
        @Option(name: .customLong("fetch-timeout"), help: ArgumentHelp("Retry an unavailable server this long.", valueName: "DURATION")) var fetchTimeout: String = "30s"

        var remote: RemoteInputs {
            RemoteInputs(server: contextServer, tokenFile: tokenFile, tokenFD: tokenFD, tlsCA: tlsCA, fetchTimeout: fetchTimeout)
        }

        func run() throws {
            try Launcher.hardenSelf(allowCoreDumps: hardening.allowCoreDumps)
            let logger = try global.logger()
            let childHardening = try hardening.inputs.resolve()
            let id = try mcp.executionID()
            let config = try Loader.mcpConfig(path: mcp.config)
            guard let definition = config.server(named: server) else {
                throw StigmerError.notFound("server \(quoted(server)) is not in \(mcp.config); it has: \(config.servers.map(\.name).joined(separator: ", "))")
            }
            if case .http = definition.transport {
                throw StigmerError.usage("server \(quoted(server)) is an http server: stigmer-exec launches stdio and docker servers (an http bridge is planned); point the client at its url, and use `stigmer-exec mcp check` to validate its placeholders")
            }
            let home = try global.resolvedHome()
            let referenced = Set(definition.referencedNames)
            var opened: ResolvedValues
            var secretNames = Set<String>()
            let location = StoreLocation(store: storeOptions.store)
            if remote.serverURL != nil || location.isPostgres {
                // The companion fetches; only what this server refers to is kept.
                let source = RemoteSource(server: remote.serverURL,
                                          store: remote.serverURL == nil ? (storeOptions.store ?? Sys.getenv("STIGMER_STORE")) : nil,
                                          helperArgs: remote.helperArgs)
                let fetched = try RemoteFetch.fetch(executionID: id, source: source) { () throws(StigmerError) -> KeyRing in
                    try global.keyRing(logger)
                }
                opened = fetched.values
                secretNames = fetched.secretNames
                var kept = ResolvedValues()
                kept.entries = opened.entries.filter { referenced.contains($0.name) }
                opened.wipe()
                opened = kept
            } else {
                let engine = global.engine(try storeOptions.open(home: home, create: false, readOnly: true), logger)
                let context = try engine.storedContext(id)
                // Least privilege: only what this server refers to is opened at all.
                var subset = Variables<ExecutionValue>()
                for name in definition.referencedNames { if let v = context.data[name] { subset[name] = v } }
                secretNames = Set(subset.entries.filter { $0.value.isSecret }.map(\.name))
                opened = try engine.plaintext(subset, executionID: id)
            }
            var lookup: [String: String] = [:]
            for (name, value) in opened.entries { lookup[name] = String(decoding: value, as: UTF8.self) }
            // What --mask-output conceals: the secrets this server was given.
            var secrets = hardening.maskOutput ? opened.entries.filter { secretNames.contains($0.name) }.map(\.value) : []
            opened.wipe()
            let resolved: ResolvedServer
            switch McpResolver.resolve(definition, lookup: { lookup[$0] }, isSecret: { secretNames.contains($0) }) {
            case .success(let r): resolved = r
            case .failure(let list): throw McpResolver.error(list.problems, file: mcp.config)
            }
            lookup.removeAll()
            for index in resolved.secretArgs {
                Stderr.line("stigmer-exec: warning: server \(server) args[\(index)] holds a secret; argv is readable in /proc/PID/cmdline — pass it through env instead")
            }
            var base = ChildEnvironment.mcpBase
            if case .docker = definition.transport {
                // The docker CLI needs to find its daemon and config.
                base += ["DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY"]
            }
            var launchHardening = childHardening
            launchHardening.workingDirectory = resolved.workingDir
            let inputs = hardening.inputs
            let request = LaunchRequest(
                command: [resolved.command] + resolved.args, inherited: ChildEnvironment.current(), base: base,
                hardening: launchHardening,
                mode: inputs.supervises ? .supervise(init: inputs.initMode, maskOutput: inputs.maskOutput) : .exec)
            var values = resolved.env.map { (name: $0.key, value: Array($0.value.utf8)) }
            logger.debug("launching MCP server", metadata: ["server": "\(server)", "variables": "\(values.count)"])
            try Session.launch(request, values: &values, secrets: &secrets, log: { logger.debug("\($0)") })
        }
    }

    struct Wrap: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the config with every stdio and docker server launched through `stigmer-exec mcp run` (no secret in it).")

        @OptionGroup var global: GlobalOptions
        @OptionGroup var mcp: McpOptions

        func run() throws {
            _ = try global.logger()
            let id = try mcp.executionID()
            let (document, config) = try Loader.mcpConfigDocument(text: try Loader.text(mcp.config), file: mcp.config)
            let wrapped = McpWrap.wrap(document, form: config.form, launcher: try Self.selfPath(),
                                       config: try Self.absolute(mcp.config), executionID: id,
                                       extraArgs: global.home.map { ["--home", $0] } ?? [])
            try Stdout.write(JSONWriter.write(wrapped) + "\n")
        }

        static func selfPath() throws(StigmerError) -> String {
            var buffer = [CChar](repeating: 0, count: 4096)
            let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
            guard n > 0 else { throw StigmerError(.ioError, "cannot find stigmer-exec's own path (/proc/self/exe)") }
            return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }

        static func absolute(_ path: String) throws(StigmerError) -> String {
            guard let resolved = realpath(path, nil) else {
                throw StigmerError.data("cannot resolve \(quoted(path))", cause: Errno.current.description)
            }
            defer { free(resolved) }
            return String(cString: resolved)
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check that every placeholder of the config resolves against the context; print names, never values.")

        @OptionGroup var global: GlobalOptions
        @OptionGroup var storeOptions: StoreOptions
        @OptionGroup var mcp: McpOptions
        @Option(help: ArgumentHelp("Check only this server.", valueName: "NAME")) var server: String?

        func run() throws {
            let logger = try global.logger()
            let id = try mcp.executionID()
            let config = try Loader.mcpConfig(path: mcp.config)
            var servers = config.servers
            if let server {
                guard let one = config.server(named: server) else {
                    throw StigmerError.notFound("server \(quoted(server)) is not in \(mcp.config); it has: \(config.servers.map(\.name).joined(separator: ", "))")
                }
                servers = [one]
            }
            let store = try storeOptions.open(home: try global.resolvedHome(), create: false, readOnly: true)
            let context = try global.engine(store, logger).storedContext(id)
            // Existence is all a check needs: no value is opened. (A fallback covers an
            // empty value as well as a missing one.)
            let lookup: (String) -> String? = { context.data[$0] == nil ? nil : "x" }
            var problems: [LocatedProblem] = []
            var rows: [[String]] = []
            for s in servers {
                let found = s.placeholderProblems(lookup: lookup)
                problems += found
                rows.append([s.name, s.transport.name, found.isEmpty ? "ok" : "\(found.count) problem\(found.count == 1 ? "" : "s")",
                             s.referencedNames.joined(separator: " ")])
            }
            try Stdout.write(Table.render(["SERVER", "TYPE", "STATUS", "VARIABLES"], rows))
            if !problems.isEmpty { throw McpResolver.error(problems, file: mcp.config) }
        }
    }
}
