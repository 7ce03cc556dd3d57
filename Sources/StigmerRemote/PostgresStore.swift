import Logging
import Synchronization
import PostgresNIO
import StigmerCore
import StigmerStore
import StigmerSystem

/// The store on PostgreSQL (postgres-nio), for operators beyond one machine: the same
/// semantics as the SQLite store — it passes the same conformance suite — with
/// transactions for every multi-row change, and migrations serialised by an advisory lock
/// so several `serve` processes can start on one database at once.
public final class PostgresStore: AsyncStore {
    public let client: PostgresClient
    let logger: Logger
    /// How long one operation may wait for the database before it is "unavailable" (69):
    /// postgres-nio otherwise queues requests for a minute while it cannot connect.
    let deadline: Duration
    /// The URL the client connects with, for `diagnose`; nil: no diagnosis.
    let target: PostgresTarget?
    /// One diagnosis at a time (`serve` runs many operations at once).
    let diagnosing = Atomic<Bool>(false)

    static let migrations: [[String]] = [
        [
            """
            CREATE TABLE resources (
                kind TEXT NOT NULL, name TEXT NOT NULL, description TEXT, agent TEXT,
                environment_refs TEXT, updated_at BIGINT NOT NULL, PRIMARY KEY (kind, name))
            """,
            """
            CREATE TABLE resource_values (
                kind TEXT NOT NULL, owner TEXT NOT NULL, name TEXT NOT NULL, position INTEGER NOT NULL,
                value TEXT, sealed BOOLEAN NOT NULL, is_secret BOOLEAN NOT NULL, description TEXT,
                PRIMARY KEY (kind, owner, name))
            """,
            """
            CREATE TABLE contexts (
                execution_id TEXT PRIMARY KEY, created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, token_hash TEXT)
            """,
            "CREATE INDEX contexts_by_expiry ON contexts (expires_at)",
            """
            CREATE TABLE context_values (
                execution_id TEXT NOT NULL REFERENCES contexts (execution_id) ON DELETE CASCADE,
                name TEXT NOT NULL, position INTEGER NOT NULL, value TEXT NOT NULL, sealed BOOLEAN NOT NULL,
                is_secret BOOLEAN NOT NULL, layer TEXT NOT NULL, PRIMARY KEY (execution_id, name))
            """,
        ],
        // 2: integrity tags on contexts and resources; token hashes looked up by index.
        [
            "ALTER TABLE contexts ADD COLUMN tag TEXT",
            "ALTER TABLE resources ADD COLUMN tag TEXT",
            "CREATE UNIQUE INDEX contexts_by_token ON contexts (token_hash)",
        ],
    ]

    public init(client: PostgresClient, logger: Logger, deadline: Duration = .seconds(5), target: PostgresTarget? = nil) {
        self.client = client
        self.logger = logger
        self.deadline = deadline
        self.target = target
    }

    /// Runs `op` within the deadline; the database being away, or any error that is not
    /// the server's own answer, becomes "unavailable" (69). On timeout the caller gets its
    /// answer at once: the operation is cancelled but not waited for, since a query stuck
    /// on a dead connection (or an advisory lock) does not always honour cancellation.
    func db<T: Sendable>(_ what: String, deadline: Duration? = nil, _ op: @escaping @Sendable () async throws -> T) async throws(StigmerError) -> T {
        let deadline = deadline ?? self.deadline
        let outcome: Result<T, StigmerError> = await withCheckedContinuation { continuation in
            let race = Race(continuation)
            let work = Task {
                do {
                    _ = race.finish(.success(try await op()))
                } catch let error as PostgresTransactionError {
                    _ = race.finish(.failure(Self.map(error.closureError ?? error.commitError ?? error.beginError ?? error, what)))
                } catch {
                    _ = race.finish(.failure(Self.map(error, what)))
                }
            }
            // One watcher per operation; it ends after a second when the answer came.
            Task {
                let early = min(deadline, .seconds(1))
                try? await Task.sleep(for: early)
                guard !race.isFinished else { return }
                // The pool retries a connection that fails, silently, until the deadline. A slow
                // answer gets one connection of our own that asks why: a cause waiting cannot
                // cure (no TLS on the server, a certificate or a password refused) ends the
                // wait at once, named.
                if target != nil {
                    Task {
                        if let refusal = await self.diagnose(), race.finish(.failure(refusal)) { work.cancel() }
                    }
                }
                try? await Task.sleep(for: deadline - early)
                if race.finish(.failure(StigmerError(.unavailable, "PostgreSQL did not answer within \(deadline) while \(what); check that it is running and reachable"))) {
                    work.cancel()
                }
            }
        }
        return try outcome.get()
    }

    /// One connection outside the pool, with the same settings: nil when it connects, or
    /// fails in a way the deadline should decide (refused, reset, the server restarting).
    func diagnose() async -> StigmerError? {
        guard let target, diagnosing.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged else { return nil }
        defer { diagnosing.store(false, ordering: .relaxed) }
        var quiet = logger
        quiet.logLevel = max(logger.logLevel, .error)
        do {
            let connection = try await PostgresConnection.connect(configuration: target.connection, id: 0, logger: quiet)
            try? await connection.close()
            return nil
        } catch {
            return target.refusal(error)
        }
    }

    /// The first of two racers to finish resumes the continuation; the other is ignored.
    final class Race<T: Sendable>: Sendable {
        let finished = Mutex(false)
        let continuation: CheckedContinuation<Result<T, StigmerError>, Never>

        init(_ continuation: CheckedContinuation<Result<T, StigmerError>, Never>) { self.continuation = continuation }

        var isFinished: Bool { finished.withLock { $0 } }

        func finish(_ result: Result<T, StigmerError>) -> Bool {
            let first = finished.withLock { done in
                defer { done = true }
                return !done
            }
            if first { continuation.resume(returning: result) }
            return first
        }
    }

    static func map(_ error: any Error, _ what: String) -> StigmerError {
        if let e = error as? StigmerError { return e }
        if let e = error as? PSQLError, e.code == .server {
            let state = e.serverInfo?[.sqlState] ?? "?"
            return StigmerError(.unavailable, "PostgreSQL refused the request while \(what)", cause: "SQLSTATE \(state)")
        }
        return StigmerError(.unavailable, "PostgreSQL is unavailable while \(what); check that it is running and reachable", cause: "\(type(of: error))")
    }

    /// Applies pending migrations under an advisory lock, in one transaction.
    public func migrate() async throws(StigmerError) {
        let logger = self.logger
        try await db("migrating the schema") { [client] in
            try await client.withTransaction(logger: logger) { conn in
                try await conn.query("SELECT pg_advisory_xact_lock(727100101)", logger: logger)
                try await conn.query("CREATE TABLE IF NOT EXISTS stigmer_schema_migrations (version INTEGER PRIMARY KEY)", logger: logger)
                var current = 0
                for try await (v) in try await conn.query("SELECT COALESCE(MAX(version), 0) FROM stigmer_schema_migrations", logger: logger).decode(Int.self) {
                    current = v
                }
                for index in current..<Self.migrations.count {
                    for statement in Self.migrations[index] {
                        try await conn.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                    }
                    let version = index + 1
                    try await conn.query("INSERT INTO stigmer_schema_migrations (version) VALUES (\(version))", logger: logger)
                }
            }
        }
    }

    // MARK: resources

    public func apply(_ resources: [Resource]) async throws(StigmerError) {
        try StoreRules.check(resources)
        let logger = self.logger
        let now = Sys.now()
        try await db("applying resources") { [client] in
            try await client.withTransaction(logger: logger) { conn in
                for resource in resources { try await Self.write(resource, now: now, conn, logger) }
            }
        }
    }

    static func columns(_ content: ValueContent?) -> (String?, Bool) {
        switch content {
        case .plain(let s): (s, false)
        case .sealed(let s): (s, true)
        case nil: (nil, false)
        }
    }

    static func content(_ text: String?, sealed: Bool) -> ValueContent? {
        guard let text else { return nil }
        return sealed ? .sealed(text) : .plain(text)
    }

    func values(kind: String, owner: String) async throws(StigmerError) -> Variables<EnvironmentValue>? {
        let logger = self.logger
        let rows: [(String, String?, Bool, Bool, String?)]? = try await db("reading \(kind)/\(owner)") { [client] in
            var exists = false
            for try await _ in try await client.query("SELECT 1 FROM resources WHERE kind = \(kind) AND name = \(owner)", logger: logger).decode(Int.self) {
                exists = true
            }
            guard exists else { return nil }
            var out: [(String, String?, Bool, Bool, String?)] = []
            let query: PostgresQuery = "SELECT name, value, sealed, is_secret, description FROM resource_values WHERE kind = \(kind) AND owner = \(owner) ORDER BY position"
            for try await row in try await client.query(query, logger: logger).decode((String, String?, Bool, Bool, String?).self) {
                out.append(row)
            }
            return out
        }
        guard let rows else { return nil }
        var data = Variables<EnvironmentValue>()
        for (name, value, sealed, secret, summary) in rows {
            data[name] = EnvironmentValue(content: Self.content(value, sealed: sealed), isSecret: secret, summary: summary)
        }
        return data
    }

    func row(_ kind: String, _ name: String) async throws(StigmerError) -> (String?, String?, String?, String?)? {
        let logger = self.logger
        return try await db("reading \(kind)/\(name)") { [client] in
            for try await row in try await client.query(
                "SELECT description, agent, environment_refs, tag FROM resources WHERE kind = \(kind) AND name = \(name)",
                logger: logger).decode((String?, String?, String?, String?).self) {
                return row
            }
            return nil
        }
    }

    public func environment(_ name: String) async throws(StigmerError) -> Environment? {
        guard let row = try await row("Environment", name), let data = try await values(kind: "Environment", owner: name) else { return nil }
        return Environment(name: name, spec: EnvironmentSpec(summary: row.0, data: data), tag: row.3)
    }

    public func environments() async throws(StigmerError) -> [Environment] {
        let logger = self.logger
        let names: [String] = try await db("listing environments") { [client] in
            var out: [String] = []
            for try await (name) in try await client.query("SELECT name FROM resources WHERE kind = 'Environment' ORDER BY name", logger: logger).decode(String.self) {
                out.append(name)
            }
            return out
        }
        var out: [Environment] = []
        for name in names { if let e = try await environment(name) { out.append(e) } }
        return out
    }

    public func deleteEnvironment(_ name: String) async throws(StigmerError) -> Bool {
        let logger = self.logger
        return try await db("deleting Environment/\(name)") { [client] in
            try await client.withTransaction(logger: logger) { conn in
                var deleted = false
                for try await _ in try await conn.query("DELETE FROM resources WHERE kind = 'Environment' AND name = \(name) RETURNING 1", logger: logger).decode(Int.self) {
                    deleted = true
                }
                try await conn.query("DELETE FROM resource_values WHERE kind = 'Environment' AND owner = \(name)", logger: logger)
                return deleted
            }
        }
    }

    public func agent(_ name: String) async throws(StigmerError) -> Agent? {
        for kind in ["Agent", "McpServer"] {
            if let row = try await row(kind, name), let data = try await values(kind: kind, owner: name) {
                return Agent(name: name, summary: row.0, envSpec: EnvironmentSpec(data: data), tag: row.3)
            }
        }
        return nil
    }

    public func instance(_ name: String) async throws(StigmerError) -> AgentInstance? {
        guard let row = try await row("AgentInstance", name) else { return nil }
        return AgentInstance(name: name, agentID: row.1 ?? "", environmentRefs: (row.2 ?? "").split(separator: "\n").map(String.init),
                             tag: row.3)
    }

    // MARK: contexts

    public func createContext(_ context: ExecutionContext, replace: Bool) async throws(StigmerError) {
        try StoreRules.checkSealed(context.data, owner: "context \(context.executionID)")
        let logger = self.logger
        let id = context.executionID
        let created: Bool = try await db("creating context \(id)") { [client] in
            try await client.withTransaction(logger: logger) { conn in
                if replace {
                    try await conn.query("DELETE FROM contexts WHERE execution_id = \(id)", logger: logger)
                }
                // ON CONFLICT DO NOTHING: of two servers creating the same id at once,
                // exactly one wins and the other reports the conflict.
                var inserted = false
                for try await _ in try await conn.query("""
                    INSERT INTO contexts (execution_id, created_at, expires_at, token_hash, tag)
                    VALUES (\(id), \(context.createdAt), \(context.expiresAt), \(context.tokenHash), \(context.tag))
                    ON CONFLICT (execution_id) DO NOTHING RETURNING 1
                    """, logger: logger).decode(Int.self) {
                    inserted = true
                }
                guard inserted else { return false }
                try await Self.insertValues(context, conn, logger)
                return true
            }
        }
        if !created { throw StoreRules.conflict(id) }
    }

    public func executionID(forTokenHash hash: String) async throws(StigmerError) -> String? {
        let logger = self.logger
        return try await db("looking up an execution token") { [client] () async throws -> String? in
            var found: String?
            for try await row in try await client.query("SELECT execution_id FROM contexts WHERE token_hash = \(hash)",
                                                        logger: logger).decode(String.self) {
                found = row
            }
            return found
        }
    }

    public func context(_ executionID: String) async throws(StigmerError) -> ExecutionContext? {
        let logger = self.logger
        let found: ((Int64, Int64, String?, String?), [(String, String, Bool, Bool, String)])? = try await db("reading context \(executionID)") { [client] in
            // One transaction: a concurrent replace is never seen half-done.
            try await client.withTransaction(logger: logger) { conn in
                var times: (Int64, Int64, String?, String?)?
                for try await row in try await conn.query(
                    "SELECT created_at, expires_at, token_hash, tag FROM contexts WHERE execution_id = \(executionID)",
                    logger: logger).decode((Int64, Int64, String?, String?).self) {
                    times = row
                }
                guard let times else { return nil }
                var rows: [(String, String, Bool, Bool, String)] = []
                for try await row in try await conn.query(
                    "SELECT name, value, sealed, is_secret, layer FROM context_values WHERE execution_id = \(executionID) ORDER BY position",
                    logger: logger).decode((String, String, Bool, Bool, String).self) {
                    rows.append(row)
                }
                return (times, rows)
            }
        }
        guard let (times, rows) = found else { return nil }
        var data = Variables<ExecutionValue>()
        for (name, value, sealed, secret, layerText) in rows {
            guard let layer = Layer(layerText) else {
                throw StigmerError(.notPermitted, "context \(quoted(executionID)) has a damaged row for \(name); refusing to use it")
            }
            data[name] = ExecutionValue(content: sealed ? .sealed(value) : .plain(value), isSecret: secret, layer: layer)
        }
        return ExecutionContext(executionID: executionID, data: data, createdAt: times.0, expiresAt: times.1, tokenHash: times.2, tag: times.3)
    }

    public func deleteContext(_ executionID: String) async throws(StigmerError) -> Bool {
        let logger = self.logger
        return try await db("deleting context \(executionID)") { [client] in
            var deleted = false
            for try await _ in try await client.query("DELETE FROM contexts WHERE execution_id = \(executionID) RETURNING 1", logger: logger).decode(Int.self) {
                deleted = true
            }
            return deleted
        }
    }

    public func deleteExpired(now: Int64) async throws(StigmerError) -> Int {
        let logger = self.logger
        // Safe in several servers at once: each row is deleted by exactly one of them.
        return try await db("sweeping expired contexts") { [client] in
            var count = 0
            for try await _ in try await client.query("DELETE FROM contexts WHERE expires_at <= \(now) RETURNING 1", logger: logger).decode(Int.self) {
                count += 1
            }
            return count
        }
    }
}

