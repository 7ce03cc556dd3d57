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
                    throw .cannotWrite("cannot create \(quoted(prefix))", error)
                }
            }
            return
        } catch {
            throw .cannotWrite("cannot create \(quoted(path))\(error.isOutOfSpace ? "" : "; check the parent's permissions")", error)
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

/// What a file that is not a regular one is, for messages.
public func fileKind(_ mode: mode_t) -> String {
    switch mode & S_IFMT {
    case S_IFDIR: "a directory"
    case S_IFIFO: "a FIFO"
    case S_IFCHR: "a character device"
    case S_IFBLK: "a block device"
    case S_IFSOCK: "a socket"
    case S_IFLNK: "a symbolic link"
    default: "of an unknown kind"
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
    /// More than a key file or a token file ever holds (a key is 45 bytes a line).
    public static let sizeLimit = 64 << 10

    /// A missing file is a `.dataError` (the caller says what to do); every other refusal
    /// is `.notPermitted`.
    public static func read(_ path: String, what: String) throws(StigmerError) -> [UInt8] {
        let fd: Int32
        // O_NONBLOCK: a FIFO with no writer would block the open forever; it is opened at
        // once and refused below as not a regular file.
        do { fd = try Sys.open(path, O_RDONLY | O_NONBLOCK) } catch {
            if error == .notFound { throw .data("\(what) \(quoted(path)) does not exist") }
            if error.rawValue == ENXIO {  // what open(2) says of a socket
                throw .notPermitted("\(what) \(quoted(path)) is a socket, not a regular file; it must be the file itself (a symlink to one is followed)")
            }
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
            throw .notPermitted("\(what) \(quoted(path)) is \(fileKind(st.st_mode)), not a regular file; it must be the file itself (a symlink to one is followed)")
        }
        guard st.st_uid == Sys.euid else {
            throw .notPermitted("\(what) \(quoted(path)) is owned by uid \(st.st_uid), not by you (uid \(Sys.euid)); run: chown \(Sys.euid) \(path)")
        }
        let mode = st.st_mode & 0o7777
        guard mode == 0o600 || mode == 0o400 else {
            throw .notPermitted("\(what) \(quoted(path)) has mode \(octal(mode)); it must be 0600 or 0400 — run: chmod 600 \(path)")
        }
        // Refused by its size before a byte is read: a 1 GB file is not a key.
        guard st.st_size <= sizeLimit else {
            throw .notPermitted("\(what) \(quoted(path)) is \(st.st_size) bytes, more than such a file ever holds (\(sizeLimit >> 10) KB); is it the right file?")
        }
        do { return try IO.readAll(fd, limit: sizeLimit, expected: Int(st.st_size)) } catch {
            throw .notPermitted("cannot read \(what) \(quoted(path))", cause: error.description)
        }
    }
}
