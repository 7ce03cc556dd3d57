import StigmerCore

/// Named resources to merge from: a store, or the manifests given to `plan -f`.
public protocol ResourceLookup {
    func environment(_ name: String) throws(StigmerError) -> Environment?
    /// An Agent (or McpServer) by name; an AgentInstance's agent_id may name either.
    func agent(_ name: String) throws(StigmerError) -> Agent?
    func instance(_ name: String) throws(StigmerError) -> AgentInstance?
    /// How to make a missing resource exist, for error messages.
    var missingHint: String { get }
}

extension ResourceLookup {
    public var missingHint: String { "apply its manifest with `stigmer-exec apply -f`" }
}

/// Where resources and execution contexts live. Implementations: `InMemoryStore` (tests,
/// ephemeral use) and `SQLiteStore` (the embedded default); both pass one conformance
/// suite. Secret values are stored sealed — a store refuses a plaintext secret outright.
public protocol Store: AnyObject, ResourceLookup {
    /// Stores every resource, replacing any of the same kind and name: all or nothing.
    func apply(_ resources: [Resource]) throws(StigmerError)

    func environments() throws(StigmerError) -> [Environment]
    /// false when there was none.
    func deleteEnvironment(_ name: String) throws(StigmerError) -> Bool

    /// Fails with `StoreConflict` when the id exists and `replace` is false.
    func createContext(_ context: ExecutionContext, replace: Bool) throws(StigmerError)
    /// The stored context, expired or not (the caller decides).
    func context(_ executionID: String) throws(StigmerError) -> ExecutionContext?
    func deleteContext(_ executionID: String) throws(StigmerError) -> Bool
    /// Deletes contexts whose expiry is at or before `now`; returns how many.
    func deleteExpired(now: Int64) throws(StigmerError) -> Int
}

public enum StoreRules {
    /// Only ciphertext may be stored for a secret (DESIGN.md §7).
    public static func checkSealed(_ data: Variables<EnvironmentValue>, owner: String) throws(StigmerError) {
        for (name, value) in data.entries where value.isSecret {
            if case .plain = value.content {
                throw StigmerError(.internalError, "refusing to store \(name) of \(owner) unsealed")
            }
        }
    }

    public static func checkSealed(_ data: Variables<ExecutionValue>, owner: String) throws(StigmerError) {
        for (name, value) in data.entries where value.isSecret {
            if case .plain = value.content {
                throw StigmerError(.internalError, "refusing to store \(name) of \(owner) unsealed")
            }
        }
    }

    public static func conflict(_ executionID: String) -> StigmerError {
        StigmerError(.conflict, "context \(quoted(executionID)) already exists; pass --replace to overwrite it, or `stigmer-exec context delete \(executionID)` first")
    }

    public static func check(_ resources: [Resource]) throws(StigmerError) {
        for resource in resources {
            switch resource {
            case .environment(let e): try checkSealed(e.spec.data, owner: "\(resource)")
            case .agent(let a), .mcpServer(let a): try checkSealed(a.envSpec.data, owner: "\(resource)")
            case .agentInstance: break
            }
        }
    }
}

/// A store in memory: tests, and a reference for the semantics.
public final class InMemoryStore: Store {
    var resources: [String: Resource] = [:]
    var contexts: [String: ExecutionContext] = [:]

    public init() {}

    static func key(_ kind: String, _ name: String) -> String { "\(kind)/\(name)" }

    public func apply(_ resources: [Resource]) throws(StigmerError) {
        try StoreRules.check(resources)
        for r in resources { self.resources[Self.key(r.kind, r.name)] = r }
    }

    public func environment(_ name: String) throws(StigmerError) -> Environment? {
        if case .environment(let e) = resources[Self.key("Environment", name)] { return e }
        return nil
    }

    public func environments() throws(StigmerError) -> [Environment] {
        resources.values.compactMap { if case .environment(let e) = $0 { e } else { nil } }.sorted { $0.name < $1.name }
    }

    public func deleteEnvironment(_ name: String) throws(StigmerError) -> Bool {
        resources.removeValue(forKey: Self.key("Environment", name)) != nil
    }

    public func agent(_ name: String) throws(StigmerError) -> Agent? {
        if case .agent(let a) = resources[Self.key("Agent", name)] { return a }
        if case .mcpServer(let a) = resources[Self.key("McpServer", name)] { return a }
        return nil
    }

    public func instance(_ name: String) throws(StigmerError) -> AgentInstance? {
        if case .agentInstance(let i) = resources[Self.key("AgentInstance", name)] { return i }
        return nil
    }

    public func createContext(_ context: ExecutionContext, replace: Bool) throws(StigmerError) {
        try StoreRules.checkSealed(context.data, owner: "context \(context.executionID)")
        if !replace && contexts[context.executionID] != nil { throw StoreRules.conflict(context.executionID) }
        contexts[context.executionID] = context
    }

    public func context(_ executionID: String) throws(StigmerError) -> ExecutionContext? { contexts[executionID] }

    public func deleteContext(_ executionID: String) throws(StigmerError) -> Bool {
        contexts.removeValue(forKey: executionID) != nil
    }

    public func deleteExpired(now: Int64) throws(StigmerError) -> Int {
        let expired = contexts.values.filter { $0.expiresAt <= now }.map(\.executionID)
        for id in expired { contexts.removeValue(forKey: id) }
        return expired.count
    }
}
