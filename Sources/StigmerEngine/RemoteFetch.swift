#if canImport(Glibc)
import Glibc
#endif
import StigmerCore
import StigmerCrypto
import StigmerSystem

/// Where a remote context comes from, and how to reach it.
public struct RemoteSource: Sendable {
    /// `grpc://host:port` / `grpcs://host:port`, or nil for a PostgreSQL store.
    public var server: String?
    /// `postgres://…`, when the context is in PostgreSQL.
    public var store: String?
    /// Passed through to the helper: --token-file, --token-fd, --fetch-timeout, --tls-ca, --log-level.
    public var helperArgs: [String]

    public init(server: String?, store: String?, helperArgs: [String]) {
        self.server = server
        self.store = store
        self.helperArgs = helperArgs
    }
}

/// The launcher's half of privilege separation (DESIGN.md §9): the network and the
/// PostgreSQL driver live in `stigmer-exec-full`, spawned as a fetch helper that hands
/// back only sealed bytes over a pipe; this process, which has no network stack, opens
/// them. For a remote server the helper never sees a plaintext value at all (HPKE to
/// this process's ephemeral key); it never gets the master key.
public enum RemoteFetch {
    /// `stigmer-exec-full` beside this binary, or `$STIGMER_EXEC_FULL`.
    public static func companionPath() throws(StigmerError) -> String {
        if let override = Sys.getenv("STIGMER_EXEC_FULL"), !override.isEmpty { return override }
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { throw StigmerError(.internalError, "cannot find stigmer-exec's own path") }
        let me = String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let dir = me.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        let path = dir + "/stigmer-exec-full"
        guard access(path, X_OK) == 0 else {
            throw StigmerError(.unavailable, "remote contexts and PostgreSQL stores need stigmer-exec-full, installed beside stigmer-exec (\(quoted(path)) is missing)")
        }
        return path
    }

    /// Fetches and opens the context; `ring` is asked for only when the store's own
    /// ciphertext has to be opened (PostgreSQL).
    public static func fetch(executionID: String, source: RemoteSource,
                             ring: () throws(StigmerError) -> KeyRing) throws(StigmerError) -> (values: ResolvedValues, secretNames: Set<String>) {
        let recipient = Delivery.Recipient()
        var argv = [try companionPath(), "fetch", "--execution-id", executionID]
        if let server = source.server {
            argv += ["--server", server, "--recipient", Base64.encode(recipient.publicKey)]
        } else if let store = source.store {
            argv += ["--store", store]
        }
        argv += source.helperArgs
        let output = try runHelper(argv)
        let frame = try FetchFrame.decode(output)
        guard frame.executionID == executionID else {
            throw StigmerError(.notPermitted, "the fetch helper returned a different execution's context; refusing to use it")
        }
        var values = ResolvedValues()
        do throws(StigmerError) {
            let sealed = frame.values.filter { $0.kind == .hpke }
            let opened = sealed.isEmpty ? [] : try recipient.open(encapsulatedKey: frame.encapsulatedKey, executionID: executionID,
                                                                  values: sealed.map { ($0.name, $0.data) })
            var next = 0
            var keys: KeyRing?
            for value in frame.values {
                switch value.kind {
                case .plain: values.entries.append((value.name, value.data))
                case .hpke:
                    values.entries.append((value.name, opened[next]))
                    next += 1
                case .sealed:
                    if keys == nil { keys = try ring() }
                    let text = String(decoding: value.data, as: UTF8.self)
                    values.entries.append((value.name, try Sealer.open(text, for: .execution(executionID, value.name), with: keys!)))
                }
            }
        } catch {
            values.wipe()
            throw error
        }
        return (values, Set(frame.values.filter(\.isSecret).map(\.name)))
    }

    /// Runs the helper with stdout on a pipe, stderr and the rest inherited, and without
    /// the master key in its environment. Its failure is its own one-line message; this
    /// process only takes over the exit status.
    static func runHelper(_ argv: [String]) throws(StigmerError) -> [UInt8] {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw StigmerError(.ioError, "cannot create a pipe for the fetch helper", cause: Errno.current.description) }
        fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_addclose(&actions, fds[1])
        let env = currentEnvironment().filter { !$0.hasPrefix("STIGMER_ENCRYPTION_KEY=") }
        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = env.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) }; cEnv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, nil, cArgs, cEnv)
        close(fds[1])
        guard rc == 0 else {
            close(fds[0])
            throw StigmerError(.unavailable, "cannot start the fetch helper \(quoted(argv[0]))", cause: Errno(rc).description)
        }
        let output = (try? IO.readAll(fds[0], limit: 64 << 20)) ?? []
        close(fds[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let code = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        guard code == 0 else { throw StigmerError.reported(exitStatus: code) }
        return output
    }

    static func currentEnvironment() -> [String] {
        var out: [String] = []
        var cursor = environ
        while let entry = cursor.pointee {
            out.append(String(cString: entry))
            cursor += 1
        }
        return out
    }
}
