#if canImport(Glibc)
import Glibc
#endif
import StigmerCore

/// `$STIGMER_HOME` (default `~/.stigmer`): the key file and the embedded store live here.
public struct StigmerHome: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    /// `--home`, then `STIGMER_HOME`, then `$HOME/.stigmer`, then the passwd entry's home.
    public static func resolve(_ override: String?) throws(StigmerError) -> StigmerHome {
        if let override, !override.isEmpty { return StigmerHome(path: override) }
        if let env = Sys.getenv("STIGMER_HOME"), !env.isEmpty { return StigmerHome(path: env) }
        if let home = Sys.getenv("HOME"), !home.isEmpty { return StigmerHome(path: home + "/.stigmer") }
        if let pw = getpwuid(geteuid()), let dir = pw.pointee.pw_dir {
            return StigmerHome(path: String(cString: dir) + "/.stigmer")
        }
        throw .usage("cannot find a home directory; set STIGMER_HOME or pass --home")
    }

    public var keyFile: String { path + "/encryption.key" }

    /// Creates the home 0700 if missing; refuses an existing one others can read or write,
    /// since it holds the key and the store.
    public func ensureExists() throws(StigmerError) {
        do {
            try Sys.mkdir(path, 0o700)
            return
        } catch let e where e == .exists {
            // Checked below.
        } catch let e where e == .notFound {
            // Parents first (0700 too; they are ours), then the home itself.
            var prefix = path.hasPrefix("/") ? "" : "."
            for part in path.split(separator: "/") {
                prefix += "/" + part
                do { try Sys.mkdir(prefix, 0o700) } catch let e where e == .exists {} catch {
                    throw StigmerError(.ioError, "cannot create \(quoted(prefix))", cause: error.description)
                }
            }
            return
        } catch {
            throw StigmerError(.ioError, "cannot create \(quoted(path)); check the parent's permissions", cause: error.description)
        }
        try checkPrivate()
    }

    /// The home must be a directory owned by us with no group or other access.
    public func checkPrivate() throws(StigmerError) {
        let st: FileStatus
        do { st = try Sys.lstat(path) } catch {
            throw StigmerError(.ioError, "cannot inspect \(quoted(path))", cause: error.description)
        }
        guard st.st_mode & S_IFMT == S_IFDIR else {
            throw .notPermitted("\(quoted(path)) is not a directory; point STIGMER_HOME at a private directory")
        }
        guard st.st_uid == Sys.euid else {
            throw .notPermitted("\(quoted(path)) is owned by uid \(st.st_uid), not by you (uid \(Sys.euid)); use a home of your own")
        }
        let mode = st.st_mode & 0o777
        guard mode & 0o077 == 0 else {
            throw .notPermitted("\(quoted(path)) has mode \(octal(mode)); others must not reach the key — run: chmod 700 \(path)")
        }
    }
}

public func octal(_ mode: mode_t) -> String {
    let digits = String(mode & 0o7777, radix: 8)
    return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
}

/// A file that holds a credential (the key file, the operator token file): read only when
/// it is a regular file owned by us with mode 0600 or 0400 — else 77 — so a file others
/// can read is refused rather than trusted.
public enum PrivateFile {
    /// A missing file is a `.dataError` (the caller says what to do); every other refusal
    /// is `.notPermitted`.
    public static func read(_ path: String, what: String) throws(StigmerError) -> [UInt8] {
        let fd: Int32
        do { fd = try Sys.open(path, O_RDONLY | O_NONBLOCK) } catch {
            if error == .notFound { throw .data("\(what) \(quoted(path)) does not exist") }
            throw .notPermitted("cannot open \(what) \(quoted(path))", cause: error.description)
        }
        defer { Sys.close(fd) }
        // Checked on the open descriptor, not the path, so the file cannot be swapped in
        // between. Symlinks are followed (Kubernetes mounts secrets that way); the target
        // is what must be private.
        let st: FileStatus
        do { st = try Sys.fstat(fd) } catch {
            throw .notPermitted("cannot inspect \(what) \(quoted(path))", cause: error.description)
        }
        guard st.st_mode & S_IFMT == S_IFREG else {
            throw .notPermitted("\(what) \(quoted(path)) is not a regular file")
        }
        guard st.st_uid == Sys.euid else {
            throw .notPermitted("\(what) \(quoted(path)) is owned by uid \(st.st_uid), not by you (uid \(Sys.euid)); run: chown \(Sys.euid) \(path)")
        }
        let mode = st.st_mode & 0o7777
        guard mode == 0o600 || mode == 0o400 else {
            throw .notPermitted("\(what) \(quoted(path)) has mode \(octal(mode)); it must be 0600 or 0400 — run: chmod 600 \(path)")
        }
        do { return try IO.readAll(fd, limit: 64 << 10, expected: Int(st.st_size)) } catch {
            throw .notPermitted("cannot read \(what) \(quoted(path))", cause: error.description)
        }
    }
}
