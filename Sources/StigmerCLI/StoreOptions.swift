import ArgumentParser
import StigmerCore
import StigmerStore
import StigmerSystem

/// Which store: `--store`, else `STIGMER_STORE`, else `$STIGMER_HOME/stigmer.db`.
public struct StoreOptions: ParsableArguments {
    public init() {}

    @Option(name: .long, help: ArgumentHelp("The store: a SQLite path (or sqlite:PATH). Default: $STIGMER_STORE, else $STIGMER_HOME/stigmer.db.", valueName: "STORE"))
    public var store: String?

    public func open(home: StigmerHome, create: Bool, readOnly: Bool = false) throws(StigmerError) -> SQLiteStore? {
        try StoreLocation(store: store).open(home: home, create: create, readOnly: readOnly)
    }
}

public struct StoreLocation {
    public var store: String?

    public init(store: String? = nil) { self.store = store }

    /// A PostgreSQL store: its commands belong to the companion.
    public var isPostgres: Bool {
        let location = store ?? Sys.getenv("STIGMER_STORE") ?? ""
        return location.hasPrefix("postgres://") || location.hasPrefix("postgresql://")
    }

    /// The store, or nil when `create` is false and nothing was ever stored.
    public func open(home: StigmerHome, create: Bool, readOnly: Bool = false) throws(StigmerError) -> SQLiteStore? {
        let location = store ?? Sys.getenv("STIGMER_STORE").flatMap { $0.isEmpty ? nil : $0 }
        guard let location else {
            if create { try home.ensureExists() }
            return try SQLiteStore.open(path: home.path + "/" + SQLiteStore.fileName, create: create, readOnly: readOnly)
        }
        if location.hasPrefix("postgres://") || location.hasPrefix("postgresql://") {
            throw .usage("PostgreSQL stores come with stigmer-exec-full, which this build does not include yet; use a SQLite path")
        }
        var path = location
        for prefix in ["sqlite://", "sqlite:"] where path.hasPrefix(prefix) { path = String(path.dropFirst(prefix.count)); break }
        guard !path.isEmpty, !path.contains("://") else {
            throw .usage("unsupported store \(quoted(location)); give a SQLite file path")
        }
        return try SQLiteStore.open(path: path, create: create, readOnly: readOnly)
    }
}
