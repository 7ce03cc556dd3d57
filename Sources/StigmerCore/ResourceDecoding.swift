/// Decoding of manifests (DESIGN.md §2) and MCP configs (§4) from a `Document`.
public enum ResourceDecoder {
    public static let apiVersion = "agentic.stigmer.ai/v1"
    public static let kinds = ["Environment", "Agent", "AgentInstance", "McpServer"]

    /// Decodes one manifest document.
    public static func resource(_ root: Field) throws(StigmerError) -> Resource {
        let top = try root.mapping()
        let version = try top.require("apiVersion")
        guard try version.string() == apiVersion else {
            throw version.error("unsupported apiVersion; expected \(apiVersion)")
        }
        let kindField = try top.require("kind")
        let kind = try kindField.string()
        let metadata = try top.require("metadata").mapping()
        let nameField = try metadata.require("name")
        let name = try nameField.nonEmptyString()
        try checkResourceName(name, nameField)
        let spec = try top.optional("spec")?.mapping()

        switch kind {
        case "Environment":
            return .environment(Environment(name: name, spec: try environmentSpec(spec, requireValues: true)))
        case "Agent":
            return .agent(try agent(name: name, spec: spec))
        case "McpServer":
            return .mcpServer(try mcpServerResource(name: name, spec: spec))
        case "AgentInstance":
            guard let spec else { throw root.error("missing required field \"spec\"") }
            let agentID = try spec.require("agent_id").nonEmptyString()
            var refs: [String] = []
            for item in try spec.optional("environment_refs")?.sequence() ?? [] {
                let ref = try item.nonEmptyString()
                try checkResourceName(ref, item)
                refs.append(ref)
            }
            return .agentInstance(AgentInstance(name: name, agentID: agentID, environmentRefs: refs))
        default:
            throw kindField.error("unknown kind; expected one of \(kinds.joined(separator: ", "))")
        }
    }

    /// Resource names end up in scopes (`environment:<name>`) and listings: keep them to a
    /// safe, printable alphabet.
    static func checkResourceName(_ name: String, _ field: Field) throws(StigmerError) {
        let ok = name.utf8.count <= 253 && name.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
                || b == 0x2D || b == 0x5F || b == 0x2E
        }
        guard ok else {
            throw field.error("invalid name \(quoted(name)): use letters, digits, '-', '_' and '.' (at most 253)")
        }
    }

    /// An Environment `spec` or an Agent's `env_spec`. In an Environment every entry must
    /// carry a value; in an env_spec an entry without one is a required variable.
    public static func environmentSpec(_ spec: FieldMap?, requireValues: Bool) throws(StigmerError) -> EnvironmentSpec {
        guard let spec else { return EnvironmentSpec() }
        var result = EnvironmentSpec(summary: try spec.optional("description")?.string())
        guard let data = spec.optional("data") else { return result }
        let map = try data.mapping()
        for (name, field) in map.fields {
            guard VariableName.isValid(name) else { throw map.keyError(name, VariableName.problem(name)) }
            result.data[name] = try environmentValue(field, requireValue: requireValues)
        }
        return result
    }

    static func environmentValue(_ field: Field, requireValue: Bool) throws(StigmerError) -> EnvironmentValue {
        // `NAME:` with nothing after it: a required, non-secret variable (env_spec only).
        if field.isNull {
            if requireValue { throw field.error("missing value; give value: or encrypted_value:") }
            return EnvironmentValue(content: nil)
        }
        let map = try field.mapping()
        try map.rejectUnknown(["value", "encrypted_value", "is_secret", "description"])
        let isSecret = try map.optional("is_secret")?.bool() ?? false
        let summary = try map.optional("description")?.string()
        let plain = try map.optional("value")?.string()
        let sealedField = map.optional("encrypted_value")
        var content: ValueContent?
        switch (plain, sealedField) {
        case (.some, .some):
            throw field.error("both value and encrypted_value are set; keep one")
        case (.some(let text), nil):
            // A NUL would silently cut the value short in the child's environment.
            if text.utf8.contains(0) {
                throw map.optional("value")!.error("the value holds a NUL byte, which no environment variable can carry; remove it")
            }
            content = .plain(text)
        case (nil, .some(let f)):
            let sealed = try f.nonEmptyString()
            // A sealed value is only ever a secret: refusing `is_secret: false` keeps the
            // flag honest rather than guessing.
            if let flag = map.optional("is_secret"), !isSecret {
                throw flag.error("an encrypted_value is always secret; drop is_secret: false")
            }
            content = .sealed(sealed)
        case (nil, nil):
            if requireValue { throw field.error("missing value; give value: or encrypted_value:") }
        }
        let secret = isSecret || { if case .sealed = content { return true } else { return false } }()
        return EnvironmentValue(content: content, isSecret: secret, summary: summary)
    }

    static func agent(name: String, spec: FieldMap?) throws(StigmerError) -> Agent {
        let envSpecMap = try spec?.optional("env_spec")?.mapping()
        let envSpec = try environmentSpec(envSpecMap, requireValues: false)
        // Sealed values are bound to an Environment or an execution; a template default has
        // neither, and a default is no place for a secret anyway.
        for (variable, value) in envSpec.data.entries {
            if case .sealed = value.content, let envSpecMap {
                let data = try envSpecMap.require("data").mapping()
                throw data.keyError(variable, "encrypted_value belongs in an Environment; declare \(variable) here without a value (required) and supply it from an environment_ref or at run time")
            }
        }
        var servers: [McpServerDefinition] = []
        if let list = spec?.optional("mcp_servers") {
            servers = try stigmerServers(list)
        }
        return Agent(name: name, summary: try spec?.optional("description")?.string(),
                     envSpec: envSpec, mcpServers: servers)
    }

    /// An McpServer resource: Agent-shaped (`env_spec`, `mcp_servers`), or a single server
    /// definition (`stdio`/`http`/`docker`) named by `metadata.name`.
    static func mcpServerResource(name: String, spec: FieldMap?) throws(StigmerError) -> Agent {
        var result = try agent(name: name, spec: spec)
        if let spec, spec.optional("stdio") != nil || spec.optional("http") != nil || spec.optional("docker") != nil {
            // Two servers of one name: `mcp run --server` would pick one and silently hide
            // the other (found by the fuzz harness's invariant), as in a list.
            if let list = spec.optional("mcp_servers"), result.mcpServers.contains(where: { $0.name == name }) {
                throw list.error("duplicate server name \(quoted(name)): it is this McpServer's own name; rename the one in mcp_servers")
            }
            result.mcpServers.insert(try serverBody(name: name, spec), at: 0)
        }
        return result
    }

    /// Stigmer's `mcp_servers` list.
    public static func stigmerServers(_ list: Field) throws(StigmerError) -> [McpServerDefinition] {
        var servers: [McpServerDefinition] = []
        for item in try list.sequence() {
            let map = try item.mapping()
            let nameField = try map.require("name")
            let name = try nameField.nonEmptyString()
            if servers.contains(where: { $0.name == name }) {
                throw nameField.error("duplicate server name \(quoted(name))")
            }
            servers.append(try serverBody(name: name, map))
        }
        return servers
    }

    static func serverBody(name: String, _ map: FieldMap) throws(StigmerError) -> McpServerDefinition {
        let present = ["stdio", "http", "docker"].filter { map.optional($0) != nil }
        guard present.count == 1 else {
            throw map.field.error(present.isEmpty
                ? "server \(quoted(name)) needs one of stdio, http or docker"
                : "server \(quoted(name)) sets \(present.joined(separator: " and ")); keep exactly one")
        }
        let body = try map.require(present[0]).mapping()
        var server = try serverTransport(name: name, kind: present[0], body)
        server.sandbox = try map.optional("sandbox")?.nonEmptyString()
        return server
    }

    static func serverTransport(name: String, kind: String, _ body: FieldMap) throws(StigmerError) -> McpServerDefinition {
        switch kind {
        case "stdio":
            return McpServerDefinition(name: name, transport: .stdio(StdioServer(
                command: try body.require("command").nonEmptyString(),
                args: try body.optional("args")?.stringList() ?? [],
                env: try body.optional("env_placeholders")?.pairs(validatingNames: true) ?? [],
                workingDir: try body.optional("working_dir")?.string())))
        case "http":
            return McpServerDefinition(name: name, transport: .http(HttpServer(
                url: try body.require("url").nonEmptyString(),
                headers: try body.optional("headers")?.pairs() ?? [],
                queryParams: try body.optional("query_params")?.pairs() ?? [],
                timeoutSeconds: try body.optional("timeout_seconds")?.int())))
        default:
            return McpServerDefinition(name: name, transport: .docker(DockerServer(
                image: try body.require("image").nonEmptyString(),
                args: try body.optional("args")?.stringList() ?? [],
                env: try body.optional("env_placeholders")?.pairs(validatingNames: true) ?? [],
                volumes: try body.optional("volumes")?.stringList() ?? [],
                network: try body.optional("network")?.string(),
                ports: try body.optional("ports")?.stringList() ?? [],
                containerName: try body.optional("container_name")?.string())))
        }
    }

    /// An MCP config in either form: an Agent/McpServer manifest, a bare `mcp_servers:` list,
    /// or `{"mcpServers": {...}}`.
    public static func mcpConfig(_ root: Field) throws(StigmerError) -> McpConfig {
        let top = try root.mapping()
        if let servers = top.optional("mcpServers") {
            return McpConfig(form: .mcpServers, servers: try desktopServers(servers))
        }
        if top["apiVersion"] != nil {
            switch try resource(root) {
            case .agent(let agent), .mcpServer(let agent):
                return McpConfig(form: .stigmer, servers: agent.mcpServers)
            case let other:
                throw root.error("a \(other.kind) holds no MCP servers; give an Agent or McpServer manifest, or an mcpServers JSON file")
            }
        }
        if let list = top.optional("mcp_servers") {
            return McpConfig(form: .stigmer, servers: try stigmerServers(list))
        }
        throw root.error("not an MCP config: expected an mcpServers object, an mcp_servers list, or an Agent manifest")
    }

    /// The `mcpServers` object of Claude Desktop / Claude Code / Cursor. Unknown fields
    /// (`disabled`, `autoApprove`, …) belong to the client and are ignored.
    static func desktopServers(_ object: Field) throws(StigmerError) -> [McpServerDefinition] {
        var servers: [McpServerDefinition] = []
        for (name, field) in try object.mapping().fields {
            let map = try field.mapping()
            let type = try map.optional("type")?.string()
            let sandbox = try map.optional("sandbox")?.nonEmptyString()
            if let url = map.optional("url") {
                if let type, !["http", "sse", "streamable-http", "streamableHttp"].contains(type) {
                    throw field.error("server \(quoted(name)) has a url but type \(quoted(type)); expected http, sse or streamable-http")
                }
                servers.append(McpServerDefinition(name: name, transport: .http(HttpServer(
                    url: try url.nonEmptyString(),
                    headers: try map.optional("headers")?.pairs() ?? [],
                    transportType: type)), sandbox: sandbox))
            } else if let command = map.optional("command") {
                if let type, type != "stdio" {
                    throw field.error("server \(quoted(name)) has a command but type \(quoted(type)); expected stdio")
                }
                servers.append(McpServerDefinition(name: name, transport: .stdio(StdioServer(
                    command: try command.nonEmptyString(),
                    args: try map.optional("args")?.stringList() ?? [],
                    env: try map.optional("env")?.pairs(validatingNames: true) ?? [],
                    workingDir: try map.optional("cwd")?.string())), sandbox: sandbox))
            } else {
                throw field.error("server \(quoted(name)) needs a command (stdio) or a url (http)")
            }
        }
        return servers
    }
}
