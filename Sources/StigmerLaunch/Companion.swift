#if canImport(Glibc)
import Glibc
#endif
import StigmerCore
import StigmerCrypto
import StigmerSystem

/// Everything about other processes of stigmer-exec, in one place (DESIGN.md §9): finding
/// the companion `stigmer-exec-full`, handing a command over to it (git-style `execve`),
/// and running it as the fetch helper — the process with the network stack, which returns
/// only sealed bytes over a pipe to this process, which has none.
public enum Companion {
    /// `stigmer-exec-full` beside this binary, or `$STIGMER_EXEC_FULL`.
    public static func path() throws(StigmerError) -> String {
        if let override = ControlVariable.companion.value { return override }
        let me = try selfPath()
        let dir = me.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        let path = dir + "/stigmer-exec-full"
        guard access(path, X_OK) == 0 else {
            throw StigmerError(.unavailable, "remote contexts and PostgreSQL stores need stigmer-exec-full, installed beside stigmer-exec (\(quoted(path)) is missing)")
        }
        return path
    }

    /// This executable's absolute path.
    public static func selfPath() throws(StigmerError) -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { throw StigmerError(.internalError, "cannot find stigmer-exec's own path (/proc/self/exe)", cause: Errno.current.description) }
        return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Replaces this process with the companion, same argv (argv[0] replaced) and
    /// descriptors: prompts, exit codes and signals behave as if it were one program.
    public static func handOver(_ args: [String]) throws(StigmerError) -> Never {
        let path = try path()
        let argv = CStringArray([path] + args.dropFirst())
        execv(path, argv.pointers)
        let error = Errno.current
        argv.release()
        throw StigmerError(.unavailable, "cannot start \(quoted(path))", cause: error.description)
    }

    /// What the fetch helper is asked for.
    public struct FetchRequest: Sendable {
        public var executionID: String
        /// Only these names are fetched (least privilege); nil: every name.
        public var names: [String]?
        /// `grpc[s]://…`, or nil for a PostgreSQL store.
        public var server: String?
        /// The PostgreSQL store (its URL may hold a password: it goes in the helper's
        /// environment, never its argv, which every user can read).
        public var store: String?
        /// The launcher's ephemeral X25519 public key (remote only).
        public var recipient: [UInt8]?
        /// --token-file, --token-fd, --tls-ca, --fetch-timeout, --log-level: never a credential.
        public var options: [String]

        public init(executionID: String, names: [String]?, server: String?, store: String?, recipient: [UInt8]?, options: [String]) {
            self.executionID = executionID
            self.names = names
            self.server = server
            self.store = store
            self.recipient = recipient
            self.options = options
        }

        var argv: [String] {
            var out = ["fetch", "--execution-id", executionID]
            if let server { out += ["--server", server] }
            if let recipient { out += ["--recipient", Base64.encode(recipient)] }
            for name in names ?? [] { out += ["--name", name] }
            return out + options
        }
    }

    /// Runs the fetch helper and returns its frame. The helper inherits stderr (its failure
    /// is its own one-line message; this process takes over only the exit status) and an
    /// environment without the master key, the store or the token: those two reach it over
    /// descriptors (3: the token, 4: the store location), never its argv or environment,
    /// which another process of the user could read in the instant before the helper's
    /// `main` makes itself non-dumpable.
    public static func fetch(_ request: FetchRequest) throws(StigmerError) -> FetchFrame {
        let path = try path()
        let pipe = try Pipe()
        let key = Array("\(ControlVariable.encryptionKey.rawValue)=".utf8), store = Array("\(ControlVariable.store.rawValue)=".utf8)
        let tokenVariable = Array("\(ControlVariable.token.rawValue)=".utf8)
        let environment = ChildEnvironment.current().filter {
            !$0.starts(with: key) && !$0.starts(with: store) && !$0.starts(with: tokenVariable)
        }
        var argv = [path] + request.argv
        var handed: [(read: Int32, target: Int32)] = []
        defer { for h in handed { Sys.close(h.read) } }
        func hand(_ text: String, _ what: String, as target: Int32, flag: String) throws(StigmerError) {
            let p = try Pipe()
            defer { Sys.close(p.write) }
            // Above every target, so one dup2 in the child never overwrites another's source.
            let read = fcntl(p.read, F_DUPFD_CLOEXEC, 10)
            Sys.close(p.read)
            guard read >= 0 else { throw StigmerError(.ioError, "cannot hand the \(what) to the fetch helper", cause: Errno.current.description) }
            handed.append((read, target))
            do { try IO.writeAll(p.write, text) } catch {
                throw StigmerError(.ioError, "cannot hand the \(what) to the fetch helper", cause: error.description)
            }
            argv += [flag, "\(target)"]
        }
        if let location = request.store { try hand(location, "store location", as: Process.storeDescriptor, flag: "--store-fd") }
        if let token = ControlVariable.token.value, !request.options.contains("--token-file"), !request.options.contains("--token-fd") {
            try hand(token, "token", as: Process.tokenDescriptor, flag: "--token-fd")
        }
        let pid: pid_t
        do {
            pid = try Process.spawn(path, argv, environment: environment, stdout: pipe.write, descriptors: handed.map { ($0.read, $0.target) })
        } catch {
            Sys.close(pipe.read)
            Sys.close(pipe.write)
            throw error
        }
        Sys.close(pipe.write)
        let output: [UInt8]
        do { output = try IO.readAll(pipe.read, limit: 64 << 20) } catch {
            Sys.close(pipe.read)
            _ = try? Process.wait(pid)
            throw StigmerError(.ioError, "cannot read the fetch helper's answer", cause: error.description)
        }
        Sys.close(pipe.read)
        let status = try Process.wait(pid)
        guard status == .exited(0) else {
            if case .exited(let code) = status { throw StigmerError.reported(exitStatus: code) }
            throw StigmerError(.unavailable, "the fetch helper \(status)")
        }
        let frame = try FetchFrame.decode(output)
        guard frame.executionID == request.executionID else {
            throw StigmerError(.notPermitted, "the fetch helper returned a different execution's context; refusing to use it")
        }
        return frame
    }
}

/// A pipe whose ends are close-on-exec.
struct Pipe {
    let read: Int32
    let write: Int32

    /// A pipe whose read end is 3 or above: when the launcher started with 0-2 closed,
    /// a handed-over descriptor must not take the place of the child's stdin or stdout.
    static func aboveStandard() throws(StigmerError) -> Pipe {
        let pipe = try Pipe()
        guard pipe.read < 3 else { return pipe }
        let moved = fcntl(pipe.read, F_DUPFD_CLOEXEC, 3)
        Sys.close(pipe.read)
        guard moved >= 0 else {
            let e = Errno.current
            Sys.close(pipe.write)
            throw StigmerError(.ioError, "cannot create a pipe", cause: e.description)
        }
        return Pipe(read: moved, write: pipe.write)
    }

    private init(read: Int32, write: Int32) {
        self.read = read
        self.write = write
    }

    init() throws(StigmerError) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            throw StigmerError(.ioError, "cannot create a pipe", cause: Errno.current.description)
        }
        // Single-threaded here: no other thread can fork between pipe and fcntl.
        guard fcntl(fds[0], F_SETFD, FD_CLOEXEC) == 0, fcntl(fds[1], F_SETFD, FD_CLOEXEC) == 0 else {
            let e = Errno.current
            Sys.close(fds[0])
            Sys.close(fds[1])
            throw StigmerError(.ioError, "cannot create a pipe", cause: e.description)
        }
        read = fds[0]
        write = fds[1]
    }
}

/// How a process ended, decoded from a wait status in one place.
public enum ExitStatus: Equatable, Sendable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    /// WIFEXITED/WEXITSTATUS/WTERMSIG, which Swift does not import (they are macros).
    public init(waitStatus status: Int32) {
        let signal = status & 0x7F
        self = signal == 0 ? .exited((status >> 8) & 0xFF) : .signaled(signal)
    }

    /// The status a shell reports: the code, or 128+N for a signal.
    public var shell: Int32 {
        switch self {
        case .exited(let code): code
        case .signaled(let signal): 128 + signal
        }
    }

    public var description: String {
        switch self {
        case .exited(let code): "exited with status \(code)"
        case .signaled(let signal): "was killed by signal \(signal)"
        }
    }
}

/// Plain process helpers for stigmer-exec's own helpers (never the hardened child: that is
/// `Launcher.spawn`).
enum Process {
    /// Where the fetch helper finds its token (`--token-fd 3`) and store (`--store-fd 4`).
    static let tokenDescriptor: Int32 = 3
    static let storeDescriptor: Int32 = 4

    /// posix_spawn with stdout redirected to `stdout`, and each of `descriptors` (source,
    /// target) in place.
    static func spawn(_ path: String, _ argv: [String], environment: [[UInt8]], stdout: Int32,
                      descriptors: [(Int32, Int32)] = []) throws(StigmerError) -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, stdout, 1)
        for (source, target) in descriptors { posix_spawn_file_actions_adddup2(&actions, source, target) }
        let args = CStringArray(argv)
        let env = CStringArray(bytes: environment)
        defer { args.release(); env.release() }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, nil, args.pointers, env.pointers)
        guard rc == 0 else {
            throw StigmerError(.unavailable, "cannot start \(quoted(path))", cause: Errno(rc).description)
        }
        return pid
    }

    /// waitpid, EINTR retried.
    static func wait(_ pid: pid_t) throws(StigmerError) -> ExitStatus {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            let e = Errno.current
            guard e == .interrupted else { throw StigmerError(.internalError, "cannot wait for process \(pid)", cause: e.description) }
        }
        return ExitStatus(waitStatus: status)
    }
}
