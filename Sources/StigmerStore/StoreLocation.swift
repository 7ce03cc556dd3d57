import StigmerCore
import StigmerSystem

/// Which store: `--store`, else `STIGMER_STORE`, else `$STIGMER_HOME/stigmer.db`. The one
/// place that tells a PostgreSQL URL from a SQLite path.
public struct StoreLocation: Sendable, Equatable {
    /// `--store` as given.
    public var option: String?

    public init(_ option: String? = nil) { self.option = option }

    /// `--store`, else `STIGMER_STORE` (empty: unset); nil means the home's SQLite file.
    public var location: String? { ControlVariable.store.or(option) }

    public static func isPostgres(_ location: String) -> Bool {
        location.hasPrefix("postgres://") || location.hasPrefix("postgresql://")
    }

    /// Whether `text` holds "://", byte by byte.
    static func containsSchemeSeparator(_ text: String) -> Bool {
        var state = 0  // bytes of "://" matched so far
        for byte in text.utf8 {
            switch (state, byte) {
            case (_, UInt8(ascii: ":")): state = 1
            case (1, UInt8(ascii: "/")): state = 2
            case (2, UInt8(ascii: "/")): return true
            default: state = 0
            }
        }
        return false
    }

    /// A `postgres://user:password@…` URL: a credential.
    public static func holdsPassword(_ location: String) -> Bool {
        guard isPostgres(location) else { return false }
        let rest = location.drop { $0 != "/" }.drop { $0 == "/" }
        guard let at = rest.firstIndex(of: "@") else { return false }
        return rest[..<at].utf8.contains(UInt8(ascii: ":"))
    }

    /// The URL for messages: a password replaced by `***`.
    public static func redacted(_ location: String) -> String {
        guard holdsPassword(location), let scheme = location.firstIndex(of: "/") else { return location }
        let afterScheme = location[scheme...].drop { $0 == "/" }
        guard let at = afterScheme.firstIndex(of: "@"), let colon = afterScheme[..<at].firstIndex(of: ":") else { return location }
        return String(location[..<afterScheme.index(after: colon)]) + "***" + String(location[at...])
    }

    /// One warning line when `--store` itself carries a password: argv is readable by every
    /// user in /proc. (stigmer-exec never puts one in an argv it builds.)
    public func warnIfPasswordInArgv() {
        if let option, Self.holdsPassword(option) {
            Stderr.line("stigmer-exec: warning: --store holds a database password, and argv is readable by every user in /proc/PID/cmdline; set STIGMER_STORE instead (the environment is private to the process and its user)")
        }
    }

    /// The SQLite file `--store`/`STIGMER_STORE` names (`sqlite:` prefixes dropped); nil for
    /// the home's default or a PostgreSQL URL.
    public var sqlitePath: String? {
        guard let location, !Self.isPostgres(location) else { return nil }
        for prefix in ["sqlite://", "sqlite:"] where location.hasPrefix(prefix) { return String(location.dropFirst(prefix.count)) }
        return location
    }

    /// The store for messages: its path, or its URL with any password hidden.
    public func description(home: StigmerHome) -> String {
        guard let location else { return quoted(home.path + "/" + SQLiteStore.fileName) }
        return quoted(Self.isPostgres(location) ? Self.redacted(location) : sqlitePath ?? location)
    }

    /// A PostgreSQL store: its commands belong to the companion.
    public var isPostgres: Bool { location.map(Self.isPostgres) ?? false }

    /// The embedded store, or nil when `create` is false and nothing was ever stored.
    public func open(home: StigmerHome, create: Bool, readOnly: Bool = false) throws(StigmerError) -> SQLiteStore? {
        guard let location else {
            if create { try home.ensureExists() }
            return try SQLiteStore.open(path: home.path + "/" + SQLiteStore.fileName, create: create, readOnly: readOnly)
        }
        if Self.isPostgres(location) {
            // apply, context, env, plan and run reach PostgreSQL through the companion before this.
            throw .usage("this command works on the embedded SQLite store only, for now (mcp check on PostgreSQL is not implemented); use `context get --store postgres://…` or the server")
        }
        // Not String.contains: a launch passes here, and _StringProcessing's searcher costs
        // it metadata and page faults.
        guard let path = sqlitePath, !path.isEmpty, !Self.containsSchemeSeparator(path) else {
            throw .usage("unsupported store \(quoted(location)); give a SQLite file path or a postgres:// URL")
        }
        return try SQLiteStore.open(path: path, create: create, readOnly: readOnly)
    }
}
