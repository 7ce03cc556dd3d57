#if canImport(Glibc)
import Glibc
#endif
import CStigmerShims
import StigmerCore
import StigmerSystem

/// A C string array (argv or envp) allocated once, NUL-terminated entries, nil-terminated.
/// Wiped and freed on `release()`: envp holds plaintext.
public struct CStringArray {
    public let pointers: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
    let lengths: [Int]

    public init(_ entries: [[UInt8]]) {
        pointers = .allocate(capacity: entries.count + 1)
        var lengths: [Int] = []
        for (i, entry) in entries.enumerated() {
            let p = UnsafeMutablePointer<CChar>.allocate(capacity: entry.count + 1)
            entry.withUnsafeBufferPointer { src in
                src.withMemoryRebound(to: CChar.self) { p.initialize(from: $0.baseAddress!, count: entry.count) }
            }
            p[entry.count] = 0
            pointers[i] = p
            lengths.append(entry.count)
        }
        pointers[entries.count] = nil
        self.lengths = lengths
    }

    public init(_ strings: [String]) { self.init(strings.map { Array($0.utf8) }) }

    public func release() {
        for (i, length) in lengths.enumerated() {
            if let p = pointers[i] {
                memset(p, 0, length)
                p.deallocate()
            }
        }
        pointers.deallocate()
    }
}

public enum Launcher {
    /// Resolves `command` like execvp, against the child's PATH: a name with a slash is
    /// taken as a path; otherwise the first executable regular file in PATH wins.
    /// Not found: 127. Found but not executable: 126.
    public static func resolve(_ command: String, path: String?) throws(StigmerError) -> String {
        guard !command.isEmpty else { throw .usage("empty command; give one after --") }
        if command.contains("/") {
            try checkExecutable(command, named: command)
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
            throw StigmerError(.notExecutable, "\(quoted(command)) was found at \(quoted(sawNonExecutable)) but is not executable; chmod +x it")
        }
        throw StigmerError(.commandNotFound, "command not found: \(quoted(command)); check the name or the child's PATH")
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

    static func execFailure(_ errno: Errno, _ path: String) -> StigmerError {
        switch errno.rawValue {
        case ENOENT, ENOTDIR:
            // The file exists but its interpreter (#!) or loader does not.
            StigmerError(.commandNotFound, "cannot run \(quoted(path)): it or its interpreter was not found", cause: errno.description)
        default:
            StigmerError(.notExecutable, "cannot run \(quoted(path))", cause: errno.description)
        }
    }

    /// The launcher's own hardening before any secret is in memory (SECURITY.md, order
    /// step 1): not dumpable, so other processes of the same user cannot ptrace it or
    /// read its /proc/PID/mem or environ; no core file, soft and hard.
    public static func hardenSelf(allowCoreDumps: Bool = false) throws(StigmerError) {
        guard stigmer_set_dumpable(0) == 0 else {
            throw StigmerError(.notPermitted, "cannot make the launcher non-dumpable; refusing to hold secrets", cause: Errno.current.description)
        }
        if !allowCoreDumps {
            var limit = rlimit(rlim_cur: 0, rlim_max: 0)
            guard setrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &limit) == 0 else {
                throw StigmerError(.notPermitted, "cannot disable core dumps; refusing to hold secrets", cause: Errno.current.description)
            }
        }
    }

    /// Replaces this process with the child. Returns only by throwing.
    public static func exec(path: String, argv: [String], envp: [[UInt8]]) throws(StigmerError) -> Never {
        let args = CStringArray(argv)
        let env = CStringArray(envp)
        execve(path, args.pointers, env.pointers)
        let e = Errno.current
        env.release()
        args.release()
        throw execFailure(e, path)
    }

    /// Starts the child with posix_spawn (no Swift code runs in the child), with every
    /// signal unblocked and at its default disposition.
    public static func spawn(path: String, argv: [String], envp: [[UInt8]]) throws(StigmerError) -> pid_t {
        let args = CStringArray(argv)
        let env = CStringArray(envp)
        defer { env.release(); args.release() }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var none = sigset_t()
        sigemptyset(&none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attr, &none)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, nil, &attr, args.pointers, env.pointers)
        guard rc == 0 else { throw execFailure(Errno(rc), path) }
        return pid
    }
}
