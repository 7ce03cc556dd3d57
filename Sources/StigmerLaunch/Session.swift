#if canImport(Glibc)
import Glibc
#endif
import CStigmerShims
import StigmerCore
import StigmerSystem

/// One launch, in SECURITY.md's order. The caller has already made the launcher
/// non-dumpable with core limit 0 (step 1) and opened the values (step 3, transiently on
/// the heap); this moves them into the secret area, builds envp there (step 4), and
/// execs — or spawns and supervises — with signals reset and the filter last (5–6).
public struct LaunchRequest {
    public enum Mode: Sendable {
        /// The launcher becomes the child.
        case exec
        /// The launcher stays as parent (`--init`, `--delete-on-exit`, `--mask-output`).
        case supervise(init: Bool, maskOutput: Bool)
    }

    public var command: [String]
    /// The launcher's environment; `STIGMER_*` never passes.
    public var inherited: [[UInt8]]
    /// When set, only these inherited names pass (`--clean-env`, the MCP base).
    public var base: [String]?
    public var hardening: Hardening
    public var mode: Mode

    public init(command: [String], inherited: [[UInt8]], base: [String]? = nil, hardening: Hardening, mode: Mode) {
        self.command = command
        self.inherited = inherited
        self.base = base
        self.hardening = hardening
        self.mode = mode
    }
}

public enum Session {
    /// Launches `request` with `values` in the child's environment. `secrets` are the
    /// plaintexts `--mask-output` conceals (only secrets: plain values pass through).
    /// Both are wiped before this returns or throws. In supervise mode, `afterExit` runs
    /// once the child has exited, then the launcher exits with the child's status.
    public static func launch(_ request: LaunchRequest, values: inout [(name: String, value: [UInt8])],
                              secrets: inout [[UInt8]],
                              log: (String) -> Void = { _ in },
                              afterExit: (Int32) -> Void = { _ in }) throws(StigmerError) -> Never {
        defer {
            wipe(&values)
            for i in secrets.indices { for j in secrets[i].indices { secrets[i][j] = 0 } }
            secrets.removeAll()
        }
        let overridden = Set(values.map(\.name))
        let inherited = ChildEnvironment.inherited(request.inherited, clean: request.base != nil,
                                                   base: request.base ?? [], overridden: overridden)
        let childPath = values.last { $0.name == "PATH" }.map { String(decoding: $0.value, as: UTF8.self) }
            ?? ChildEnvironment.lookup("PATH", in: inherited)
        let path = try Launcher.resolve(request.command[0], path: childPath)

        // Step 2 and 4: the secret area, envp built in it, the heap copies wiped.
        let arena = try SecretArena(capacity: ChildEnvironment.size(inherited: inherited, values: values))
        log("secret area: \(arena.kind.rawValue), \(arena.capacity) bytes")
        let envp = try ChildEnvironment.envp(inherited: inherited, values: values, arena: arena)

        guard case .supervise(let initMode, let maskOutput) = request.mode else {
            wipe(&values)
            TestHooks.pauseWhileHoldingSecrets()
            try Launcher.exec(path: path, argv: request.command, envp: envp, hardening: request.hardening)
        }

        let masker = maskOutput ? try Masker(values: secrets) : nil
        wipe(&values)
        TestHooks.pauseWhileHoldingSecrets()

        // PID 1 reaps everything anyway; elsewhere, become a subreaper so orphans of the
        // child are re-parented here and reaped, as tini does.
        if initMode && getpid() != 1 { _ = stigmer_set_child_subreaper() }
        // Signals go to the child's process group, unless it shares our terminal
        // (job control needs the foreground group intact).
        let group = initMode && !Sys.isatty(0)

        var outputs: [Supervisor.Output] = []
        var childEnds: [Int32] = [-1, -1]
        if masker != nil {
            for (i, target) in [Int32(1), Int32(2)].enumerated() {
                var fds: [Int32] = [0, 0]
                guard pipe(&fds) == 0, fcntl(fds[0], F_SETFD, FD_CLOEXEC) == 0, fcntl(fds[1], F_SETFD, FD_CLOEXEC) == 0 else {
                    throw StigmerError(.ioError, "cannot create the output pipe for masking; nothing was launched", cause: Errno.current.description)
                }
                outputs.append(Supervisor.Output(source: fds[0], target: target))
                childEnds[i] = fds[1]
            }
        }
        Supervisor.blockSignals()
        let child = try Launcher.spawn(path: path, argv: request.command, envp: envp, hardening: request.hardening,
                                       newProcessGroup: group, stdoutFD: childEnds[0], stderrFD: childEnds[1])
        for fd in childEnds where fd >= 0 { close(fd) }
        // The child has exec'd: our copy of its environment is no longer needed.
        arena.wipe()
        let status = Supervisor.supervise(child: child, group: group, reapAll: initMode, outputs: outputs, masker: masker)
        afterExit(status)
        exit(status)
    }

    static func wipe(_ values: inout [(name: String, value: [UInt8])]) {
        for i in values.indices {
            for j in values[i].value.indices { values[i].value[j] = 0 }
        }
        values.removeAll()
    }
}
