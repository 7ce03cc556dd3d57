#if canImport(Glibc)
import Glibc
#endif
import CStigmerShims
import StigmerCore
import StigmerSystem

/// A C string array (argv) allocated once, NUL-terminated entries, nil-terminated.
public struct CStringArray {
    public let pointers: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
    let count: Int

    public init(_ strings: [String]) {
        pointers = .allocate(capacity: strings.count + 1)
        for (i, s) in strings.enumerated() { pointers[i] = strdup(s) }
        pointers[strings.count] = nil
        count = strings.count
    }

    /// From byte strings (environment entries, which need not be UTF-8).
    public init(bytes: [[UInt8]]) {
        pointers = .allocate(capacity: bytes.count + 1)
        for (i, b) in bytes.enumerated() {
            let p = UnsafeMutablePointer<CChar>.allocate(capacity: b.count + 1)
            b.withUnsafeBytes { raw in
                if let base = raw.baseAddress { UnsafeMutableRawPointer(p).copyMemory(from: base, byteCount: b.count) }
            }
            p[b.count] = 0
            pointers[i] = p
        }
        pointers[bytes.count] = nil
        count = bytes.count
    }

    public func release() {
        for i in 0..<count { free(pointers[i]) }
        pointers.deallocate()
    }
}

/// The signals the launcher inherited as ignored (read first thing, before it changes
/// anything): they stay ignored in the child, as under env, nohup and tini.
public final class InheritedSignals: @unchecked Sendable {
    let ignored: UnsafeMutablePointer<sigset_t>

    public init() {
        ignored = .allocate(capacity: 1)
        _ = stigmer_ignored_signals(ignored)
    }

    deinit { ignored.deallocate() }

}

/// What the spawned child does with signals and its parent (supervising modes).
public struct ChildSignals {
    /// Its own process group (signals are forwarded to the group).
    public var newProcessGroup = false
    /// This terminal's foreground goes to the child's group (-1: none).
    public var foregroundTerminal: Int32 = -1
    /// Die with this process (PR_SET_PDEATHSIG), 0: not.
    public var parent: pid_t = 0

    public init(newProcessGroup: Bool = false, foregroundTerminal: Int32 = -1, parent: pid_t = 0) {
        self.newProcessGroup = newProcessGroup
        self.foregroundTerminal = foregroundTerminal
        self.parent = parent
    }
}

/// How the child is hardened (DESIGN.md §6, SECURITY.md).
public struct Hardening: Sendable {
    public var filter: CompiledFilter?
    /// RLIMIT_AS for the child, in bytes.
    public var addressSpaceLimit: Int64?
    public var allowCoreDumps = false
    /// The child's working directory (MCP `working_dir`/`cwd`).
    public var workingDirectory: String?
    /// A Landlock ruleset the child restricts itself with (`Isolation`), -1: none.
    public var landlockRuleset: Int32 = -1
    /// `--no-network`: a network namespace of the child's own, loopback only.
    public var privateNetwork = false

    public init(filter: CompiledFilter? = nil, addressSpaceLimit: Int64? = nil, allowCoreDumps: Bool = false) {
        self.filter = filter
        self.addressSpaceLimit = addressSpaceLimit
        self.allowCoreDumps = allowCoreDumps
    }
}

public enum Launcher {
    /// Resolves `command` like execvp, against the child's PATH: a name with a slash is
    /// taken as a path; otherwise the first executable regular file in PATH wins.
    /// Not found: 127. Found but not executable: 126.
    /// `display` is what messages show (a config's template, when the command came from
    /// one: a value from the context is never echoed).
    public static func resolve(_ command: String, path: String?, display: String? = nil) throws(StigmerError) -> String {
        guard !command.isEmpty else { throw .usage("empty command; give one after --") }
        let shown = display ?? command
        // A byte test: String.contains(String) is _StringProcessing's searcher, whose
        // metadata and caches a launch would otherwise set up (and fault in) for this.
        if command.utf8.contains(UInt8(ascii: "/")) {
            try checkExecutable(command, named: shown)
            return command
        }
        var sawNonExecutable: String?
        for dir in (path ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":", omittingEmptySubsequences: false) {
            let candidate = (dir.isEmpty ? "." : String(dir)) + "/" + command
            var st = FileStatus()
            guard stat(candidate, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { continue }
            if access(candidate, X_OK) == 0 { return candidate }
            sawNonExecutable = sawNonExecutable ?? candidate
        }
        if let sawNonExecutable {
            throw StigmerError(.notExecutable, "\(quoted(shown)) was found at \(display == nil ? quoted(sawNonExecutable) : "a directory of PATH") but is not executable; chmod +x it")
        }
        throw StigmerError(.commandNotFound, "command not found: \(quoted(shown)); check the name or the child's PATH")
    }

    static func checkExecutable(_ path: String, named: String) throws(StigmerError) {
        var st = FileStatus()
        guard stat(path, &st) == 0 else {
            let e = Errno.current
            if e.rawValue == ENOENT || e.rawValue == ENOTDIR {
                throw StigmerError(.commandNotFound, "command not found: \(quoted(named))", cause: e.description)
            }
            throw StigmerError(.notExecutable, "cannot run \(quoted(named))", cause: e.description)
        }
        guard st.st_mode & S_IFMT != S_IFDIR else {
            throw StigmerError(.notExecutable, "\(quoted(named)) is a directory; give a program")
        }
        guard access(path, X_OK) == 0 else {
            throw StigmerError(.notExecutable, "\(quoted(named)) is not executable; chmod +x it", cause: Errno.current.description)
        }
    }

    static func failure(_ errno: Errno, step: String, _ path: String) -> StigmerError {
        if step != "execve" {
            // A hardening step failed: fail closed, nothing ran.
            return StigmerError(.notPermitted, "cannot launch \(quoted(path)): \(step) failed; nothing was launched", cause: errno.description)
        }
        switch errno.rawValue {
        case ENOENT, ENOTDIR:
            // The file exists but its interpreter (#!) or loader does not.
            return StigmerError(.commandNotFound, "cannot run \(quoted(path)): it or its interpreter was not found", cause: errno.description)
        default:
            return StigmerError(.notExecutable, "cannot run \(quoted(path))", cause: errno.description)
        }
    }

    static func withLaunch<T>(path: String, argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>,
                              envp: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>,
                              hardening: Hardening, inherited: InheritedSignals?, signals: ChildSignals,
                              stdoutFD: Int32, stderrFD: Int32,
                              _ body: (UnsafePointer<stigmer_launch>) -> T) -> T {
        func run(_ filters: UnsafePointer<sock_fprog>?, _ count: Int32) -> T {
            path.withCString { cPath in
                let cwd = hardening.workingDirectory.map { strdup($0) } ?? nil
                defer { free(cwd) }
                var launch = stigmer_launch(
                    path: cPath, argv: argv, envp: envp, filters: filters, filter_count: count,
                    mdwe: hardening.filter?.denyWriteExecute == true ? 1 : 0,
                    no_new_privs: hardening.filter != nil ? 1 : 0,
                    new_process_group: signals.newProcessGroup ? 1 : 0,
                    address_space_limit: hardening.addressSpaceLimit ?? 0,
                    stdout_fd: stdoutFD, stderr_fd: stderrFD, reset_signals: inherited == nil ? 2 : 1, cwd: cwd,
                    inherited_ignored: inherited.map { UnsafePointer($0.ignored) },
                    foreground_terminal: signals.foregroundTerminal, parent: signals.parent,
                    landlock_ruleset: hardening.landlockRuleset, private_network: hardening.privateNetwork ? 1 : 0)
                return body(&launch)
            }
        }
        if let filter = hardening.filter {
            return filter.withPrograms { programs, count in run(programs, count) }
        }
        return run(nil, 0)
    }

    /// Replaces this process with the child, after the last hardening steps (signal mask
    /// emptied, limits, no_new_privs, the seccomp filter last). Returns only by throwing.
    /// Dispositions need no reset: execve sets every handler back to default and keeps
    /// ignored signals ignored, and the launch path ignores none of its own, so the child
    /// ignores exactly what this process inherited ignored (nohup) — with no read of
    /// /proc/self/status (~15 µs each here) to find out.
    public static func exec(path: String, argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>,
                            envp: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>,
                            hardening: Hardening, display: String? = nil) throws(StigmerError) -> Never {
        let (rc, step): (Int32, String) = withLaunch(path: path, argv: argv, envp: envp, hardening: hardening, inherited: nil,
                                                     signals: ChildSignals(), stdoutFD: -1, stderrFD: -1) { launch in
            var failed: UnsafePointer<CChar>?
            let rc = stigmer_exec(launch, &failed)
            return (rc, failed.map { String(cString: $0) } ?? "execve")
        }
        throw failure(Errno(-rc), step: step, display ?? path)
    }

    /// Starts the child in a forked process that runs only async-signal-safe C until
    /// execve. Returns once the child has exec'd (or throws: nothing is running).
    public static func spawn(path: String, argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>,
                             envp: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>,
                             hardening: Hardening, inherited: InheritedSignals, signals: ChildSignals,
                             stdoutFD: Int32 = -1, stderrFD: Int32 = -1, display: String? = nil) throws(StigmerError) -> pid_t {
        let (pid, step): (pid_t, String) = withLaunch(path: path, argv: argv, envp: envp, hardening: hardening, inherited: inherited,
                                                      signals: signals, stdoutFD: stdoutFD, stderrFD: stderrFD) { launch in
            var failed: UnsafePointer<CChar>?
            let pid = stigmer_spawn(launch, &failed)
            return (pid, failed.map { String(cString: $0) } ?? "execve")
        }
        guard pid > 0 else { throw failure(Errno(-pid), step: step, display ?? path) }
        return pid
    }
}

/// A test-only pause while the launcher holds plaintext, so a test can try to read its
/// memory and environ from another process. Compiled into debug builds only.
public enum TestHooks {
    public static func pauseWhileHoldingSecrets() {
        #if STIGMER_TEST_HOOKS
        guard let path = Sys.getenv("STIGMER_TEST_PAUSE") else { return }
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if fd >= 0 {
            try? IO.writeAll(fd, "\(getpid())\n")
            close(fd)
        }
        // Wait (at most 60 s) for the test to say go.
        for _ in 0..<6000 {
            if access(path + ".go", F_OK) == 0 { return }
            usleep(10_000)
        }
        #endif
    }
}
