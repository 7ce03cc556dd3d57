#if canImport(Glibc)
import Glibc
#endif
import CSQLite
import StigmerCore
import StigmerSystem

/// The embedded default store: SQLite at `$STIGMER_HOME/stigmer.db`, WAL, a busy timeout,
/// versioned migrations (`PRAGMA user_version`), secure_delete so a deleted context's
/// ciphertext is overwritten, mode 0600. Secrets are stored sealed only.
public final class SQLiteStore: Store {
    public static let fileName = "stigmer.db"
    static let busyTimeoutMilliseconds = 5000
    /// What a WAL is cut back to after a checkpoint resets it (and to zero on the last close).
    static let walSizeLimit = 4 << 20
    /// How much of the file a launch's one-shot reader maps instead of reading.
    static let readMapLimit = 64 << 20

    /// Each migration moves the schema from version N to N+1. Never edit one that shipped.
    static let migrations: [String] = [
        """
        CREATE TABLE resources (
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            description TEXT,
            agent TEXT,
            environment_refs TEXT,
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (kind, name)
        ) WITHOUT ROWID;
        CREATE TABLE resource_values (
            kind TEXT NOT NULL,
            owner TEXT NOT NULL,
            name TEXT NOT NULL,
            position INTEGER NOT NULL,
            value TEXT,
            sealed INTEGER NOT NULL,
            is_secret INTEGER NOT NULL,
            description TEXT,
            PRIMARY KEY (kind, owner, name)
        ) WITHOUT ROWID;
        CREATE TABLE contexts (
            execution_id TEXT NOT NULL PRIMARY KEY,
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX contexts_by_expiry ON contexts (expires_at);
        CREATE TABLE context_values (
            execution_id TEXT NOT NULL,
            name TEXT NOT NULL,
            position INTEGER NOT NULL,
            value TEXT NOT NULL,
            sealed INTEGER NOT NULL,
            is_secret INTEGER NOT NULL,
            layer TEXT NOT NULL,
            PRIMARY KEY (execution_id, name)
        ) WITHOUT ROWID;
        """,
        // 2: the hash of the execution-scoped token a server issued.
        "ALTER TABLE contexts ADD COLUMN token_hash TEXT;",
        // 3: integrity tags on contexts and resources; token hashes looked up by index (a
        // fetch names its token's key, not only the execution).
        """
        ALTER TABLE contexts ADD COLUMN tag TEXT;
        ALTER TABLE resources ADD COLUMN tag TEXT;
        CREATE UNIQUE INDEX contexts_by_token ON contexts (token_hash);
        """,
    ]

    let connection: SQLiteConnection
    /// The launch's one read transaction, begun at open, is still open (`context` ends it).
    var openedReadTransaction = false

    /// For a single-threaded process that reads the store once and leaves (the launch):
    /// SQLite without mutexes, memory statistics, and the lookaside buffer and page-cache
    /// bulk it would otherwise set up, and fault in, at open. Call before any store is
    /// opened, and only where no other thread will use SQLite; after an open it changes
    /// nothing.
    public static func configureShortLived() {
        _ = stigmer_sqlite3_configure_short_lived()
        shortLived = true
    }

    /// Set by `configureShortLived`: read-only stores this process opens are one-shot
    /// readers (see `init`).
    nonisolated(unsafe) static var shortLived = false

    /// Opens (and, when `create`, creates) the store at `path`. A missing file without
    /// `create` is `nil`: nothing has been stored yet. `readOnly` is for the launch path:
    /// such a connection never writes, migrates or checkpoints (no fsync on close).
    public static func open(path: String, create: Bool, readOnly: Bool = false) throws(StigmerError) -> SQLiteStore? {
        let st: FileStatus
        do { st = try Sys.stat(path) } catch let e where e == .notFound {
            guard create else { return nil }
            try createWhole(path)
            return try SQLiteStore(path: path)
        } catch {
            throw StigmerError(.unavailable, "cannot reach the store \(quoted(path))", cause: error.description)
        }
        // A FIFO or device would block (or feed) SQLite forever: only a regular file.
        guard st.st_mode & S_IFMT == S_IFREG else {
            throw .data("the store \(quoted(path)) is \(fileKind(st.st_mode)), not a regular file; point --store (or STIGMER_STORE) at a SQLite database file")
        }
        // Told by the size alone, before SQLite reads a byte: a store is never empty (it
        // is created whole, below), and SQLite writes whole pages of 512 bytes or a
        // multiple. SQLite would take an empty or cut-short file for a new database.
        if st.st_size == 0 {
            throw SQLiteConnection.damaged(path, "is empty (0 bytes): it was truncated, or is not a stigmer-exec store")
        }
        if st.st_size % 512 != 0 {
            throw SQLiteConnection.damaged(path, "is damaged: its \(st.st_size) bytes are not whole pages (it was cut short)")
        }
        return try SQLiteStore(path: path, readOnly: readOnly && !create)
    }

    /// A new store appears whole or not at all: created and migrated under a temporary
    /// name, then linked into place. So a command killed (or out of disk space) while it
    /// creates the store leaves none rather than an empty file, and an empty store is
    /// always damage. Creators take turns by a lock on the temporary file; one killed
    /// midway leaves it behind for the next, which starts it over.
    static func createWhole(_ path: String) throws(StigmerError) {
        let temporary = path + ".new"
        let leftovers = [temporary, temporary + "-journal", temporary + "-wal", temporary + "-shm"]
        let fd: Int32
        do { fd = try Sys.open(temporary, O_RDWR | O_CREAT | O_NOFOLLOW, 0o600) } catch {
            throw .cannotWrite("cannot create the store \(quoted(path))", error)
        }
        defer { Sys.close(fd) }
        do throws(Errno) {
            try Sys.flock(fd, LOCK_EX)
            // Another creator finished while this one waited: use its store (and drop the
            // temporary file this open may have made anew).
            if access(path, F_OK) == 0 {
                try? Sys.unlink(temporary)
                return
            }
            // A killed creator's half-made file and journal: start over from nothing.
            try Sys.ftruncate(fd, 0)
            for leftover in leftovers.dropFirst() { try? Sys.unlink(leftover) }
        } catch {
            throw StigmerError(.ioError, "cannot create the store \(quoted(path))", cause: error.description)
        }
        defer { for leftover in leftovers { try? Sys.unlink(leftover) } }
        // Migrated with a rollback journal, so that when the connection is gone every
        // byte is in the file itself, none in a WAL that is removed with the rest.
        _ = try SQLiteStore(path: temporary, shownAs: path)
        do throws(Errno) {
            try Sys.fsync(fd)
            try Sys.link(temporary, path)
            try Sys.syncDirectory(of: path)
        } catch let e where e == .exists {
            // Made meanwhile by something that did not wait for the lock: it stays.
        } catch {
            throw .cannotWrite("cannot create the store \(quoted(path))", error)
        }
    }

    /// Whether the store's WAL holds no frames (missing or empty), as after the last
    /// writer's close.
    static func walIsEmpty(_ path: String) -> Bool {
        do { return try Sys.stat(path + "-wal").st_size == 0 } catch { return error == .notFound }
    }

    /// `shownAs`: the path messages name (a store being created has a temporary one).
    init(path: String, readOnly: Bool = false, shownAs: String? = nil) throws(StigmerError) {
        // A launch: one reader, usually the only connection to the file, for milliseconds.
        let oneShot = readOnly && Self.shortLived
        // Only over an empty WAL: with frames in it (a writer attached, or a crash) a
        // read-only index that disagrees with the WAL — stale, or the WAL damaged — makes
        // SQLite retry for ten seconds and fail with SQLITE_PROTOCOL; a reader that may
        // write the index rebuilds it instead.
        if oneShot && access(path + "-shm", F_OK) == 0 && Self.walIsEmpty(path) {
            // With the WAL index opened read-only SQLite does not rebuild it (truncate,
            // extend, eight writes, map) but reads the database directly when the WAL is
            // empty, and indexes the WAL in its own memory when it is not; with a writer or
            // server attached it uses theirs. SQLite's readonly_shm; it needs the -shm file,
            // which a persistent WAL keeps. Not for the server's long-lived readers: they
            // would never advance a read mark, and checkpoints would stall behind them.
            connection = try SQLiteConnection(path: path, flags: SQLITE_OPEN_READONLY, uri: "readonly_shm=1")
        } else {
            connection = try SQLiteConnection(path: path, flags: readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE, shownAs: shownAs)
        }
        // Keep -wal and -shm between connections: otherwise every launch creates and the
        // last one unlinks both files, which costs more than the whole query.
        var persist: Int32 = 1
        sqlite3_file_control(connection.db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist)
        if !readOnly {
            try connection.exec("PRAGMA busy_timeout = \(Self.busyTimeoutMilliseconds); PRAGMA secure_delete = ON", "opening")
            // With a persistent WAL, a limit makes the last writer's close truncate the WAL
            // to zero bytes after its checkpoint. Left whole, every launch (the first
            // connection to open the file) re-reads and re-checksums all of its frames to
            // rebuild the index.
            try connection.exec("PRAGMA journal_size_limit = \(Self.walSizeLimit)", "opening")
            try migrate()
            return
        }
        try connection.exec("PRAGMA busy_timeout = \(Self.busyTimeoutMilliseconds)", "opening")
        if oneShot {
            // Pages straight from the page cache, not copied into buffers of SQLite's own
            // (a fault per buffer page). Ciphertext only; the file is ours (0600).
            try connection.exec("PRAGMA mmap_size = \(Self.readMapLimit)", "opening")
            // One read transaction from here to the first read's end: the version check,
            // the schema and the context from one snapshot, one set of locks (each
            // statement in its own transaction took the WAL locks and re-read page 1).
            try connection.exec("BEGIN", "opening")
            openedReadTransaction = true
        }
        let version = try userVersion()
        guard version == Self.migrations.count else {
            throw StigmerError(.unavailable, "the store \(quoted(path)) has schema version \(version), this stigmer-exec expects \(Self.migrations.count); run a writing command (e.g. `stigmer-exec context gc`) to migrate it, or upgrade stigmer-exec")
        }
    }

    func userVersion() throws(StigmerError) -> Int {
        var version = 0
        try connection.run("PRAGMA user_version", [], "reading the schema version") { row in version = Int(row.int(0)) }
        return version
    }

    func migrate() throws(StigmerError) {
        let current = try userVersion()
        if current == Self.migrations.count { return }
        guard current < Self.migrations.count else {
            throw StigmerError(.unavailable, "the store \(quoted(connection.path)) has schema version \(current), newer than this stigmer-exec knows (\(Self.migrations.count)); upgrade stigmer-exec")
        }
        try connection.transaction("migrating the schema") { () throws(StigmerError) in
            // Re-read inside the write lock: another process may have migrated meanwhile.
            let version = try userVersion()
            for index in version..<Self.migrations.count {
                try connection.exec(Self.migrations[index], "applying migration \(index + 1)")
            }
            try connection.exec("PRAGMA user_version = \(Self.migrations.count)", "recording the schema version")
        }
        // WAL is a property of the file; set once, outside a transaction, and after the
        // schema: a new store's first transaction then goes through a rollback journal
        // into the file itself (see `createWhole`). An existing store is in WAL already.
        try connection.exec("PRAGMA journal_mode = WAL", "enabling WAL")
    }

    // MARK: Resources

    public func apply(_ resources: [Resource]) throws(StigmerError) {
        try StoreRules.check(resources)
        let now = Sys.now()
        try connection.transaction("applying resources") { () throws(StigmerError) in
            for resource in resources { try write(resource, now: now) }
        }
    }

    /// Replaces one resource's rows (inside the caller's transaction).
    func write(_ resource: Resource, now: Int64) throws(StigmerError) {
        let kind = resource.kind, name = resource.name
        try connection.run("DELETE FROM resources WHERE kind = ? AND name = ?", [.text(kind), .text(name)], "replacing \(resource)")
        try connection.run("DELETE FROM resource_values WHERE kind = ? AND owner = ?", [.text(kind), .text(name)], "replacing \(resource)")
        let c = ResourceColumns(resource)
        try connection.run(
            "INSERT INTO resources (kind, name, description, agent, environment_refs, updated_at, tag) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [.text(kind), .text(name), Self.optional(c.description), Self.optional(c.agent), Self.optional(c.environmentRefs), .int(now),
             Self.optional(c.tag)],
            "storing \(resource)")
        for (position, (variable, value)) in c.data.entries.enumerated() {
            let (text, sealed) = Self.columns(value.content)
            try connection.run(
                "INSERT INTO resource_values (kind, owner, name, position, value, sealed, is_secret, description) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [.text(kind), .text(name), .text(variable), .int(Int64(position)), text, .int(sealed ? 1 : 0),
                 .int(value.isSecret ? 1 : 0), Self.optional(value.summary)],
                "storing \(resource)")
        }
    }

    static func optional(_ s: String?) -> SQLiteConnection.Value { s.map { .text($0) } ?? .null }

    static func columns(_ content: ValueContent?) -> (SQLiteConnection.Value, Bool) {
        switch content {
        case .plain(let s): (.text(s), false)
        case .sealed(let s): (.text(s), true)
        case nil: (.null, false)
        }
    }

    static func content(_ text: String?, sealed: Bool) -> ValueContent? {
        guard let text else { return nil }
        return sealed ? .sealed(text) : .plain(text)
    }

    func values(kind: String, owner: String) throws(StigmerError) -> Variables<EnvironmentValue> {
        var data = Variables<EnvironmentValue>()
        try connection.run(
            "SELECT name, value, sealed, is_secret, description FROM resource_values WHERE kind = ? AND owner = ? ORDER BY position",
            [.text(kind), .text(owner)], "reading \(kind)/\(owner)") { row in
                data[row.text(0) ?? ""] = EnvironmentValue(content: Self.content(row.text(1), sealed: row.int(2) != 0),
                                                           isSecret: row.int(3) != 0, summary: row.text(4))
            }
        return data
    }

    func resourceRow(_ kind: String, _ name: String) throws(StigmerError) -> (description: String?, agent: String?, refs: String?, tag: String?)? {
        var found: (String?, String?, String?, String?)?
        try connection.run("SELECT description, agent, environment_refs, tag FROM resources WHERE kind = ? AND name = ?",
                           [.text(kind), .text(name)], "reading \(kind)/\(name)") { row in
            found = (row.text(0), row.text(1), row.text(2), row.text(3))
        }
        return found
    }

    public func environment(_ name: String) throws(StigmerError) -> Environment? {
        guard let row = try resourceRow("Environment", name) else { return nil }
        return Environment(name: name, spec: EnvironmentSpec(summary: row.description, data: try values(kind: "Environment", owner: name)),
                           tag: row.tag)
    }

    public func environments() throws(StigmerError) -> [Environment] {
        var names: [String] = []
        try connection.run("SELECT name FROM resources WHERE kind = 'Environment' ORDER BY name", [], "listing environments") { row in
            names.append(row.text(0) ?? "")
        }
        var out: [Environment] = []
        for name in names { if let e = try environment(name) { out.append(e) } }
        return out
    }

    public func deleteEnvironment(_ name: String) throws(StigmerError) -> Bool {
        try connection.transaction("deleting Environment/\(name)") { () throws(StigmerError) -> Bool in
            try connection.run("DELETE FROM resources WHERE kind = 'Environment' AND name = ?", [.text(name)], "deleting Environment/\(name)")
            let deleted = connection.changes() > 0
            try connection.run("DELETE FROM resource_values WHERE kind = 'Environment' AND owner = ?", [.text(name)], "deleting Environment/\(name)")
            return deleted
        }
    }

    public func agent(_ name: String) throws(StigmerError) -> Agent? {
        for kind in ["Agent", "McpServer"] {
            if let row = try resourceRow(kind, name) {
                return Agent(name: name, summary: row.description,
                             envSpec: EnvironmentSpec(data: try values(kind: kind, owner: name)), tag: row.tag)
            }
        }
        return nil
    }

    public func instance(_ name: String) throws(StigmerError) -> AgentInstance? {
        guard let row = try resourceRow("AgentInstance", name) else { return nil }
        let refs = (row.refs ?? "").split(separator: "\n").map(String.init)
        return AgentInstance(name: name, agentID: row.agent ?? "", environmentRefs: refs, tag: row.tag)
    }

    // MARK: Contexts

    public func createContext(_ context: ExecutionContext, replace: Bool) throws(StigmerError) {
        try StoreRules.checkSealed(context.data, owner: "context \(context.executionID)")
        let id = context.executionID
        try connection.transaction("creating context \(id)") { () throws(StigmerError) in
            var exists = false
            try connection.run("SELECT 1 FROM contexts WHERE execution_id = ?", [.text(id)], "creating context \(id)") { _ in exists = true }
            if exists {
                guard replace else { throw StoreRules.conflict(id) }
                try deleteContextRows(id)
            }
            try insert(context)
        }
    }

    /// A context's rows (inside the caller's transaction, with none there for its id).
    func insert(_ context: ExecutionContext) throws(StigmerError) {
        let id = context.executionID
        try connection.run("INSERT INTO contexts (execution_id, created_at, expires_at, token_hash, tag) VALUES (?, ?, ?, ?, ?)",
                           [.text(id), .int(context.createdAt), .int(context.expiresAt), Self.optional(context.tokenHash),
                            Self.optional(context.tag)],
                           "creating context \(id)")
        for (position, (name, value)) in context.data.entries.enumerated() {
            let (text, sealed) = Self.columns(value.content)
            try connection.run(
                "INSERT INTO context_values (execution_id, name, position, value, sealed, is_secret, layer) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [.text(id), .text(name), .int(Int64(position)), text, .int(sealed ? 1 : 0), .int(value.isSecret ? 1 : 0),
                 .text(value.layer.description)],
                "creating context \(id)")
        }
    }

    public func executionID(forTokenHash hash: String) throws(StigmerError) -> String? {
        var found: String?
        try connection.run("SELECT execution_id FROM contexts WHERE token_hash = ?", [.text(hash)],
                           "looking up an execution token") { row in found = row.text(0) }
        return found
    }

    public func context(_ executionID: String) throws(StigmerError) -> ExecutionContext? {
        var times: (Int64, Int64, String?, String?)?
        var data = Variables<ExecutionValue>()
        // Room for a usual context at once (it grew through six rehashes to 50 entries).
        data.reserveCapacity(64)
        var bad: String?
        // One read transaction, so a concurrent replace is never seen half-done (a launch's
        // connection is already in the one it opened with).
        // Ended here only when it is this read's own (or the launch's, begun at open): inside
        // a caller's transaction (`rekey`) a COMMIT would end theirs half-way.
        let ours = openedReadTransaction || sqlite3_get_autocommit(connection.db) != 0
        if sqlite3_get_autocommit(connection.db) != 0 { try connection.exec("BEGIN", "reading context \(executionID)") }
        openedReadTransaction = false
        defer { if ours { _ = sqlite3_exec(connection.db, "COMMIT", nil, nil, nil) } }
        try connection.run("SELECT created_at, expires_at, token_hash, tag FROM contexts WHERE execution_id = ?", [.text(executionID)],
                           "reading context \(executionID)") { row in times = (row.int(0), row.int(1), row.text(2), row.text(3)) }
        guard let times else { return nil }
        try connection.run("SELECT name, value, sealed, is_secret, layer FROM context_values WHERE execution_id = ? ORDER BY position",
                           [.text(executionID)], "reading context \(executionID)") { row in
            let name = row.text(0) ?? ""
            guard let layer = Layer(row.text(4) ?? ""), let content = Self.content(row.text(1), sealed: row.int(2) != 0) else {
                bad = name
                return
            }
            data[name] = ExecutionValue(content: content, isSecret: row.int(3) != 0, layer: layer)
        }
        if let bad {
            throw StigmerError(.notPermitted, "context \(quoted(executionID)) has a damaged row for \(bad) in \(quoted(connection.path)); refusing to use it")
        }
        return ExecutionContext(executionID: executionID, data: data, createdAt: times.0, expiresAt: times.1, tokenHash: times.2, tag: times.3)
    }

    func deleteContextRows(_ id: String) throws(StigmerError) {
        try connection.run("DELETE FROM context_values WHERE execution_id = ?", [.text(id)], "deleting context \(id)")
        try connection.run("DELETE FROM contexts WHERE execution_id = ?", [.text(id)], "deleting context \(id)")
    }

    public func deleteContext(_ executionID: String) throws(StigmerError) -> Bool {
        try connection.transaction("deleting context \(executionID)") { () throws(StigmerError) -> Bool in
            try deleteContextRows(executionID)
            return connection.changes() > 0
        }
    }

    public func deleteExpired(now: Int64) throws(StigmerError) -> Int {
        try connection.transaction("sweeping expired contexts") { () throws(StigmerError) -> Int in try deleteExpired(inTransaction: now) }
    }

    func deleteExpired(inTransaction now: Int64) throws(StigmerError) -> Int {
        try connection.run("DELETE FROM context_values WHERE execution_id IN (SELECT execution_id FROM contexts WHERE expires_at <= ?)",
                           [.int(now)], "sweeping expired contexts")
        try connection.run("DELETE FROM contexts WHERE expires_at <= ?", [.int(now)], "sweeping expired contexts")
        return connection.changes()
    }

    // MARK: Keys

    /// Every resource as stored, by kind and name (`rekey`, `keyUsage`).
    func allResources() throws(StigmerError) -> [Resource] {
        var keys: [(String, String)] = []
        try connection.run("SELECT kind, name FROM resources ORDER BY kind, name", [], "listing resources") { row in
            keys.append((row.text(0) ?? "", row.text(1) ?? ""))
        }
        var out: [Resource] = []
        for (kind, name) in keys {
            switch kind {
            case "Environment": if let e = try environment(name) { out.append(.environment(e)) }
            case "AgentInstance": if let i = try instance(name) { out.append(.agentInstance(i)) }
            case "Agent", "McpServer":
                guard let row = try resourceRow(kind, name) else { continue }
                let agent = Agent(name: name, summary: row.description, envSpec: EnvironmentSpec(data: try values(kind: kind, owner: name)), tag: row.tag)
                out.append(kind == "Agent" ? .agent(agent) : .mcpServer(agent))
            default:
                throw StigmerError(.unavailable, "the store \(quoted(connection.path)) holds a resource of unknown kind \(quoted(kind)); it was written by something other than this stigmer-exec")
            }
        }
        return out
    }

    func allContextIDs() throws(StigmerError) -> [String] {
        var ids: [String] = []
        try connection.run("SELECT execution_id FROM contexts ORDER BY execution_id", [], "listing contexts") { row in ids.append(row.text(0) ?? "") }
        return ids
    }

    public func rekey(now: Int64, _ rekeying: Rekeying) throws(StigmerError) -> RekeyReport {
        try connection.transaction("re-sealing the store") { () throws(StigmerError) -> RekeyReport in
            var report = RekeyReport()
            report.expiredSwept = try deleteExpired(inTransaction: now)
            for resource in try allResources() {
                try write(try rekeying.resource(resource), now: now)
                report.resources += 1
            }
            for id in try allContextIDs() {
                guard let context = try context(id) else { continue }
                let rekeyed = try rekeying.context(context)
                try deleteContextRows(id)
                try insert(rekeyed)
                report.contexts += 1
            }
            return report
        }
    }

    public func keyUsage() throws(StigmerError) -> KeyUsage {
        // One read transaction: one snapshot of everything.
        try connection.exec("BEGIN", "reading the store's keys")
        defer { _ = sqlite3_exec(connection.db, "COMMIT", nil, nil, nil) }
        var usage = KeyUsage()
        for resource in try allResources() { usage.note(resource) }
        for id in try allContextIDs() { if let context = try context(id) { usage.note(context) } }
        return usage
    }
}
