import ArgumentParser
import StigmerCLI
import Logging
import StigmerCore
import StigmerCrypto
import StigmerEngine
import StigmerLaunch
import StigmerSystem

#if canImport(Glibc)
import Glibc
#endif

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a command with an execution's variables in its environment.",
        discussion: """
            With --execution-id (or STIGMER_EXECUTION_ID) the stored context is fetched and \
            opened in memory. Without it, --env/--secret/--env-file and --agent/--instance/--env-ref \
            are merged in memory and nothing is written. The child inherits the environment \
            minus every STIGMER_* variable (or, with --clean-env, only PATH HOME USER LANG TZ \
            TERM), with the context's values on top; it replaces stigmer-exec (execve) unless \
            --delete-on-exit keeps stigmer-exec as its parent.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var storeOptions: StoreOptions

    @Option(name: .customLong("execution-id"), help: ArgumentHelp("The execution whose context to use. Default: $STIGMER_EXECUTION_ID.", valueName: "ID"))
    var executionIDOption: String?

    @OptionGroup var sources: SourceOptions
    @OptionGroup var runtime: RuntimeOptions

    @Flag(name: .customLong("clean-env"), help: "Start from PATH HOME USER LANG TZ TERM instead of the inherited environment.")
    var cleanEnv = false

    @Flag(name: .customLong("delete-on-exit"), help: "Stay as the child's parent: forward signals, wait, delete the context, exit with the child's status.")
    var deleteOnExit = false

    @OptionGroup var hardening: HardeningOptions
    @OptionGroup var remote: RemoteOptions

    @Argument(parsing: .postTerminator, help: ArgumentHelp("The command and its arguments, after --.", valueName: "COMMAND"))
    var command: [String] = []

    func validate() throws {
        if command.isEmpty { throw ValidationError("give the command after --, e.g. stigmer-exec run --execution-id ID -- env") }
    }

    var request: RunRequest {
        RunRequest(settings: global.settings, store: StoreLocation(store: storeOptions.store),
                   executionID: executionIDOption, sources: sources.sources, runtime: runtime.inputs,
                   cleanEnv: cleanEnv, deleteOnExit: deleteOnExit, hardening: hardening.inputs, remote: remote.inputs, command: command)
    }

    func run() throws { try request.perform() }
}

/// Everything `run` needs, as plain values: filled by ArgumentParser, or by
/// `RunRequest.fastParse` on the hot path.
struct RunRequest {
    var settings = Settings()
    var store = StoreLocation()
    var executionID: String?
    var sources = Sources()
    var runtime = RuntimeInputs()
    var cleanEnv = false
    var deleteOnExit = false
    var hardening = HardeningInputs()
    var remote = RemoteInputs()
    var command: [String] = []

    func perform() throws(StigmerError) -> Never {
        // Before any secret is in memory: not dumpable, no core file (SECURITY.md step 1).
        try Launcher.hardenSelf(allowCoreDumps: hardening.allowCoreDumps)
        let logger = try settings.logger()
        // The filter is compiled before anything is decrypted: a profile that cannot be
        // built stops the launch with no secret ever opened. It is loaded last.
        let childHardening = try hardening.resolve()
        if let filter = childHardening.filter {
            logger.debug("seccomp filter compiled", metadata: ["profile": "\(filter.name)", "instructions": "\(filter.instructionCount)",
                                                               "unknown_syscalls": "\(filter.unknownSyscalls.count)"])
        }
        let id = StigmerExec.executionID(executionID)
        let home = try settings.resolvedHome()

        var values: ResolvedValues
        var secretNames = Set<String>()
        if let id {
            guard runtime.isEmpty && sources.isEmpty else {
                throw .usage("--execution-id uses a stored context; --env/--secret/--env-file/--agent/--instance/--env-ref are for an ephemeral run without it")
            }
            if remote.serverURL != nil || store.isPostgres {
                // Privilege separation: the companion fetches, this process opens.
                if deleteOnExit && remote.serverURL != nil {
                    throw .usage("--delete-on-exit cannot delete a remote context (an execution token only reads); the server's TTL sweep or `stigmer-exec context delete --server` removes it")
                }
                let source = RemoteSource(server: remote.serverURL, store: remote.serverURL == nil ? (store.store ?? Sys.getenv("STIGMER_STORE")) : nil,
                                          helperArgs: remote.helperArgs + (settings.logLevel.map { ["--log-level", $0.rawValue] } ?? []))
                (values, secretNames) = try RemoteFetch.fetch(executionID: id, source: source) { () throws(StigmerError) -> KeyRing in
                    try settings.keyRing(logger)
                }
            } else {
                // Read-only unless this launcher will delete the context afterwards.
                let engine = settings.engine(try store.open(home: home, create: false, readOnly: !deleteOnExit), logger)
                let context = try engine.storedContext(id)
                secretNames = Set(context.data.entries.filter { $0.value.isSecret }.map(\.name))
                values = try engine.plaintext(context.data, executionID: id)
            }
        } else {
            if deleteOnExit { throw .usage("--delete-on-exit needs --execution-id: an ephemeral run stores nothing") }
            let opened = sources.isEmpty ? nil : try store.open(home: home, create: false, readOnly: true)
            let engine = settings.engine(opened, logger)
            let input = try engine.mergeInput(agent: sources.agent, instance: sources.instance, envRefs: sources.envRefs, runtime: try runtime.layer())
            let merged = try Merge.merge(input)
            secretNames = Set(merged.entries.filter { $0.value.isSecret }.map(\.name))
            values = try engine.plaintext(merged, executionID: nil)
        }

        logger.debug("launching", metadata: ["command": "\(command[0])", "variables": "\(values.entries.count)",
                                             "mode": "\(deleteOnExit || hardening.supervises ? "supervise" : "exec")"])
        let mode: LaunchRequest.Mode = deleteOnExit || hardening.supervises
            ? .supervise(init: hardening.initMode, maskOutput: hardening.maskOutput) : .exec
        let request = LaunchRequest(command: command, inherited: ChildEnvironment.current(),
                                    base: cleanEnv ? ChildEnvironment.cleanBase : nil, hardening: childHardening, mode: mode)
        var entries = values.entries
        var secrets = hardening.maskOutput ? entries.filter { secretNames.contains($0.name) }.map(\.value) : []
        values.wipe()
        try Session.launch(request, values: &entries, secrets: &secrets, log: { logger.debug("\($0)") }) { status in
            guard deleteOnExit, let id else { return }
            do throws(StigmerError) {
                _ = try store.open(home: home, create: false)?.deleteContext(id)
                logger.debug("deleted context after exit", metadata: ["execution_id": "\(id)", "status": "\(status)"])
            } catch {
                Stderr.line("stigmer-exec: warning: the child exited (\(status)) but context \(id) could not be deleted: \(error); delete it with `stigmer-exec context delete \(id)`")
            }
        }
    }

    /// The hot path's own parser for `stigmer-exec run …`: ArgumentParser's first
    /// reflection-driven parse costs ~2 ms in a binary this size (it scans every protocol
    /// conformance). Anything it does not recognise — help, a typo, a bad value — returns
    /// nil, and ArgumentParser parses the same argv to give its usual message.
    static func fastParse(_ args: ArraySlice<String>) -> RunRequest? {
        var request = RunRequest()
        var i = args.startIndex
        func value(_ arg: String, _ name: String) -> String? {
            if arg.hasPrefix(name + "=") { return String(arg.dropFirst(name.count + 1)) }
            guard arg == name, i + 1 < args.endIndex else { return nil }
            i += 1
            return args[i]
        }
        while i < args.endIndex {
            let arg = args[i]
            if arg == "--" {
                request.command = Array(args[(i + 1)...])
                guard !request.command.isEmpty else { return nil }
                do { try request.runtime.check(); try request.sources.check() } catch { return nil }
                return request
            }
            guard arg.hasPrefix("--") else { return nil }
            let name = String(arg.split(separator: "=", maxSplits: 1)[0])
            switch name {
            case "--clean-env" where arg == name: request.cleanEnv = true
            case "--delete-on-exit" where arg == name: request.deleteOnExit = true
            case "--init" where arg == name: request.hardening.initMode = true
            case "--mask-output" where arg == name: request.hardening.maskOutput = true
            case "--allow-core-dumps" where arg == name: request.hardening.allowCoreDumps = true
            default:
                guard let v = value(arg, name) else { return nil }
                switch name {
                case "--execution-id": request.executionID = v
                case "--server": request.remote.server = v
                case "--token-file": request.remote.tokenFile = v
                case "--token-fd":
                    guard let fd = Int32(v), fd >= 0 else { return nil }
                    request.remote.tokenFD = fd
                case "--tls-ca": request.remote.tlsCA = v
                case "--fetch-timeout": request.remote.fetchTimeout = v
                case "--seccomp": request.hardening.seccomp = v
                case "--memory-limit": request.hardening.memoryLimit = v
                case "--home": request.settings.home = v
                case "--store": request.store.store = v
                case "--key-fd":
                    guard let fd = Int32(v), fd >= 0 else { return nil }
                    request.settings.keyFD = fd
                case "--log-level":
                    guard let level = Logger.Level(rawValue: v) else { return nil }
                    request.settings.logLevel = level
                case "--agent": request.sources.agent = v
                case "--instance": request.sources.instance = v
                case "--env-ref": request.sources.envRefs.append(v)
                case "--env": request.runtime.env.append(v)
                case "--secret": request.runtime.secret.append(v)
                case "--env-file": request.runtime.envFile.append(v)
                case "--secret-file": request.runtime.secretFile.append(v)
                default: return nil
                }
            }
            i += 1
        }
        return nil
    }
}
