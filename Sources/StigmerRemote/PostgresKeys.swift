import Logging
import PostgresNIO
import StigmerCore
import StigmerStore

/// `key rotate` and `key retire` on PostgreSQL: the whole store read in one transaction,
/// and for a rotation rewritten in the same one, with writers locked out meanwhile
/// (servers keep reading; a context created during it waits, then lands under the lock's
/// release).
extension PostgresStore {
    /// A rotation reads and rewrites every row: it may take longer than one request.
    static let rekeyDeadline: Duration = .seconds(600)

    public func rekey(now: Int64, _ rekeying: Rekeying) async throws(StigmerError) -> RekeyReport {
        let logger = self.logger
        return try await db("re-sealing the store", deadline: Self.rekeyDeadline) { [client] in
            try await client.withTransaction(logger: logger) { conn in
                // SHARE ROW EXCLUSIVE: readers go on, every other writer waits for the commit.
                try await conn.query("LOCK TABLE resources, resource_values, contexts, context_values IN SHARE ROW EXCLUSIVE MODE", logger: logger)
                var report = RekeyReport()
                for try await _ in try await conn.query("DELETE FROM contexts WHERE expires_at <= \(now) RETURNING 1", logger: logger).decode(Int.self) {
                    report.expiredSwept += 1
                }
                let (resources, contexts) = try await Self.everything(conn, logger)
                for resource in resources {
                    try await Self.write(try rekeying.resource(resource), now: now, conn, logger)
                    report.resources += 1
                }
                for context in contexts {
                    let rekeyed = try rekeying.context(context)
                    try await conn.query("DELETE FROM contexts WHERE execution_id = \(context.executionID)", logger: logger)
                    try await Self.insert(rekeyed, conn, logger)
                    report.contexts += 1
                }
                return report
            }
        }
    }

    public func keyUsage() async throws(StigmerError) -> KeyUsage {
        let logger = self.logger
        return try await db("reading the store's keys", deadline: Self.rekeyDeadline) { [client] in
            try await client.withTransaction(logger: logger) { conn in
                var usage = KeyUsage()
                let (resources, contexts) = try await Self.everything(conn, logger)
                for resource in resources { usage.note(resource) }
                for context in contexts { usage.note(context) }
                return usage
            }
        }
    }

    /// Every resource and context, as stored, from one snapshot (`conn`'s transaction).
    static func everything(_ conn: PostgresConnection, _ logger: Logger) async throws -> ([Resource], [ExecutionContext]) {
        var values: [String: Variables<EnvironmentValue>] = [:]
        for try await (kind, owner, name, value, sealed, secret, summary) in try await conn.query(
            "SELECT kind, owner, name, value, sealed, is_secret, description FROM resource_values ORDER BY kind, owner, position",
            logger: logger).decode((String, String, String, String?, Bool, Bool, String?).self) {
            values[kind + "\u{0}" + owner, default: Variables()][name] =
                EnvironmentValue(content: content(value, sealed: sealed), isSecret: secret, summary: summary)
        }
        var resources: [Resource] = []
        for try await (kind, name, summary, agent, refs, tag) in try await conn.query(
            "SELECT kind, name, description, agent, environment_refs, tag FROM resources ORDER BY kind, name",
            logger: logger).decode((String, String, String?, String?, String?, String?).self) {
            let data = values[kind + "\u{0}" + name] ?? Variables()
            switch kind {
            case "Environment": resources.append(.environment(Environment(name: name, spec: EnvironmentSpec(summary: summary, data: data), tag: tag)))
            case "Agent": resources.append(.agent(Agent(name: name, summary: summary, envSpec: EnvironmentSpec(data: data), tag: tag)))
            case "McpServer": resources.append(.mcpServer(Agent(name: name, summary: summary, envSpec: EnvironmentSpec(data: data), tag: tag)))
            case "AgentInstance":
                resources.append(.agentInstance(AgentInstance(name: name, agentID: agent ?? "",
                                                              environmentRefs: (refs ?? "").split(separator: "\n").map(String.init), tag: tag)))
            default:
                throw StigmerError(.unavailable, "the PostgreSQL store holds a resource of unknown kind \(quoted(kind)); it was written by something other than this stigmer-exec")
            }
        }
        var entries: [String: Variables<ExecutionValue>] = [:]
        for try await (id, name, value, sealed, secret, layerText) in try await conn.query(
            "SELECT execution_id, name, value, sealed, is_secret, layer FROM context_values ORDER BY execution_id, position",
            logger: logger).decode((String, String, String, Bool, Bool, String).self) {
            guard let layer = Layer(layerText) else {
                throw StigmerError(.notPermitted, "context \(quoted(id)) has a damaged row for \(name); refusing to use it")
            }
            entries[id, default: Variables()][name] = ExecutionValue(content: sealed ? .sealed(value) : .plain(value), isSecret: secret, layer: layer)
        }
        var contexts: [ExecutionContext] = []
        for try await (id, created, expires, tokenHash, tag) in try await conn.query(
            "SELECT execution_id, created_at, expires_at, token_hash, tag FROM contexts ORDER BY execution_id",
            logger: logger).decode((String, Int64, Int64, String?, String?).self) {
            contexts.append(ExecutionContext(executionID: id, data: entries[id] ?? Variables(), createdAt: created, expiresAt: expires,
                                             tokenHash: tokenHash, tag: tag))
        }
        return (resources, contexts)
    }

    /// Replaces one resource's rows (inside `conn`'s transaction).
    static func write(_ resource: Resource, now: Int64, _ conn: PostgresConnection, _ logger: Logger) async throws {
        let kind = resource.kind, name = resource.name
        try await conn.query("DELETE FROM resources WHERE kind = \(kind) AND name = \(name)", logger: logger)
        try await conn.query("DELETE FROM resource_values WHERE kind = \(kind) AND owner = \(name)", logger: logger)
        let c = ResourceColumns(resource)
        let description = c.description, agent = c.agent, refs = c.environmentRefs, tag = c.tag
        try await conn.query("""
            INSERT INTO resources (kind, name, description, agent, environment_refs, updated_at, tag)
            VALUES (\(kind), \(name), \(description), \(agent), \(refs), \(now), \(tag))
            """, logger: logger)
        for (position, (variable, value)) in c.data.entries.enumerated() {
            let (text, sealed) = columns(value.content)
            let secret = value.isSecret, summary = value.summary
            try await conn.query("""
                INSERT INTO resource_values (kind, owner, name, position, value, sealed, is_secret, description)
                VALUES (\(kind), \(name), \(variable), \(position), \(text), \(sealed), \(secret), \(summary))
                """, logger: logger)
        }
    }

    /// A context's rows (inside `conn`'s transaction, with none there for its id).
    static func insert(_ context: ExecutionContext, _ conn: PostgresConnection, _ logger: Logger) async throws {
        let id = context.executionID
        try await conn.query("""
            INSERT INTO contexts (execution_id, created_at, expires_at, token_hash, tag)
            VALUES (\(id), \(context.createdAt), \(context.expiresAt), \(context.tokenHash), \(context.tag))
            """, logger: logger)
        try await insertValues(context, conn, logger)
    }

    static func insertValues(_ context: ExecutionContext, _ conn: PostgresConnection, _ logger: Logger) async throws {
        let id = context.executionID
        for (position, (name, value)) in context.data.entries.enumerated() {
            let (text, sealed) = columns(value.content)
            let secret = value.isSecret, layer = value.layer.description
            try await conn.query("""
                INSERT INTO context_values (execution_id, name, position, value, sealed, is_secret, layer)
                VALUES (\(id), \(name), \(position), \(text ?? ""), \(sealed), \(secret), \(layer))
                """, logger: logger)
        }
    }
}
