import ArgumentParser
import StigmerCore
import StigmerLaunch

/// Hardening flags of every launching command (DESIGN.md §6, SECURITY.md).
public struct HardeningOptions: ParsableArguments {
    public init() {}

    @Option(help: ArgumentHelp("default (the default), strict, none, or the path of an OCI/Docker seccomp JSON profile.", valueName: "PROFILE"))
    public var seccomp: String?

    @Option(name: .customLong("memory-limit"), help: ArgumentHelp("The child's address-space limit (RLIMIT_AS), e.g. 512M, 512Mi or 2G.", valueName: "SIZE"))
    public var memoryLimit: String?

    @Flag(name: .customLong("allow-core-dumps"), help: "Leave the core-dump limit alone (default: 0, soft and hard).")
    public var allowCoreDumps = false

    @Flag(name: .customLong("init"), help: "Stay as a minimal PID 1: forward signals, reap orphans, exit with the child's status.")
    public var initMode = false

    @Flag(name: .customLong("mask-output"), help: "Pass the child's stdout/stderr through, with secret values (and their base64, URL and JSON forms) replaced by <concealed>.")
    public var maskOutput = false

    @Flag(name: .customLong("require-isolation"), help: "Refuse to launch when the child cannot be kept out of the launcher's home, store and token files (Landlock).")
    public var requireIsolation = false

    @Flag(name: .customLong("no-isolation"), help: "Let the child open the launcher's home, store and token files (a trusted child that needs to create entries beside them).")
    public var noIsolation = false

    @Option(name: .customLong("fs-read"), help: ArgumentHelp("Sandbox (Landlock): the child may read this tree. With any of --fs-read, --fs-write, --fs-exec the child reaches only the trees given, plus what its command needs to start.", valueName: "PATH"))
    public var fsRead: [String] = []

    @Option(name: .customLong("fs-write"), help: ArgumentHelp("Sandbox: the child may read, write, create and remove in this tree (not execute).", valueName: "PATH"))
    public var fsWrite: [String] = []

    @Option(name: .customLong("fs-exec"), help: ArgumentHelp("Sandbox: the child may read and execute from this tree.", valueName: "PATH"))
    public var fsExec: [String] = []

    @Option(name: .customLong("net-connect"), help: ArgumentHelp("Sandbox (Landlock TCP): the child may connect only to these TCP ports.", valueName: "PORT[,PORT…]"))
    public var netConnect: [String] = []

    @Option(name: .customLong("net-bind"), help: ArgumentHelp("Sandbox (Landlock TCP): the child may bind only these TCP ports.", valueName: "PORT[,PORT…]"))
    public var netBind: [String] = []

    @Flag(name: .customLong("no-network"), help: "Run the child in a network namespace of its own (loopback only); refuse if one cannot be made.")
    public var noNetwork = false

    @Flag(name: .customLong("allow-unix-sockets"), help: "Under a filesystem sandbox, let the child create Unix sockets (refused by default: Landlock cannot stop a connect to one outside the trees by path).")
    public var allowUnixSockets = false

    @Option(name: .customLong("sandbox"), help: ArgumentHelp("A sandbox profile (YAML or JSON: fs, net, seccomp, limits), or best-effort: run with what the kernel enforces and say what it does not.", valueName: "FILE|best-effort"))
    public var sandbox: [String] = []

    public func validate() throws {
        if requireIsolation && noIsolation { throw ValidationError("give --require-isolation or --no-isolation, not both") }
        if let memoryLimit { try usageCheck { () throws(StigmerError) in _ = try HardeningSpec.size(memoryLimit) } }
        for (flag, values) in [("--net-connect", netConnect), ("--net-bind", netBind)] {
            for value in values { try usageCheck { () throws(StigmerError) in _ = try SandboxSpec.portsOrThrow(value, flag: flag) } }
        }
    }

    public var spec: HardeningSpec {
        var spec = HardeningSpec(seccomp: seccomp ?? "default", memoryLimit: memoryLimit, allowCoreDumps: allowCoreDumps, initMode: initMode, maskOutput: maskOutput,
                                 isolation: requireIsolation ? .require : noIsolation ? .off : .auto)
        spec.sandbox.fsRead = fsRead
        spec.sandbox.fsWrite = fsWrite
        spec.sandbox.fsExec = fsExec
        spec.sandbox.netConnect = netConnect.flatMap { SandboxSpec.ports($0) ?? [] }
        spec.sandbox.netBind = netBind.flatMap { SandboxSpec.ports($0) ?? [] }
        spec.sandbox.noNetwork = noNetwork
        spec.seccompGiven = seccomp != nil
        spec.sandbox.unixSockets = allowUnixSockets
        for value in sandbox { spec.sandbox.add(value) }
        return spec
    }
}

/// `stigmer-exec run`'s arguments, for ArgumentParser.
public struct RunArguments: ParsableArguments {
    public init() {}

    @OptionGroup public var global: GlobalOptions
    @OptionGroup public var storeOptions: StoreOptions

    @Option(name: .customLong("execution-id"), help: ArgumentHelp("The execution whose context to use. Default: $STIGMER_EXECUTION_ID.", valueName: "ID"))
    public var executionID: String?

    @OptionGroup public var sources: SourceOptions
    @OptionGroup public var runtime: RuntimeOptions

    @Flag(name: .customLong("clean-env"), help: "Start from PATH HOME USER LANG TZ TERM instead of the inherited environment.")
    public var cleanEnv = false

    @Flag(name: .customLong("delete-on-exit"), help: "Stay as the child's parent: forward signals, wait, delete the context, exit with the child's status.")
    public var deleteOnExit = false

    @Option(name: .customLong("file-var"), help: ArgumentHelp("Hand NAME over as a file on no filesystem (a sealed memfd): the child gets NAME_FILE=/dev/fd/N and no NAME.", valueName: "NAME"))
    public var fileVariables: [String] = []

    @OptionGroup public var hardening: HardeningOptions
    @OptionGroup public var remote: RemoteOptions

    @Argument(parsing: .postTerminator, help: ArgumentHelp("The command and its arguments, after --.", valueName: "COMMAND"))
    public var command: [String] = []

    public func validate() throws {
        if command.isEmpty { throw ValidationError("give the command after --, e.g. stigmer-exec run --execution-id ID -- env") }
        for name in fileVariables where !VariableName.isValid(name) { throw ValidationError("--file-var: \(VariableName.problem(name))") }
    }

    public var arguments: LaunchArguments {
        var a = LaunchArguments()
        a.settings = global.settings
        a.store = storeOptions.store
        a.executionID = executionID
        a.sources = sources.sources
        a.runtime = runtime.inputs
        a.cleanEnv = cleanEnv
        a.deleteOnExit = deleteOnExit
        a.fileVariables = fileVariables
        a.hardening = hardening.spec
        a.remote = remote.inputs
        a.command = command
        return a
    }
}

/// What every `mcp` launch or check reads: where the context is, which execution, which
/// config.
public struct McpSourceOptions: ParsableArguments {
    public init() {}

    @OptionGroup public var global: GlobalOptions
    @OptionGroup public var storeOptions: StoreOptions

    @Option(name: .customLong("execution-id"), help: ArgumentHelp("The execution whose context to use. Default: $STIGMER_EXECUTION_ID.", valueName: "ID"))
    public var executionID: String?

    @Option(help: ArgumentHelp("The MCP config: an mcpServers JSON file (Claude Desktop, Cursor…) or an Agent/McpServer manifest.", valueName: "FILE"))
    public var config: String

    /// These options as plain values.
    public var arguments: LaunchArguments {
        var a = LaunchArguments()
        a.settings = global.settings
        a.store = storeOptions.store
        a.executionID = executionID
        a.config = config
        return a
    }
}

/// `stigmer-exec mcp run`'s arguments, for ArgumentParser.
public struct McpRunArguments: ParsableArguments {
    public init() {}

    @OptionGroup public var source: McpSourceOptions

    @Option(help: ArgumentHelp("The server's name in the config.", valueName: "NAME"))
    public var server: String

    @OptionGroup public var hardening: HardeningOptions

    // `--server` names the MCP server here, so the context server is `--context-server`.
    @Option(name: .customLong("context-server"), help: ArgumentHelp("Fetch the context from this grpc[s]://HOST:PORT. Default: $STIGMER_SERVER.", valueName: "URL"))
    public var contextServer: String?
    @Option(name: .customLong("token-file"), help: ArgumentHelp("The execution token, from a file.", valueName: "FILE")) public var tokenFile: String?
    @Option(name: .customLong("token-fd"), help: ArgumentHelp("The execution token, from a descriptor.", valueName: "N")) public var tokenFD: Int32?
    @Option(name: .customLong("tls-ca"), help: ArgumentHelp("Trust this CA for grpcs://.", valueName: "FILE")) public var tlsCA: String?
    @Option(name: .customLong("fetch-timeout"), help: ArgumentHelp("Retry an unavailable server this long.", valueName: "DURATION")) public var fetchTimeout: String = "30s"
    @Flag(name: .customLong("allow-plaintext"), help: "Allow grpc:// (no TLS) to a host other than loopback.") public var allowPlaintext = false
    @Option(name: .customLong("server-key"), help: ArgumentHelp("Trust only values sealed by this server key (base64).", valueName: "KEY")) public var serverKey: String?
    @Flag(name: .customLong("allow-insecure-http"), help: "An http server: allow http:// carrying a secret to a host other than loopback.")
    public var allowInsecureHTTP = false
    @Option(name: .customLong("http-ca"), help: ArgumentHelp("An http server: trust this CA (PEM) besides the system's.", valueName: "FILE"))
    public var httpCA: String?

    public func validate() throws {
        if let tokenFD, tokenFD < 0 { throw ValidationError("--token-fd must be a descriptor number (0 or more)") }
    }

    public var arguments: LaunchArguments {
        var a = source.arguments
        a.mcpServer = server
        a.allowInsecureHTTP = allowInsecureHTTP
        a.httpCA = httpCA
        a.hardening = hardening.spec
        a.remote = RemoteInputs(server: contextServer, tokenFile: tokenFile, tokenFD: tokenFD, tlsCA: tlsCA, fetchTimeout: fetchTimeout,
                                allowPlaintext: allowPlaintext, serverKey: serverKey)
        return a
    }
}

/// `stigmer-exec mcp check`'s arguments, for ArgumentParser (the fast path parses the same
/// names by `LaunchArguments.mcpCheckFlags`).
public struct McpCheckArguments: ParsableArguments {
    public init() {}

    @OptionGroup public var source: McpSourceOptions

    @Option(help: ArgumentHelp("Check only this server.", valueName: "NAME"))
    public var server: String?

    public var arguments: LaunchArguments {
        var a = source.arguments
        a.mcpServer = server
        return a
    }
}
