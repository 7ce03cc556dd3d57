import StigmerCore

/// Named resources to merge from: a store, or the manifests given to `plan -f`.
public protocol ResourceLookup {
    func environment(_ name: String) throws(StigmerError) -> Environment?
    /// An Agent (or McpServer) by name; an AgentInstance's agent_id may name either.
    func agent(_ name: String) throws(StigmerError) -> Agent?
    func instance(_ name: String) throws(StigmerError) -> AgentInstance?
    /// How to make a missing resource exist, for error messages.
    var missingHint: String { get }
    /// Whether what it returns came from a store, and so carries an integrity tag that
    /// must hold before it is used (manifests given with `-f` carry none).
    var fromStore: Bool { get }
}

extension ResourceLookup {
    public var missingHint: String { "apply its manifest with `stigmer-exec apply -f`" }
}

/// Resources by kind and name: the one in-memory lookup, behind `plan -f` (manifests),
/// the companion (what one merge needs, read ahead from an async store) and
/// `InMemoryStore`. Agents and McpServers share one namespace (an AgentInstance's
/// agent_id may name either).
public struct ResourceCatalog: ResourceLookup, Sendable {
    public var environments: [String: Environment] = [:]
    public var agents: [String: Agent] = [:]
    public var instances: [String: AgentInstance] = [:]
    public var missingHint: String
    public var fromStore = false

    public init(missingHint: String = "apply its manifest with `stigmer-exec apply -f`") {
        self.missingHint = missingHint
    }

    /// From manifests: a name defined twice is an error (65), whichever command reads them.
    public init(manifests resources: [Resource], missingHint: String = "it is not in the given manifests; add its file with -f") throws(StigmerError) {
        self.missingHint = missingHint
        for resource in resources where !add(resource) {
            throw .data("\(resource) is defined more than once in the given manifests; keep one")
        }
    }

    /// Adds or replaces; false when one of the same kind and name was there.
    @discardableResult
    public mutating func add(_ resource: Resource) -> Bool {
        switch resource {
        case .environment(let e): environments.updateValue(e, forKey: e.name) == nil
        case .agent(let a), .mcpServer(let a): agents.updateValue(a, forKey: a.name) == nil
        case .agentInstance(let i): instances.updateValue(i, forKey: i.name) == nil
        }
    }

    public func environment(_ name: String) throws(StigmerError) -> Environment? { environments[name] }
    public func agent(_ name: String) throws(StigmerError) -> Agent? { agents[name] }
    public func instance(_ name: String) throws(StigmerError) -> AgentInstance? { instances[name] }

    /// Every (environment, name) that holds a sealed value: candidates for telling a value
    /// moved between variables apart from a tampered one.
    public var sealedBindings: [(environment: String, name: String)] {
        environments.values.flatMap { env in
            env.spec.data.entries.compactMap { entry -> (String, String)? in
                if case .sealed = entry.value.content { return (env.name, entry.name) }
                return nil
            }
        }
    }
}

/// Where resources and execution contexts live. Implementations: `InMemoryStore` (tests,
/// ephemeral use) and `SQLiteStore` (the embedded default); both pass one conformance
/// suite. Secret values are stored sealed — a store refuses a plaintext secret outright.
extension Store {
    public var fromStore: Bool { true }
}

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
    /// The execution whose token key hashes to `hash`, by an index: the server's
    /// authentication reads this before anything of a context, and its time depends on
    /// neither the execution id asked for nor what any context holds.
    func executionID(forTokenHash hash: String) throws(StigmerError) -> String?
    func deleteContext(_ executionID: String) throws(StigmerError) -> Bool
    /// Deletes contexts whose expiry is at or before `now`; returns how many.
    func deleteExpired(now: Int64) throws(StigmerError) -> Int

    /// `key rotate`: in one transaction, sweeps the contexts expired at `now`, then passes
    /// every resource and every remaining context through `rekeying` and stores what it
    /// returns. All or nothing: a failure anywhere leaves the store as it was.
    func rekey(now: Int64, _ rekeying: Rekeying) throws(StigmerError) -> RekeyReport
    /// Which keys what is stored depends on (`key retire`).
    func keyUsage() throws(StigmerError) -> KeyUsage
}

/// What `key rotate` does to each stored thing: open and re-seal under the newest key,
/// re-tag (StigmerEngine's `Rotation`). The store only reads and writes.
public struct Rekeying: Sendable {
    public let resource: @Sendable (Resource) throws(StigmerError) -> Resource
    public let context: @Sendable (ExecutionContext) throws(StigmerError) -> ExecutionContext

    public init(resource: @escaping @Sendable (Resource) throws(StigmerError) -> Resource,
                context: @escaping @Sendable (ExecutionContext) throws(StigmerError) -> ExecutionContext) {
        self.resource = resource
        self.context = context
    }
}

public struct RekeyReport: Sendable, Equatable {
    public var resources = 0
    public var contexts = 0
    public var expiredSwept = 0
    public init() {}
}

/// What stored values and tags are sealed or made with, by key id. A legacy value
/// (Stigmer's bare base64) names no key: any loaded key might be the one.
public struct KeyUsage: Sendable, Equatable {
    /// Key id → where it is used ("Environment/prod", "context run-42"), each place once.
    public var places: [String: [String]] = [:]
    /// Places holding a legacy value.
    public var legacy: [String] = []

    public init() {}

    public mutating func note(sealed text: String, at place: String) {
        if let id = Self.keyID(sealed: text) { note(id, place) } else { noteOnce(&legacy, place) }
    }

    public mutating func note(tag: String?, at place: String) {
        // m1:<key-id>:<mac>; an untagged or malformed one names no key (it fails its check anyway).
        guard let tag, tag.hasPrefix("m1:") else { return }
        let rest = tag.utf8.dropFirst(3)
        guard let colon = rest.firstIndex(of: UInt8(ascii: ":")) else { return }
        note(String(decoding: rest[..<colon], as: UTF8.self), place)
    }

    mutating func note(_ id: String, _ place: String) { noteOnce(&places[id, default: []], place) }

    func noteOnce(_ list: inout [String], _ place: String) { if list.last != place { list.append(place) } }

    /// The key id of a stored `v1:<key-id>:…` value; nil for the legacy form.
    public static func keyID(sealed text: String) -> String? {
        guard text.hasPrefix("v1:") else { return nil }
        let rest = text.utf8.dropFirst(3)
        guard let colon = rest.firstIndex(of: UInt8(ascii: ":")) else { return nil }
        return String(decoding: rest[..<colon], as: UTF8.self)
    }

    /// Whether anything depends on a key other than `id` (or on no key in particular).
    public func dependsOnOtherThan(_ id: String) -> Bool {
        !legacy.isEmpty || places.keys.contains { $0 != id }
    }

    /// Everything stored, passed through `note` (shared by the stores).
    public mutating func note(_ resource: Resource) {
        let place = "\(resource)"
        switch resource {
        case .environment(let e):
            for (_, value) in e.spec.data.entries { if case .sealed(let text) = value.content { note(sealed: text, at: place) } }
            note(tag: e.tag, at: place)
        case .agent(let a), .mcpServer(let a):
            for (_, value) in a.envSpec.data.entries { if case .sealed(let text) = value.content { note(sealed: text, at: place) } }
            note(tag: a.tag, at: place)
        case .agentInstance(let i): note(tag: i.tag, at: place)
        }
    }

    public mutating func note(_ context: ExecutionContext) {
        let place = "context \(quoted(context.executionID))"
        for (_, value) in context.data.entries { if case .sealed(let text) = value.content { note(sealed: text, at: place) } }
        note(tag: context.tag, at: place)
    }
}

/// What a store keeps of a resource, column by column: both stores write these.
public struct ResourceColumns {
    public var description: String?
    public var agent: String?
    public var environmentRefs: String?
    public var tag: String?
    public var data = Variables<EnvironmentValue>()

    public init(_ resource: Resource) {
        switch resource {
        case .environment(let e): description = e.spec.summary; data = e.spec.data; tag = e.tag
        case .agent(let a), .mcpServer(let a): description = a.summary; data = a.envSpec.data; tag = a.tag
        case .agentInstance(let i): agent = i.agentID; environmentRefs = i.environmentRefs.joined(separator: "\n"); tag = i.tag
        }
    }
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
    var catalog = ResourceCatalog()
    var contexts: [String: ExecutionContext] = [:]

    public init() {}

    public func apply(_ resources: [Resource]) throws(StigmerError) {
        try StoreRules.check(resources)
        for r in resources { catalog.add(r) }
    }

    public func environment(_ name: String) throws(StigmerError) -> Environment? { catalog.environments[name] }

    public func environments() throws(StigmerError) -> [Environment] {
        catalog.environments.values.sorted { $0.name < $1.name }
    }

    public func deleteEnvironment(_ name: String) throws(StigmerError) -> Bool {
        catalog.environments.removeValue(forKey: name) != nil
    }

    public func agent(_ name: String) throws(StigmerError) -> Agent? { catalog.agents[name] }

    public func instance(_ name: String) throws(StigmerError) -> AgentInstance? { catalog.instances[name] }

    public func createContext(_ context: ExecutionContext, replace: Bool) throws(StigmerError) {
        try StoreRules.checkSealed(context.data, owner: "context \(context.executionID)")
        if !replace && contexts[context.executionID] != nil { throw StoreRules.conflict(context.executionID) }
        contexts[context.executionID] = context
    }

    public func context(_ executionID: String) throws(StigmerError) -> ExecutionContext? { contexts[executionID] }

    public func executionID(forTokenHash hash: String) throws(StigmerError) -> String? {
        contexts.values.first { $0.tokenHash == hash }?.executionID
    }

    public func deleteContext(_ executionID: String) throws(StigmerError) -> Bool {
        contexts.removeValue(forKey: executionID) != nil
    }

    public func deleteExpired(now: Int64) throws(StigmerError) -> Int {
        let expired = contexts.values.filter { $0.expiresAt <= now }.map(\.executionID)
        for id in expired { contexts.removeValue(forKey: id) }
        return expired.count
    }

    public func rekey(now: Int64, _ rekeying: Rekeying) throws(StigmerError) -> RekeyReport {
        var report = RekeyReport()
        var catalog = self.catalog, contexts = self.contexts.filter { $0.value.expiresAt > now }
        report.expiredSwept = self.contexts.count - contexts.count
        for resource in allResources { catalog.add(try rekeying.resource(resource)); report.resources += 1 }
        for (id, context) in contexts { contexts[id] = try rekeying.context(context); report.contexts += 1 }
        self.catalog = catalog
        self.contexts = contexts
        return report
    }

    public func keyUsage() throws(StigmerError) -> KeyUsage {
        var usage = KeyUsage()
        for resource in allResources { usage.note(resource) }
        for context in contexts.values { usage.note(context) }
        return usage
    }

    var allResources: [Resource] {
        catalog.environments.values.map(Resource.environment) + catalog.agents.values.map(Resource.agent)
            + catalog.instances.values.map(Resource.agentInstance)
    }
}
