/// The resource model (DESIGN.md §2), in Stigmer's shape. Values are either plaintext or a
/// sealed string (`v1:…` or legacy base64) that only `StigmerCrypto` can open.

/// What a variable holds before it reaches a child: plaintext, or a sealed value.
public enum ValueContent: Sendable, Equatable, Redacted {
    case plain(String)
    case sealed(String)

    public var redactedDescription: String {
        switch self {
        case .plain: redactedMarker
        case .sealed: "<sealed>"
        }
    }
}

/// One entry of an Environment's or env_spec's `data`. `content == nil` means required:
/// a higher layer must supply it (only meaningful in an Agent's env_spec).
public struct EnvironmentValue: Sendable, Equatable, Redacted {
    public var content: ValueContent?
    public var isSecret: Bool
    /// Stigmer's `description` field (renamed: `description` is the redacted rendering).
    public var summary: String?

    public init(content: ValueContent?, isSecret: Bool = false, summary: String? = nil) {
        self.content = content
        self.isSecret = isSecret
        self.summary = summary
    }

    public var redactedDescription: String {
        content == nil ? "<required\(isSecret ? ", secret" : "")>" : redactedMarker
    }
}

/// Variables by name, in the order they were declared (so listings follow the manifest).
///
/// `Value` carries no protocol requirement on purpose: a generic parameter with one makes
/// the runtime check the conformance when the type is first instantiated, which scans
/// every conformance record of the binary (~0.1 ms each on the launch path).
/// Inlinable: its clients (store, engine, launch) then use it specialized for their value
/// type. Unspecialized, every access looked its dictionary's metadata up at run time — a
/// tenth of a launch's instructions (callgrind, benchmarks/RESULTS.md).
public struct Variables<Value: Sendable>: Sendable {
    @usableFromInline var order: [String] = []
    @usableFromInline var values: [String: Value] = [:]

    /// The names in declaration order.
    @inlinable public var names: [String] { order }

    @inlinable public init() {}

    @inlinable public subscript(name: String) -> Value? {
        get { values[name] }
        set {
            if let newValue {
                if values.updateValue(newValue, forKey: name) == nil { order.append(name) }
            } else if values.removeValue(forKey: name) != nil {
                order.removeAll { $0 == name }
            }
        }
    }

    @inlinable public mutating func reserveCapacity(_ count: Int) {
        order.reserveCapacity(count)
        values.reserveCapacity(count)
    }

    @inlinable public var count: Int { names.count }
    @inlinable public var isEmpty: Bool { names.isEmpty }

    /// Entries in declaration order.
    @inlinable public var entries: [(name: String, value: Value)] {
        names.map { ($0, values[$0]!) }
    }

    /// Entries sorted by name, for stable output.
    @inlinable public var sortedEntries: [(name: String, value: Value)] {
        names.sorted().map { ($0, values[$0]!) }
    }
}

extension Variables: Equatable where Value: Equatable {}

extension Variables: Redacted {
    public var redactedDescription: String { "[\(redactedList(names))]" }
}

/// An Environment's `spec`, and an Agent's `env_spec` (same shape).
public struct EnvironmentSpec: Sendable, Equatable, Redacted {
    public var summary: String?
    public var data: Variables<EnvironmentValue>

    public init(summary: String? = nil, data: Variables<EnvironmentValue> = .init()) {
        self.summary = summary
        self.data = data
    }

    public var redactedDescription: String { "EnvironmentSpec(\(redactedList(data.names)))" }
}

public struct Environment: Sendable, Equatable, Redacted {
    public var name: String
    public var spec: EnvironmentSpec
    /// The store's integrity tag (`m1:…`); nil in manifests.
    public var tag: String?

    public init(name: String, spec: EnvironmentSpec, tag: String? = nil) {
        self.name = name
        self.spec = spec
        self.tag = tag
    }

    public var redactedDescription: String { "Environment(\(name): \(redactedList(spec.data.names)))" }
}

public struct Agent: Sendable, Equatable, Redacted {
    public var name: String
    public var summary: String?
    public var envSpec: EnvironmentSpec
    public var mcpServers: [McpServerDefinition]
    /// The store's integrity tag (`m1:…`); nil in manifests.
    public var tag: String?

    public init(name: String, summary: String? = nil, envSpec: EnvironmentSpec = .init(),
                mcpServers: [McpServerDefinition] = [], tag: String? = nil) {
        self.name = name
        self.summary = summary
        self.envSpec = envSpec
        self.mcpServers = mcpServers
        self.tag = tag
    }

    public var redactedDescription: String {
        "Agent(\(name): \(redactedList(envSpec.data.names)); servers: \(mcpServers.map(\.name).joined(separator: ", ")))"
    }
}

public struct AgentInstance: Sendable, Equatable, CustomStringConvertible {
    public var name: String
    public var agentID: String
    public var environmentRefs: [String]
    /// The store's integrity tag (`m1:…`); nil in manifests.
    public var tag: String?

    public init(name: String, agentID: String, environmentRefs: [String], tag: String? = nil) {
        self.name = name
        self.agentID = agentID
        self.environmentRefs = environmentRefs
        self.tag = tag
    }

    public var description: String {
        "AgentInstance(\(name): agent \(agentID), environments \(environmentRefs.joined(separator: ", ")))"
    }
}

/// Where a merged value came from (DESIGN.md §2): `template`, `environment:<name>`, `runtime`.
public enum Layer: Sendable, Hashable, CustomStringConvertible {
    case template
    case environment(String)
    case runtime

    public var description: String {
        switch self {
        case .template: "template"
        case .environment(let name): "environment:\(name)"
        case .runtime: "runtime"
        }
    }

    public init?(_ text: String) {
        switch text {
        case "template": self = .template
        case "runtime": self = .runtime
        default:
            guard text.hasPrefix("environment:") else { return nil }
            let name = String(text.dropFirst("environment:".count))
            guard !name.isEmpty else { return nil }
            self = .environment(name)
        }
    }
}

/// One merged value of an ExecutionContext, with its provenance.
public struct ExecutionValue: Sendable, Equatable, Redacted {
    public var content: ValueContent
    public var isSecret: Bool
    public var layer: Layer

    public init(content: ValueContent, isSecret: Bool, layer: Layer) {
        self.content = content
        self.isSecret = isSecret
        self.layer = layer
    }

    public var redactedDescription: String { "\(redactedMarker) (\(isSecret ? "secret" : "plain"), \(layer))" }
}

public struct ExecutionContext: Sendable, Equatable, Redacted {
    public var executionID: String
    public var data: Variables<ExecutionValue>
    /// Seconds since the Unix epoch.
    public var createdAt: Int64
    public var expiresAt: Int64
    /// SHA-256 (hex) of the public half of the execution token a server issued for it, if any.
    public var tokenHash: String?
    /// The integrity tag over all of the above (`m1:…`, StigmerCrypto's `ContextTag`).
    public var tag: String?

    public init(executionID: String, data: Variables<ExecutionValue>, createdAt: Int64, expiresAt: Int64, tokenHash: String? = nil,
                tag: String? = nil) {
        self.executionID = executionID
        self.data = data
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.tokenHash = tokenHash
        self.tag = tag
    }

    public var redactedDescription: String { "ExecutionContext(\(executionID): \(redactedList(data.names)))" }
}

/// A manifest resource, as loaded from YAML or JSON.
public enum Resource: Sendable, Equatable, CustomStringConvertible {
    case environment(Environment)
    case agent(Agent)
    case agentInstance(AgentInstance)
    /// An McpServer manifest: Agent-shaped (env_spec, mcp_servers) for what matters here.
    case mcpServer(Agent)

    public var kind: String {
        switch self {
        case .environment: "Environment"
        case .agent: "Agent"
        case .agentInstance: "AgentInstance"
        case .mcpServer: "McpServer"
        }
    }

    public var name: String {
        switch self {
        case .environment(let e): e.name
        case .agent(let a): a.name
        case .agentInstance(let i): i.name
        case .mcpServer(let s): s.name
        }
    }

    public var description: String { "\(kind)/\(name)" }
}
