#if canImport(Glibc)
import Glibc
#endif
import CStigmerShims
import Logging
import StigmerCore
import StigmerCrypto
import StigmerEngine
import StigmerStore
import StigmerSystem

/// Where a stored context lives and how to reach it.
public struct ContextLocation: Sendable, Equatable {
    /// `--home`; else `STIGMER_HOME`, else `~/.stigmer`.
    public var home: String?
    public var store = StoreLocation()
    /// `--server` (`--context-server` for `mcp run`); else `STIGMER_SERVER`.
    public var server: String?
    /// `--key-fd`: read once, then closed.
    public var keyFD: Int32?
    /// For the fetch helper: --token-file, --token-fd, --tls-ca, --fetch-timeout, --log-level.
    public var helperOptions: [String] = []
    /// Files the child must not open besides the home and store (the token file).
    public var protectedFiles: [String] = []
    /// `--token-fd`: handed to the fetch helper, then closed here, so the child never
    /// inherits it.
    public var tokenFD: Int32?

    public init(home: String? = nil, store: StoreLocation = StoreLocation(), server: String? = nil, keyFD: Int32? = nil, helperOptions: [String] = []) {
        self.home = home
        self.store = store
        self.server = server
        self.keyFD = keyFD
        self.helperOptions = helperOptions
    }

    public var serverURL: String? { ControlVariable.server.or(server) }

    /// A remote server or PostgreSQL: the companion fetches (privilege separation).
    public var usesCompanion: Bool { serverURL != nil || store.isPostgres }
}

/// One launch, as data: what to open, what to start, how to harden it. Every launch mode
/// (`run`, `mcp run`, and those to come) builds one and calls `Launch.run`.
public struct LaunchPlan {
    public enum Values: Sendable, Equatable {
        /// A stored context.
        case stored(executionID: String)
        /// An ephemeral run: merged in memory from these, nothing stored.
        case ephemeral(sources: Sources, runtime: RuntimeInputs)
    }

    public var values: Values
    public var location: ContextLocation
    public var child: ChildSpec
    public var hardening: HardeningSpec
    /// Stay as the child's parent and delete the context when it exits.
    public var deleteOnExit = false
    public var logger: Logger

    public init(values: Values, location: ContextLocation, child: ChildSpec, hardening: HardeningSpec,
                deleteOnExit: Bool = false, logger: Logger) {
        self.values = values
        self.location = location
        self.child = child
        self.hardening = hardening
        self.deleteOnExit = deleteOnExit
        self.logger = logger
    }

    public var supervises: Bool { deleteOnExit || hardening.supervises }
}

/// The launch sequence of SECURITY.md, in its order, in one place.
public enum Launch {
    public static func run(_ plan: LaunchPlan) throws(StigmerError) -> Never {
        var plan = plan
        let log = plan.logger
        // 1. Not dumpable, core limit 0 — before any secret is in memory, so no other
        //    process of this user can read ours and no crash can write it to disk.
        try SelfProtection.finish(allowCoreDumps: plan.hardening.allowCoreDumps)
        // What we inherited as ignored stays ignored in the child (nohup). A supervisor
        // reads it first thing, before anything here could change it, for the child it
        // forks; an exec needs nothing read: execve keeps ignored dispositions, and this
        // process ignores no signal of its own on the way (Launcher.exec).
        let inheritedSignals = plan.supervises ? InheritedSignals() : nil
        SQLiteStore.configureShortLived()
        // Nonsense is refused before anything is opened; sandbox profiles are read.
        try check(plan)
        plan.hardening = try plan.hardening.resolved()
        let sandbox = plan.hardening.sandbox
        if sandbox.noNetwork && plan.child.handoff != nil {
            // From a flag or a profile: the bridge is the network.
            throw .usage("--no-network cannot apply to server \(quoted(plan.child.server)): it is an http server, reached over the network by the bridge; use --net-connect PORT to limit where it connects")
        }
        if plan.child.container && (sandbox.hasFS || sandbox.hasNet || sandbox.noNetwork) {
            // Silently confining only the docker CLI would be a sandbox in name only.
            throw .usage("server \(quoted(plan.child.server)) is a docker server: a sandbox (--fs-*, --net-*, --no-network, a profile) would confine the docker CLI, not the container the daemon starts; give the container its own limits (network: none, read-only volumes) and drop the sandbox")
        }
        // 6, prepared first: the filter and limits are built before anything is opened;
        //    a profile that cannot be built stops the launch with no secret decrypted.
        var hardening = try plan.hardening.compile()
        if let filter = hardening.filter {
            log.debug("seccomp filter compiled", metadata: ["profile": "\(filter.name)", "instructions": "\(filter.instructionCount)",
                                                           "unknown_syscalls": "\(filter.unknownSyscalls.count)"])
        }
        // 6, prepared first: the Landlock ruleset that keeps the child out of our home,
        //    store and token files, also before anything is opened.
        //    With --fs-*/--net-*, the same ruleset is the sandbox; --no-network's namespace is
        //    checked for now and made in the child's last steps.
        let isolation = try Isolation.build(protecting: protectedPaths(plan), policy: plan.hardening.isolation,
                                            sandbox: plan.hardening.sandbox) { log.debug("\($0())") }
        if let ruleset = isolation.ruleset { hardening.landlockRuleset = ruleset }
        if plan.hardening.sandbox.noNetwork {
            try PrivateNetwork.check()
            hardening.privateNetwork = true
        }
        // 2-3. Only the names this launch needs, decrypted straight into locked memory
        //      (mlock + MADV_DONTDUMP; LockedRegion says why not memfd_secret) that one owner wipes.
        let values = try open(plan)
        // Read and used: the key and tokens given in our own environment are wiped from it
        // (a supervisor's /proc/PID/environ stays readable by root for the child's life).
        // (The store's location, which may hold a password, only when nothing reads it again.)
        ControlVariable.wipe([.encryptionKey, .token, .operatorToken] + (plan.deleteOnExit ? [] : [.store]))
        log.debug("values opened", metadata: ["variables": "\(values.entries.count)", "memory": "\(values.kind.rawValue)"])
        // Every placeholder resolves, or nothing starts (78 names them all).
        if let error = plan.child.unresolved(values) { throw error }
        for argument in plan.child.secretArguments(values) {
            Stderr.line("stigmer-exec: warning: server \(plan.child.server) \(argument.field) holds a secret; argv is readable in /proc/PID/cmdline — pass it through env instead")
        }
        // Values the child reads as files: sealed memfds, on no filesystem.
        let files = try SecretFiles(plan.child.fileNames, values: values)
        // What the child reads from a pipe instead of argv or environment (the HTTP
        // bridge's headers): the pipe's read end is the child's, named in its argv.
        var child = plan.child
        let handoffPipe = try child.handoff.map { handoff throws(StigmerError) -> Pipe in
            let pipe = try Pipe.aboveStandard()
            child.argv += [Template(literal: handoff.flag), Template(literal: "\(pipe.read)")]
            return pipe
        }
        // 4. argv and envp built in a secret area of their own, minus every STIGMER_*
        //    control variable (the key, tokens, ids).
        let image = try ChildImage(child, values: values, inherited: ChildEnvironment.current(), files: files)
        if let handoffPipe { try hand(image.handoff, over: handoffPipe) }
        let display = plan.child.argv[0].names.isEmpty ? nil : plan.child.argv[0].source
        let path = try Launcher.resolve(image.command, path: image.path, display: display)
        // (Its paths are not logged when the command came from the context: it may be a secret.)
        isolation.allowCommand(path, childPath: image.path) { message in if display == nil { log.debug("\(message())") } }
        hardening.workingDirectory = image.workingDirectory
        // What --mask-output conceals stays in locked memory of its own while the child runs.
        let masker = plan.hardening.maskOutput ? try Masker(secretsOf: values) : nil
        // The opened values end here: their owner wipes them.
        _ = consume values
        TestHooks.pauseWhileHoldingSecrets()
        log.debug("launching", metadata: ["command": "\(display ?? image.command)", "mode": "\(plan.supervises ? "supervise" : "exec")"])
        try files.handOver()
        guard plan.supervises, let inheritedSignals else {
            // 5-6. Signals reset, limits, no_new_privs, the filter last, execve: this
            //      process becomes the child.
            try Launcher.exec(path: path, argv: image.argv, envp: image.envp, hardening: hardening, display: display)
        }
        let status = try supervise(plan, image: image, path: path, display: display, hardening: hardening,
                                   inherited: inheritedSignals, masker: masker, handoff: handoffPipe?.read, files: files)
        if plan.deleteOnExit, case .stored(let id) = plan.values { deleteContext(id, plan, after: status) }
        exit(status.shell)
    }

    /// Writes the encoded handoff into the pipe whole (the child has not started: it must
    /// fit the pipe's buffer), closes the write end, and lets the read end pass exec.
    static func hand(_ bytes: UnsafeRawBufferPointer, over pipe: Pipe) throws(StigmerError) {
        defer { Sys.close(pipe.write) }
        guard bytes.count <= Handoff.limit else {
            Sys.close(pipe.read)
            throw StigmerError(.dataError, "the server's url, headers and query parameters take \(bytes.count) bytes resolved; at most \(Handoff.limit) can be handed over")
        }
        // A user past fs.pipe-user-pages-soft gets pipes of 8 KiB or less: grown to fit,
        // and written without blocking, so a pipe too small is an error, not a hang.
        let getPipeSize: Int32 = 1032, setPipeSize: Int32 = 1031  // F_GETPIPE_SZ, F_SETPIPE_SZ (_GNU_SOURCE)
        if fcntl(pipe.write, getPipeSize) < bytes.count { _ = fcntl(pipe.write, setPipeSize, Int32(bytes.count)) }
        _ = fcntl(pipe.write, F_SETFL, O_NONBLOCK)
        do { try IO.writeAll(pipe.write, bytes) } catch {
            Sys.close(pipe.read)
            throw StigmerError(.ioError, "cannot hand the server's headers over (\(bytes.count) bytes; a pipe this size is refused past fs.pipe-user-pages-soft); nothing was launched", cause: error.description)
        }
        guard fcntl(pipe.read, F_SETFD, 0) == 0 else {
            let e = Errno.current
            Sys.close(pipe.read)
            throw StigmerError(.ioError, "cannot hand the server's headers over; nothing was launched", cause: e.description)
        }
    }

    /// What the child must not open: the home (key file, embedded store), a SQLite store
    /// elsewhere and its journal files, the token file, a seccomp profile file.
    static func protectedPaths(_ plan: LaunchPlan) -> [String] {
        var out: [String] = []
        if let home = try? StigmerHome.resolve(plan.location.home) { out.append(home.path) }
        if let path = plan.location.store.sqlitePath {
            out += [path, path + "-wal", path + "-shm", path + "-journal"]
        }
        out += plan.location.protectedFiles
        if !["default", "strict", "none"].contains(plan.hardening.seccomp) { out.append(plan.hardening.seccomp) }
        // Under a filesystem sandbox the child may write where its own config and profiles
        // live: it must not loosen its next launch.
        if plan.hardening.sandbox.hasFS {
            out += plan.hardening.sandbox.profiles  // as `resolved()` expanded them
            if !plan.child.file.isEmpty { out.append(plan.child.file) }
        }
        return out
    }

    static func check(_ plan: LaunchPlan) throws(StigmerError) {
        guard !plan.child.argv.isEmpty else { throw .usage("give the command after --, e.g. stigmer-exec run --execution-id ID -- env") }
        switch plan.values {
        case .stored(let id):
            try Engine.checkExecutionID(id)
            if plan.deleteOnExit && plan.location.serverURL != nil {
                throw .usage("--delete-on-exit cannot delete a remote context (an execution token only reads); the server's TTL sweep or `stigmer-exec context delete --server` removes it")
            }
            if plan.deleteOnExit && plan.location.store.isPostgres {
                throw .usage("--delete-on-exit works with the embedded store; delete a PostgreSQL context with `stigmer-exec context delete ID --store …` when the run ends")
            }
        case .ephemeral:
            if plan.deleteOnExit { throw .usage("--delete-on-exit needs --execution-id: an ephemeral run stores nothing") }
        }
    }

    /// Step 3: opens only what the child refers to (every value for `run`), from wherever
    /// the context is.
    static func open(_ plan: LaunchPlan) throws(StigmerError) -> SecretBytes {
        let names = plan.child.names
        let log = plan.logger
        let keys = KeyLoader(keyFD: plan.location.keyFD, home: plan.location.home) { message in log.debug("\(message())") }
        // A --key-fd is read now, needed or not: left open it would pass to the fetch
        // helper and to the child (with the key in it).
        if plan.location.keyFD != nil { _ = try keys.load() }
        defer { if let fd = plan.location.tokenFD { Sys.closeConsumed(fd) } }
        let home = try StigmerHome.resolve(plan.location.home)
        switch plan.values {
        case .stored(let id):
            if plan.location.usesCompanion {
                // Privilege separation: the companion fetches sealed bytes, this process
                // (which has no network stack) opens them.
                let server = plan.location.serverURL
                // A fetch may wait out a server's absence for --fetch-timeout: as a
                // container's PID 1, stay stoppable meanwhile.
                if getpid() == 1 { stigmer_exit_on_termination_signals() }
                let recipient = server != nil ? Delivery.Recipient() : nil
                let frame = try Companion.fetch(Companion.FetchRequest(
                    executionID: id, names: names, server: server, store: server == nil ? plan.location.store.location : nil,
                    recipient: recipient?.publicKey, options: plan.location.helperOptions))
                return try Engine(store: nil, keys: keys).open(frame, recipient: recipient, only: names.map(Set.init))
            }
            // Read-only unless this launcher deletes the context afterwards.
            let engine = Engine(store: try plan.location.store.open(home: home, create: false, readOnly: !plan.deleteOnExit), keys: keys)
            let context = try engine.storedContext(id)
            return try engine.open(context.data, only: names.map(Set.init), executionID: id)
        case .ephemeral(let sources, let runtime):
            let store = sources.isEmpty ? nil : try plan.location.store.open(home: home, create: false, readOnly: true)
            let engine = Engine(store: store, keys: keys)
            let input = try engine.mergeInput(agent: sources.agent, instance: sources.instance, envRefs: sources.envRefs,
                                              runtime: try runtime.layer())
            return try engine.open(try Merge.merge(input), only: names.map(Set.init), executionID: nil)
        }
    }

    /// The supervising modes: spawn, then forward signals, reap, mask output, until the
    /// child exits.
    static func supervise(_ plan: LaunchPlan, image: ChildImage, path: String, display: String?, hardening: Hardening,
                          inherited: InheritedSignals, masker: Masker?, handoff: Int32?, files: SecretFiles) throws(StigmerError) -> ExitStatus {
        let initMode = plan.hardening.initMode
        // PID 1 reaps everything anyway; elsewhere, become a subreaper so orphans of the
        // child are re-parented here and reaped, as tini does.
        if initMode && getpid() != 1 && stigmer_set_child_subreaper() != 0 {
            throw StigmerError(.internalError, "cannot become a subreaper for --init; nothing was launched", cause: Errno.current.description)
        }
        // On a terminal where we are in the foreground, the child gets its own group and the
        // foreground (tini's way): one Ctrl-C reaches it once, from the terminal. Without a
        // terminal, --init forwards to the child's group.
        let terminal: Int32 = Sys.isatty(0) && tcgetpgrp(0) == getpgrp() ? 0 : -1
        let group = initMode || terminal >= 0
        var outputs: [Supervisor.Output] = []
        var childEnds: [Int32] = [-1, -1]
        if masker != nil {
            for (i, target) in [Int32(1), Int32(2)].enumerated() {
                let pipe: Pipe
                do { pipe = try Pipe() } catch {
                    throw StigmerError(.ioError, "cannot create the output pipe for masking; nothing was launched", cause: error.cause)
                }
                outputs.append(Supervisor.Output(source: pipe.read, target: target))
                childEnds[i] = pipe.write
            }
        }
        let signals = try Supervisor.signals()
        let child = try Launcher.spawn(path: path, argv: image.argv, envp: image.envp, hardening: hardening, inherited: inherited,
                                       signals: ChildSignals(newProcessGroup: group, foregroundTerminal: group ? terminal : -1, parent: getpid()),
                                       stdoutFD: childEnds[0], stderrFD: childEnds[1], display: display)
        for fd in childEnds where fd >= 0 { Sys.close(fd) }
        if let handoff { Sys.close(handoff) }  // the child's now
        files.close()
        if hardening.landlockRuleset >= 0 { Sys.close(hardening.landlockRuleset) }
        // The child has exec'd: our copy of its argv and environment is no longer needed.
        image.arena.wipe()
        return try Supervisor.supervise(child: child, group: group, reapAll: initMode, signals: signals, outputs: outputs, masker: masker)
    }

    static func deleteContext(_ id: String, _ plan: LaunchPlan, after status: ExitStatus) {
        do throws(StigmerError) {
            _ = try plan.location.store.open(home: try StigmerHome.resolve(plan.location.home), create: false)?.deleteContext(id)
            plan.logger.debug("deleted context after exit", metadata: ["execution_id": "\(id)", "status": "\(status.shell)"])
        } catch {
            Stderr.line("stigmer-exec: warning: the child \(status) but context \(id) could not be deleted: \(error); delete it with `stigmer-exec context delete \(id)`")
        }
    }
}
