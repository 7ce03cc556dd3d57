import Synchronization
import StigmerCore
import StigmerStore

/// The store as the service sees it: async, shareable across tasks. `PostgresStore`
/// implements it natively; `LockedStore` adapts a synchronous store (SQLite, in-memory)
/// by serialising calls. One conformance suite runs against all of them.
public protocol AsyncStore: Sendable {
    func apply(_ resources: [Resource]) async throws(StigmerError)
    func environment(_ name: String) async throws(StigmerError) -> Environment?
    func environments() async throws(StigmerError) -> [Environment]
    func deleteEnvironment(_ name: String) async throws(StigmerError) -> Bool
    func agent(_ name: String) async throws(StigmerError) -> Agent?
    func instance(_ name: String) async throws(StigmerError) -> AgentInstance?
    func createContext(_ context: ExecutionContext, replace: Bool) async throws(StigmerError)
    func context(_ executionID: String) async throws(StigmerError) -> ExecutionContext?
    /// The execution whose token key hashes to `hash`, by an index (see `Store`).
    func executionID(forTokenHash hash: String) async throws(StigmerError) -> String?
    func deleteContext(_ executionID: String) async throws(StigmerError) -> Bool
    func deleteExpired(now: Int64) async throws(StigmerError) -> Int
    /// `key rotate` and `key retire` (see `Store`).
    func rekey(now: Int64, _ rekeying: Rekeying) async throws(StigmerError) -> RekeyReport
    func keyUsage() async throws(StigmerError) -> KeyUsage
}

/// A synchronous store behind a lock. SQLite calls are short (under a millisecond), so
/// holding a cooperative thread for one is cheaper than hopping to another thread. With
/// `readers` (read-only connections to the same SQLite file: WAL lets them read while the
/// writer writes), reads take the first idle reader instead of queueing behind writes and
/// each other; every read is one transaction, so it sees a whole write or none of it.
public final class LockedStore: AsyncStore, @unchecked Sendable {
    let lock = Mutex(())
    let store: any Store
    let readers: [Reader]
    let next = Atomic<Int>(0)

    final class Reader: @unchecked Sendable {
        let lock = Mutex(())
        let store: any Store
        init(_ store: any Store) { self.store = store }
    }

    public init(_ store: any Store, readers: [any Store] = []) {
        self.store = store
        self.readers = readers.map(Reader.init)
    }

    func locked<T>(_ body: () throws(StigmerError) -> T) throws(StigmerError) -> T {
        let result: Result<T, StigmerError> = lock.withLock { _ in
            do throws(StigmerError) { return .success(try body()) } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// A write: off the server's event loops, onto Swift's global pool. It may wait for the
    /// writer's lock and for fsync (a millisecond or more), and a loop thread blocked that
    /// long would stall every connection it serves. Reads stay where they are: each has a
    /// reader of its own and never waits on the disk's cache flush.
    func writing<T>(_ body: () throws(StigmerError) -> T) async throws(StigmerError) -> T {
        let result: Result<T, StigmerError> = await withTaskExecutorPreference(globalConcurrentExecutor) {
            do throws(StigmerError) { return .success(try locked(body)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// `body` on an idle reader (the writer when there are none; a busy one, in turn, when
    /// all are busy).
    func reading<T>(_ body: (any Store) throws(StigmerError) -> T) throws(StigmerError) -> T {
        guard !readers.isEmpty else { return try locked { () throws(StigmerError) -> T in try body(store) } }
        return try withoutActuallyEscaping(body) { (body) throws(StigmerError) -> T in
            let run = { (store: any Store) -> Result<T, StigmerError> in
                do throws(StigmerError) { return .success(try body(store)) } catch { return .failure(error) }
            }
            let start = next.wrappingAdd(1, ordering: .relaxed).oldValue
            for k in 0..<readers.count {
                let reader = readers[(start + k) % readers.count]
                if let result = reader.lock.withLockIfAvailable({ _ in run(reader.store) }) { return try result.get() }
            }
            let reader = readers[start % readers.count]
            return try reader.lock.withLock { _ in run(reader.store) }.get()
        }
    }

    public func apply(_ resources: [Resource]) async throws(StigmerError) { try await writing { () throws(StigmerError) in try store.apply(resources) } }
    public func environment(_ name: String) async throws(StigmerError) -> Environment? { try reading { (s) throws(StigmerError) in try s.environment(name) } }
    public func environments() async throws(StigmerError) -> [Environment] { try reading { (s) throws(StigmerError) in try s.environments() } }
    public func deleteEnvironment(_ name: String) async throws(StigmerError) -> Bool { try await writing { () throws(StigmerError) in try store.deleteEnvironment(name) } }
    public func agent(_ name: String) async throws(StigmerError) -> Agent? { try reading { (s) throws(StigmerError) in try s.agent(name) } }
    public func instance(_ name: String) async throws(StigmerError) -> AgentInstance? { try reading { (s) throws(StigmerError) in try s.instance(name) } }
    public func createContext(_ context: ExecutionContext, replace: Bool) async throws(StigmerError) {
        try await writing { () throws(StigmerError) in try store.createContext(context, replace: replace) }
    }
    public func context(_ executionID: String) async throws(StigmerError) -> ExecutionContext? { try reading { (s) throws(StigmerError) in try s.context(executionID) } }
    public func executionID(forTokenHash hash: String) async throws(StigmerError) -> String? {
        try reading { (s) throws(StigmerError) -> String? in try s.executionID(forTokenHash: hash) }
    }
    public func deleteContext(_ executionID: String) async throws(StigmerError) -> Bool { try await writing { () throws(StigmerError) in try store.deleteContext(executionID) } }
    public func deleteExpired(now: Int64) async throws(StigmerError) -> Int { try await writing { () throws(StigmerError) in try store.deleteExpired(now: now) } }
    public func rekey(now: Int64, _ rekeying: Rekeying) async throws(StigmerError) -> RekeyReport {
        try await writing { () throws(StigmerError) in try store.rekey(now: now, rekeying) }
    }
    public func keyUsage() async throws(StigmerError) -> KeyUsage { try await writing { () throws(StigmerError) in try store.keyUsage() } }
}

extension ResourceCatalog {
    /// The resources one merge needs, read ahead from an async store so the synchronous
    /// merge (`Engine.mergeInput`) runs unchanged in the companion — with the same
    /// validations and messages as the launcher's.
    public static func load(agent: String?, instance: String?, envRefs: [String], from store: any AsyncStore,
                            missingHint: String = "apply its manifest with `stigmer-exec apply -f`") async throws(StigmerError) -> ResourceCatalog {
        var catalog = ResourceCatalog(missingHint: missingHint)
        catalog.fromStore = true
        var agentName = agent
        var refs = envRefs
        if let instance, let found = try await store.instance(instance) {
            catalog.add(.agentInstance(found))
            agentName = agentName ?? found.agentID
            if agentName == found.agentID { refs = found.environmentRefs }
        }
        if let agentName, let found = try await store.agent(agentName) { catalog.add(.agent(found)) }
        for ref in refs { if let found = try await store.environment(ref) { catalog.add(.environment(found)) } }
        return catalog
    }
}
