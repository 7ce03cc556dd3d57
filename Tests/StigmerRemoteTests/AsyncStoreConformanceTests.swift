#if canImport(Glibc)
import Glibc
#endif
import Logging
import PostgresNIO
import Testing
import StigmerCore
import StigmerStore
@testable import StigmerRemote

/// The store conformance suite for every store the service can use: the in-memory and
/// SQLite stores (behind `LockedStore`) and PostgreSQL — a real server, which `make test`
/// starts and names in STIGMER_TEST_POSTGRES_URL (each test gets a database of its own).
enum AsyncStoreKind: String, CaseIterable, CustomStringConvertible {
    case memory, sqlite, sqliteReaders, postgres
    var description: String { rawValue }

    static var postgresURL: String? { getenv("STIGMER_TEST_POSTGRES_URL").map { String(cString: $0) } }

    /// Runs `body` against a fresh store of this kind.
    func with(_ body: @escaping @Sendable (any AsyncStore) async throws -> Void) async throws {
        switch self {
        case .memory:
            try await body(LockedStore(InMemoryStore()))
        case .sqlite, .sqliteReaders:
            var template = Array("/tmp/stigmer-async-XXXXXX".utf8CString)
            let dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
            let writer = try SQLiteStore.open(path: dir + "/stigmer.db", create: true)!
            // The server's shape: reads on read-only connections beside the writer.
            let readers: [any Store] = self == .sqlite ? [] : try (0..<3).map { _ in
                try SQLiteStore.open(path: dir + "/stigmer.db", create: false, readOnly: true)!
            }
            try await body(LockedStore(writer, readers: readers))
        case .postgres:
            guard let base = Self.postgresURL else {
                Issue.record("STIGMER_TEST_POSTGRES_URL is not set: run the suite with `make test`, which starts PostgreSQL")
                return
            }
            let database = "t_\(UInt64.random(in: 0...UInt64.max))"
            let logger = Logger(label: "test")
            try await StoreFactory.with(base, logger: logger) { store in
                let admin = (store as! PostgresStore).client
                try await admin.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(database)"), logger: logger)
            }
            let url = String(base[..<base.lastIndex(of: "/")!]) + "/" + database
            try await StoreFactory.with(url, logger: logger) { store in try await body(store) }
        }
    }
}

func vars(_ entries: [(String, ValueContent?, Bool)]) -> Variables<EnvironmentValue> {
    var data = Variables<EnvironmentValue>()
    for (name, content, secret) in entries { data[name] = EnvironmentValue(content: content, isSecret: secret, summary: "about \(name)") }
    return data
}

@Suite("Async store conformance", .serialized)
struct AsyncStoreConformanceTests {
    static let env = Environment(name: "prod", spec: EnvironmentSpec(summary: "Production", data: vars([
        ("B", .plain("b"), false), ("A", .sealed("v1:k:AAAA"), true)])))
    static let agent = Agent(name: "agent", summary: "An agent", envSpec: EnvironmentSpec(data: vars([
        ("LOG", .plain("info"), false), ("TOKEN", nil, true)])))
    static let instance = AgentInstance(name: "inst", agentID: "agent", environmentRefs: ["base", "prod"])

    /// `token`: the token key hash (default: one of its own per id; nil: none).
    static func context(_ id: String, expires: Int64 = 2_000_000_000, token: String?? = .none) -> ExecutionContext {
        var data = Variables<ExecutionValue>()
        data["Z"] = ExecutionValue(content: .plain("z"), isSecret: false, layer: .template)
        data["T"] = ExecutionValue(content: .sealed("v1:k:BBBB"), isSecret: true, layer: .environment("prod"))
        data["R"] = ExecutionValue(content: .plain(""), isSecret: false, layer: .runtime)
        return ExecutionContext(executionID: id, data: data, createdAt: 1_000, expiresAt: expires, tokenHash: token ?? "hash-\(id)",
                                tag: "m1:k:tag-\(id)")
    }

    @Test(arguments: AsyncStoreKind.allCases)
    func resourcesRoundTripAndReplace(kind: AsyncStoreKind) async throws {
        try await kind.with { store in
            try await store.apply([.environment(Self.env), .agent(Self.agent), .agentInstance(Self.instance)])
            try await store.apply([.environment(Self.env)])
            #expect(try await store.environment("prod") == Self.env)
            #expect(try await store.environment("prod")?.spec.data.names == ["B", "A"])
            #expect(try await store.agent("agent") == Self.agent)
            #expect(try await store.instance("inst") == Self.instance)
            #expect(try await store.environment("nope") == nil)
            let smaller = Environment(name: "prod", spec: EnvironmentSpec(data: vars([("C", .plain("c"), false)])))
            try await store.apply([.environment(smaller)])
            #expect(try await store.environments() == [smaller])
            #expect(try await store.deleteEnvironment("prod"))
            #expect(try await !store.deleteEnvironment("prod"))
        }
    }

    @Test(arguments: AsyncStoreKind.allCases)
    func plaintextSecretsRefusedAllOrNothing(kind: AsyncStoreKind) async throws {
        try await kind.with { store in
            let leaky = Environment(name: "leaky", spec: EnvironmentSpec(data: vars([("S", .plain("oops"), true)])))
            do {
                try await store.apply([.environment(Self.env), .environment(leaky)])
                Issue.record("a plaintext secret was stored")
            } catch {}
            let environments = try await store.environments()
            #expect(environments.isEmpty)
        }
    }

    @Test(arguments: AsyncStoreKind.allCases)
    func contextsLifecycle(kind: AsyncStoreKind) async throws {
        try await kind.with { store in
            try await store.createContext(Self.context("run-1"), replace: false)
            #expect(try await store.context("run-1") == Self.context("run-1"))
            #expect(try await store.context("run-1")?.data.names == ["Z", "T", "R"])
            // By the token's key hash, an index, before anything else of a context.
            #expect(try await store.executionID(forTokenHash: "hash-run-1") == "run-1")
            #expect(try await store.executionID(forTokenHash: "hash-nope") == nil)
            do {
                try await store.createContext(Self.context("run-1"), replace: false)
                Issue.record("duplicate accepted")
            } catch let error as StigmerError {
                #expect(error.code == .conflict)
            }
            var replacement = Self.context("run-1", token: .some(nil))
            replacement.data = Variables()
            replacement.data["ONLY"] = ExecutionValue(content: .plain("1"), isSecret: false, layer: .runtime)
            try await store.createContext(replacement, replace: true)
            #expect(try await store.context("run-1") == replacement)
            #expect(try await store.executionID(forTokenHash: "hash-run-1") == nil)
            #expect(try await store.deleteContext("run-1"))
            #expect(try await !store.deleteContext("run-1"))
            #expect(try await store.context("run-1") == nil)
        }
    }

    @Test(arguments: AsyncStoreKind.allCases)
    func sweepRemovesOnlyExpired(kind: AsyncStoreKind) async throws {
        try await kind.with { store in
            try await store.createContext(Self.context("old", expires: 100), replace: false)
            try await store.createContext(Self.context("edge", expires: 200), replace: false)
            try await store.createContext(Self.context("new", expires: 300), replace: false)
            #expect(try await store.deleteExpired(now: 200) == 2)
            #expect(try await store.context("old") == nil)
            #expect(try await store.context("new") != nil)
            #expect(try await store.deleteExpired(now: 200) == 0)
        }
    }

    /// Many creators racing on the same ids: each id is created exactly once.
    @Test(arguments: AsyncStoreKind.allCases)
    func concurrentCreatesNeverDuplicate(kind: AsyncStoreKind) async throws {
        try await kind.with { store in
            let outcomes = try await withThrowingTaskGroup(of: Bool.self) { group in
                for i in 0..<40 {
                    group.addTask {
                        do {
                            try await store.createContext(Self.context("race-\(i % 10)"), replace: false)
                            return true
                        } catch let e as StigmerError where e.code == .conflict {
                            return false
                        }
                    }
                }
                var wins = 0
                for try await won in group where won { wins += 1 }
                return wins
            }
            #expect(outcomes == 10)
        }
    }

    /// Reads in parallel with writes: every read sees a whole context or none (WAL).
    @Test(arguments: AsyncStoreKind.allCases)
    func readsDuringWritesSeeWholeContexts(kind: AsyncStoreKind) async throws {
        try await kind.with { store in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for i in 0..<30 { try await store.createContext(Self.context("rw-\(i % 3)"), replace: true) }
                }
                for _ in 0..<4 {
                    group.addTask {
                        for i in 0..<60 {
                            if let read = try await store.context("rw-\(i % 3)") {
                                #expect(read.data.names == ["Z", "T", "R"])
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
    }

}

extension AsyncStoreConformanceTests {
    /// `key rotate` on every async store (PostgreSQL's own transaction, and the locked
    /// SQLite store): all or nothing, expired contexts swept.
    @Test(arguments: AsyncStoreKind.allCases)
    func rekeyRewritesEverythingOrNothing(kind: AsyncStoreKind) async throws {
        try await kind.with { store in
            try await store.apply([.environment(Self.env), .agentInstance(Self.instance)])
            try await store.createContext(Self.context("live"), replace: false)
            try await store.createContext(Self.context("gone", expires: 100), replace: false)
            #expect(try await store.keyUsage().places["k"]?.count == 3)
            let failing = Rekeying(resource: { $0 }, context: { (_) throws(StigmerError) in throw StigmerError(.notPermitted, "tampered") })
            await #expect(throws: StigmerError.self) { try await store.rekey(now: 200, failing) }
            #expect(try await store.context("gone") != nil)
            let retag = Rekeying(resource: { $0 }, context: { c in var c = c; c.data["T"]?.content = .sealed("v1:n:DDDD"); c.tag = "m1:n:y"; return c })
            let report = try await store.rekey(now: 200, retag)
            #expect(report.expiredSwept == 1 && report.contexts == 1 && report.resources == 2)
            #expect(try await store.context("live")?.data["T"]?.content == .sealed("v1:n:DDDD"))
            #expect(try await store.context("live")?.data.names == ["Z", "T", "R"])
            #expect(try await store.context("gone") == nil)
            let usage = try await store.keyUsage()
            #expect(usage.places["n"] == ["context \"live\""] && usage.places["k"] == ["Environment/prod"])
        }
    }
}
