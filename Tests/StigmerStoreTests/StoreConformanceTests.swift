#if canImport(Glibc)
import Glibc
#endif
import CSQLite
import Testing
import StigmerCore
@testable import StigmerStore

/// One suite, every store: the in-memory reference and SQLite on a temporary file.
enum StoreKind: String, CaseIterable, CustomStringConvertible {
    case memory, sqlite
    var description: String { rawValue }

    func make() throws -> any Store {
        switch self {
        case .memory: return InMemoryStore()
        case .sqlite:
            var template = Array("/tmp/stigmer-store-XXXXXX".utf8CString)
            let dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
            return try SQLiteStore.open(path: dir + "/stigmer.db", create: true)!
        }
    }
}

func variables(_ entries: [(String, ValueContent?, Bool)]) -> Variables<EnvironmentValue> {
    var data = Variables<EnvironmentValue>()
    for (name, content, secret) in entries { data[name] = EnvironmentValue(content: content, isSecret: secret, summary: "about \(name)") }
    return data
}

@Suite("Store conformance")
struct StoreConformanceTests {
    let env = Environment(name: "prod", spec: EnvironmentSpec(summary: "Production", data: variables([
        ("B", .plain("b"), false), ("A", .sealed("v1:k:AAAA"), true)])))
    let agent = Agent(name: "agent", summary: "An agent", envSpec: EnvironmentSpec(data: variables([
        ("LOG", .plain("info"), false), ("TOKEN", nil, true)])))
    let instance = AgentInstance(name: "inst", agentID: "agent", environmentRefs: ["base", "prod"])

    func context(_ id: String, expires: Int64 = 2_000_000_000) -> ExecutionContext {
        var data = Variables<ExecutionValue>()
        data["Z"] = ExecutionValue(content: .plain("z"), isSecret: false, layer: .template)
        data["T"] = ExecutionValue(content: .sealed("v1:k:BBBB"), isSecret: true, layer: .environment("prod"))
        data["R"] = ExecutionValue(content: .plain(""), isSecret: false, layer: .runtime)
        return ExecutionContext(executionID: id, data: data, createdAt: 1_000, expiresAt: expires, tokenHash: "hash-\(id)", tag: "m1:k:\(id)")
    }

    @Test(arguments: StoreKind.allCases)
    func resourcesRoundTripInOrder(kind: StoreKind) throws {
        let store = try kind.make()
        try store.apply([.environment(env), .agent(agent), .agentInstance(instance)])
        #expect(try store.environment("prod") == env)
        #expect(try store.environment("prod")?.spec.data.names == ["B", "A"])
        #expect(try store.agent("agent") == agent)
        #expect(try store.instance("inst") == instance)
        #expect(try store.environment("nope") == nil)
        #expect(try store.agent("nope") == nil)
        #expect(try store.instance("nope") == nil)
    }

    @Test(arguments: StoreKind.allCases)
    func applyIsIdempotentAndReplacesWholly(kind: StoreKind) throws {
        let store = try kind.make()
        try store.apply([.environment(env)])
        try store.apply([.environment(env)])
        #expect(try store.environments() == [env])
        let smaller = Environment(name: "prod", spec: EnvironmentSpec(data: variables([("C", .plain("c"), false)])))
        try store.apply([.environment(smaller)])
        #expect(try store.environment("prod") == smaller)
        let base = Environment(name: "base", spec: EnvironmentSpec())
        try store.apply([.environment(base)])
        #expect(try store.environments().map(\.name) == ["base", "prod"])
        #expect(try store.deleteEnvironment("prod"))
        #expect(try !store.deleteEnvironment("prod"))
        #expect(try store.environments().map(\.name) == ["base"])
    }

    @Test(arguments: StoreKind.allCases)
    func plaintextSecretsAreRefusedAndNothingIsApplied(kind: StoreKind) throws {
        let store = try kind.make()
        let leaky = Environment(name: "leaky", spec: EnvironmentSpec(data: variables([("S", .plain("oops"), true)])))
        #expect(throws: StigmerError.self) { try store.apply([.environment(env), .environment(leaky)]) }
        #expect(try store.environments().isEmpty)
        var ctx = context("x")
        ctx.data["S"] = ExecutionValue(content: .plain("oops"), isSecret: true, layer: .runtime)
        #expect(throws: StigmerError.self) { try store.createContext(ctx, replace: false) }
        #expect(try store.context("x") == nil)
    }

    @Test(arguments: StoreKind.allCases)
    func contextsLifecycle(kind: StoreKind) throws {
        let store = try kind.make()
        try store.createContext(context("run-1"), replace: false)
        #expect(try store.context("run-1") == context("run-1"))
        #expect(try store.context("run-1")?.data.names == ["Z", "T", "R"])
        do {
            try store.createContext(context("run-1"), replace: false)
            Issue.record("duplicate accepted")
        } catch {
            #expect(error.message.contains("already exists"))
        }
        var replacement = context("run-1")
        replacement.data = Variables()
        replacement.data["ONLY"] = ExecutionValue(content: .plain("1"), isSecret: false, layer: .runtime)
        try store.createContext(replacement, replace: true)
        #expect(try store.context("run-1") == replacement)
        #expect(try store.deleteContext("run-1"))
        #expect(try !store.deleteContext("run-1"))
        #expect(try store.context("run-1") == nil)
    }

    @Test(arguments: StoreKind.allCases)
    func sweepRemovesOnlyExpired(kind: StoreKind) throws {
        let store = try kind.make()
        try store.createContext(context("old", expires: 100), replace: false)
        try store.createContext(context("edge", expires: 200), replace: false)
        try store.createContext(context("new", expires: 300), replace: false)
        #expect(try store.deleteExpired(now: 200) == 2)
        #expect(try store.context("old") == nil)
        #expect(try store.context("edge") == nil)
        #expect(try store.context("new") != nil)
        #expect(try store.deleteExpired(now: 200) == 0)
    }
}

@Suite("SQLite specifics")
struct SQLiteStoreTests {
    @Test func fileModeWalAndMigrationsAreIdempotent() throws {
        var template = Array("/tmp/stigmer-store-XXXXXX".utf8CString)
        let dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        let path = dir + "/stigmer.db"
        #expect(try SQLiteStore.open(path: path, create: false) == nil)
        let store = try SQLiteStore.open(path: path, create: true)!
        var st = stat()
        stat(path, &st)
        #expect(st.st_mode & 0o777 == 0o600)
        var mode = ""
        try store.connection.run("PRAGMA journal_mode", [], "test") { row in mode = row.text(0) ?? "" }
        #expect(mode == "wal")
        #expect(try store.userVersion() == SQLiteStore.migrations.count)
        let again = try SQLiteStore.open(path: path, create: false)!
        #expect(try again.userVersion() == SQLiteStore.migrations.count)
    }

    func temporaryDirectory() -> String {
        var template = Array("/tmp/stigmer-store-XXXXXX".utf8CString)
        return template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    /// Created whole: no temporary file left, and the file alone (no WAL) holds the schema.
    @Test func aNewStoreIsCreatedWhole() throws {
        let dir = temporaryDirectory()
        let path = dir + "/stigmer.db"
        // A killed creator's leftovers are started over, not used.
        let stale = open(path + ".new", O_WRONLY | O_CREAT, 0o600)
        _ = write(stale, "junk", 4)
        close(stale)
        _ = try SQLiteStore.open(path: path, create: true)
        #expect(access(path + ".new", F_OK) != 0)
        var st = stat()
        stat(path, &st)
        #expect(st.st_size > 0 && st.st_size % 512 == 0)
    }

    /// Empty or cut-short files were not written by stigmer-exec: 69, said as damage.
    @Test(arguments: [0, 50, 4096 + 100])
    func aTruncatedStoreIsRefused(size: Int) throws {
        let path = temporaryDirectory() + "/stigmer.db"
        _ = try SQLiteStore.open(path: path, create: true)
        #expect(truncate(path, off_t(size)) == 0)
        for create in [false, true] {
            #expect {
                _ = try SQLiteStore.open(path: path, create: create)
            } throws: { error in
                let error = error as? StigmerError
                return error?.code == .unavailable && (error?.message.contains(size == 0 ? "empty" : "damaged") ?? false)
            }
        }
    }

    @Test func aFullDiskIsTold() {
        #expect(SQLiteConnection.outOfSpace(SQLITE_FULL, 0))
        #expect(SQLiteConnection.outOfSpace(SQLITE_IOERR | (3 << 8), EDQUOT))
        #expect(SQLiteConnection.outOfSpace(SQLITE_CANTOPEN, ENOSPC))
        #expect(!SQLiteConnection.outOfSpace(SQLITE_IOERR | (3 << 8), EIO))
        #expect(!SQLiteConnection.outOfSpace(SQLITE_CORRUPT, ENOSPC))
        let error = SQLiteConnection.diskFull("/h/stigmer.db", "applying resources", "database or disk is full")
        #expect(error.exitStatus == 74 && error.message.contains("full") && error.message.contains("/h/stigmer.db"))
    }
}

extension StoreConformanceTests {
    /// `key rotate`'s primitive: every resource and live context through the transform,
    /// expired ones swept, in one transaction; a transform that throws changes nothing.
    @Test(arguments: StoreKind.allCases)
    func rekeyRewritesEverythingOrNothing(kind: StoreKind) throws {
        let store = try kind.make()
        try store.apply([.environment(env), .agent(agent), .agentInstance(instance)])
        try store.createContext(context("live"), replace: false)
        try store.createContext(context("gone", expires: 100), replace: false)
        var usage = try store.keyUsage()
        #expect(usage.places["k"]?.count == 3 && usage.legacy.isEmpty)

        let failing = Rekeying(resource: { $0 }, context: { (_) throws(StigmerError) in throw StigmerError(.notPermitted, "tampered") })
        #expect(throws: StigmerError.self) { try store.rekey(now: 200, failing) }
        #expect(try store.context("gone") != nil && store.environment("prod") == env)

        let retag = Rekeying(
            resource: { resource in
                guard case .environment(var e) = resource else { return resource }
                e.spec.data["A"]?.content = .sealed("v1:n:CCCC")
                e.tag = "m1:n:x"
                return .environment(e)
            },
            context: { c in var c = c; c.data["T"]?.content = .sealed("v1:n:DDDD"); c.tag = "m1:n:y"; return c })
        let report = try store.rekey(now: 200, retag)
        #expect(report.expiredSwept == 1 && report.contexts == 1 && report.resources == 3)
        #expect(try store.context("gone") == nil)
        #expect(try store.context("live")?.data["T"]?.content == .sealed("v1:n:DDDD"))
        #expect(try store.environment("prod")?.spec.data.names == ["B", "A"])
        usage = try store.keyUsage()
        #expect(usage.places["n"]?.count == 2 && usage.places["k"] == nil)
        #expect(!usage.dependsOnOtherThan("n") && usage.dependsOnOtherThan("k"))
    }
}
