#if canImport(Glibc)
import Glibc
#endif
import StigmerCore
import StigmerSystem

/// Where the master key comes from (DESIGN.md §5), first found wins:
/// `--key-fd N` (read once, then closed: the key stays out of every environment) →
/// `STIGMER_ENCRYPTION_KEY` → `$STIGMER_HOME/encryption.key` (0600/0400, owned by us).
public enum KeySource {
    public static let environmentVariable = "STIGMER_ENCRYPTION_KEY"

    public static func load(keyFD: Int32?, home: StigmerHome) throws(StigmerError) -> KeyRing {
        if let fd = keyFD { return try fromDescriptor(fd) }
        if let text = ControlVariable.encryptionKey.value {
            return try KeyRing.parse(Array(text.utf8), source: environmentVariable)
        }
        return try fromFile(home.keyFile)
    }

    static func fromDescriptor(_ fd: Int32) throws(StigmerError) -> KeyRing {
        defer { Sys.closeConsumed(fd) }
        var bytes: [UInt8]
        // A pipe or FIFO is read to its end (that is how a key is handed over), but only
        // so far: a descriptor that never ends is refused, not read forever.
        do { bytes = try IO.readAll(fd, limit: PrivateFile.sizeLimit) } catch let error where error.rawValue == EFBIG {
            throw .notPermitted("--key-fd \(fd) gives more than \(PrivateFile.sizeLimit >> 10) KB, more than a key file ever holds; pass the key file, e.g. --key-fd 3 3<keyfile")
        } catch {
            throw .notPermitted("cannot read the key from --key-fd \(fd); pass an open descriptor, e.g. --key-fd 3 3<keyfile", cause: error.description)
        }
        defer { bytes.wipe() }
        return try KeyRing.parse(bytes, source: "--key-fd \(fd)")
    }

    public static func fromFile(_ path: String) throws(StigmerError) -> KeyRing {
        var bytes: [UInt8]
        do { bytes = try PrivateFile.read(path, what: "key file") } catch let error where error.code == .dataError {
            throw .notPermitted("no encryption key: \(quoted(path)) does not exist; run `stigmer-exec key init`, or give --key-fd or \(environmentVariable)")
        }
        defer { bytes.wipe() }
        return try KeyRing.parse(bytes, source: path)
    }

    /// `key init`: a new key file, 0600, in a 0700 home. Never overwrites.
    public static func createKeyFile(home: StigmerHome) throws(StigmerError) -> EncryptionKey {
        try home.ensureExists()
        let path = home.keyFile
        let fd: Int32
        do { fd = try Sys.open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600) } catch {
            if error == .exists {
                throw .notPermitted("\(quoted(path)) already exists; refusing to overwrite a key (values sealed with it would be lost); move it away first if you really mean to replace it")
            }
            throw .cannotWrite("cannot create \(quoted(path))", error)
        }
        let key = EncryptionKey.generate()
        do throws(Errno) {
            defer { Sys.close(fd) }
            // The umask may only have removed bits; make the mode exact.
            guard fchmod(fd, 0o600) == 0 else { throw Errno.current }
            try IO.writeAll(fd, key.base64 + "\n")
            try Sys.fsync(fd)
        } catch {
            try? Sys.unlink(path)
            throw .cannotWrite("cannot write \(quoted(path))", error)
        }
        return key
    }
}

extension KeySource {
    /// `key rotate`: the key file with `key` added last (the newest, which seals from now
    /// on). A file of 32 raw bytes becomes base64 text, one key per line; comments stay.
    public static func addKey(_ key: EncryptionKey, home: StigmerHome) throws(StigmerError) {
        var old = try PrivateFile.read(home.keyFile, what: "key file")
        defer { old.wipe() }
        var text = KeyRing.isText(old) ? old : Array(try KeyRing.parse(old, source: home.keyFile).newest.base64.utf8)
        defer { text.wipe() }
        if let last = text.last, last != 0x0A { text.append(0x0A) }
        text += Array((key.base64 + "\n").utf8)
        try replaceKeyFile(home.keyFile, with: text)
    }

    /// `key retire`: the key file without the lines that hold key `id`. False when none did.
    public static func removeKey(id: String, home: StigmerHome) throws(StigmerError) -> Bool {
        var old = try PrivateFile.read(home.keyFile, what: "key file")
        defer { old.wipe() }
        var kept: [UInt8] = []
        defer { kept.wipe() }
        var removed = false
        for line in old.split(separator: 0x0A, omittingEmptySubsequences: false) {
            let words = line.split(whereSeparator: { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D })
            if words.count == 1, var decoded = Base64.decode(array: Array(words[0])) {
                defer { decoded.wipe() }
                if decoded.count == 32, (try? EncryptionKey(bytes: decoded))?.id == id { removed = true; continue }
            }
            kept += line
            kept.append(0x0A)
        }
        if kept.last == 0x0A, old.last != 0x0A { kept.removeLast() }
        guard removed else { return false }
        try replaceKeyFile(home.keyFile, with: kept)
        return true
    }

    /// Writes the key file whole to a temporary file beside it (0600), syncs it, renames it
    /// over the old one and syncs the folder: a crash or a full disk leaves the old file or
    /// the new one, never a mixture — the keys are what every stored value depends on.
    static func replaceKeyFile(_ path: String, with text: [UInt8]) throws(StigmerError) {
        let temporary = path + ".new"
        do throws(Errno) {
            // Ours to reuse: the home is 0700 and ours (a rotation killed before its rename
            // leaves one behind).
            try? Sys.unlink(temporary)
            let fd = try Sys.open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            do {
                defer { Sys.close(fd) }
                guard fchmod(fd, 0o600) == 0 else { throw Errno.current }
                try IO.writeAll(fd, text)
                try Sys.fsync(fd)
            }
            guard rename(temporary, path) == 0 else { throw Errno.current }
        } catch {
            try? Sys.unlink(temporary)
            throw .cannotWrite("cannot write the key file \(quoted(path)); it is unchanged", error)
        }
        // The rename is durable once the folder is: until then a crash may bring the old file back.
        try? Sys.syncDirectory(of: path)
    }
}

/// The key ring, loaded once and only when a secret needs it (DESIGN.md §5). Handed down
/// to the engine as a value, so no layer calls back up into the CLI for the key.
public final class KeyLoader {
    let keyFD: Int32?
    let home: String?
    /// Called with a message builder, evaluated only when the caller logs it (a key's id
    /// costs a SHA-256: not on every launch).
    let log: (() -> String) -> Void
    var ring: KeyRing?

    /// `keyFD` is read once (then closed); else `STIGMER_ENCRYPTION_KEY`, else the key
    /// file in the home (`home`, else `STIGMER_HOME`, else `~/.stigmer`).
    public init(keyFD: Int32? = nil, home: String? = nil, log: @escaping (() -> String) -> Void = { _ in }) {
        self.keyFD = keyFD
        self.home = home
        self.log = log
    }

    /// A loader that hands out `ring` (the server, tests).
    public init(ring: KeyRing) {
        keyFD = nil
        home = nil
        log = { _ in }
        self.ring = ring
    }

    public func load() throws(StigmerError) -> KeyRing {
        if let ring { return ring }
        let loaded = try KeySource.load(keyFD: keyFD, home: try StigmerHome.resolve(home))
        log { "loaded encryption keys \(loaded.keys.map(\.id).joined(separator: ",")) from \(loaded.source)" }
        ring = loaded
        return loaded
    }
}
