import ArgumentParser
import StigmerCLI
import StigmerCore
import StigmerEngine
import StigmerLaunch
import StigmerManifests
import StigmerStore
import StigmerSystem

#if canImport(Glibc)
import Glibc
#endif

struct McpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mcp",
        abstract: "Launch MCP servers with their secrets, rewrite client configs to do so, check placeholders.",
        subcommands: [Run.self, Wrap.self, Check.self])

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start one server of a config, its placeholders resolved from the context (an http server: a stdio bridge to it).",
            discussion: """
                The server gets the MCP base environment (HOME LOGNAME PATH SHELL TERM USER) plus \
                only the variables its config refers to; only those are decrypted. stigmer-exec \
                writes nothing to stdout (the protocol channel); stdin EOF and SIGTERM reach the server. \
                An http or sse server is reached through a bridge (stigmer-exec-full) that speaks \
                stdio to the client and MCP over HTTP to the server, adding the resolved headers \
                and query parameters — sent only to the url's origin.
                """)

        @OptionGroup var arguments: McpRunArguments

        func run() throws { try Launch.run(try arguments.arguments.mcpPlan()) }
    }

    struct Wrap: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the config with every server launched through `stigmer-exec mcp run`, http ones through the bridge (no secret in it).",
            discussion: """
                The wrapped entries carry where the context lives — the home (absolute), and the \
                store, context server, token file and CA when given — so they work from any \
                directory with an MCP client's bare environment.
                """)

        @OptionGroup var source: McpSourceOptions
        @Option(name: .customLong("context-server"), help: ArgumentHelp("The wrapped servers fetch from this grpc[s]://HOST:PORT. Default: $STIGMER_SERVER.", valueName: "URL"))
        var contextServer: String?
        @Option(name: .customLong("token-file"), help: ArgumentHelp("The wrapped servers read their execution token from this file.", valueName: "FILE"))
        var tokenFile: String?
        @Option(name: .customLong("tls-ca"), help: ArgumentHelp("The wrapped servers trust this CA for grpcs://.", valueName: "FILE"))
        var tlsCA: String?

        func run() throws {
            _ = try source.global.logger()
            let id = try source.arguments.checkedExecutionID()
            let (document, config) = try Loader.mcpConfigDocument(text: try Loader.text(source.config), file: source.config)
            var args = ["--home", try Self.absolute(try source.global.resolvedHome().path, mustExist: false)]
            var env: [(String, String)] = []
            if let store = source.storeOptions.location.location {
                // A PostgreSQL URL may hold a password: it goes in the entry's env, never in
                // an argv (readable by every user in /proc).
                if let path = source.storeOptions.location.sqlitePath {
                    args += ["--store", try Self.absolute(path, mustExist: false)]
                } else {
                    env.append((ControlVariable.store.rawValue, store))
                }
            }
            if let server = ControlVariable.server.or(contextServer) { args += ["--context-server", server] }
            if let tokenFile { args += ["--token-file", try Self.absolute(tokenFile, mustExist: true)] }
            if let tlsCA { args += ["--tls-ca", try Self.absolute(tlsCA, mustExist: true)] }
            let wrapped = McpWrap.wrap(document, form: config.form, launcher: try Companion.selfPath(),
                                       config: try Self.absolute(source.config, mustExist: true), executionID: id,
                                       extraArgs: args, extraEnv: env)
            try Stdout.write(JSONWriter.write(wrapped) + "\n")
        }

        /// `path` made absolute: resolved (symlinks too) when it exists, else against the
        /// working directory.
        static func absolute(_ path: String, mustExist: Bool) throws(StigmerError) -> String {
            if let resolved = realpath(path, nil) {
                defer { free(resolved) }
                return String(cString: resolved)
            }
            if mustExist { throw StigmerError.data("cannot resolve \(quoted(path))", cause: Errno.current.description) }
            if path.hasPrefix("/") { return path }
            var buffer = [CChar](repeating: 0, count: 4096)
            guard getcwd(&buffer, buffer.count) != nil else {
                throw StigmerError(.ioError, "cannot find the working directory", cause: Errno.current.description)
            }
            return String(cString: buffer) + "/" + path
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check that every placeholder of the config resolves against the context; print names, never values.")

        @OptionGroup var options: McpCheckArguments

        /// The same as the fast path (`LaunchArguments.mcpCheck`), from ArgumentParser's values.
        func run() throws { try options.arguments.mcpCheck() }
    }
}
