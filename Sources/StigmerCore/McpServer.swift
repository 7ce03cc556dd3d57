/// An MCP server definition (DESIGN.md §4), in either accepted form: Stigmer's
/// `McpServerDefinition` (`stdio` / `http` / `docker`) or the `mcpServers` JSON of Claude
/// Desktop, Claude Code and Cursor. Strings here are templates that may hold `${NAME}`
/// placeholders — or, when a user pasted one, a literal credential — so the type redacts.

/// An ordered `key: value` pair of a config (env, headers, query parameters).
public struct ConfigPair: Sendable, Equatable {
    public var key: String
    public var value: String

    public init(_ key: String, _ value: String) {
        self.key = key
        self.value = value
    }
}

public struct StdioServer: Sendable, Equatable {
    public var command: String
    public var args: [String]
    /// `env_placeholders` (Stigmer) or `env` (mcpServers).
    public var env: [ConfigPair]
    /// `working_dir` (Stigmer) or `cwd` (mcpServers).
    public var workingDir: String?

    public init(command: String, args: [String] = [], env: [ConfigPair] = [], workingDir: String? = nil) {
        self.command = command
        self.args = args
        self.env = env
        self.workingDir = workingDir
    }
}

public struct HttpServer: Sendable, Equatable {
    public var url: String
    public var headers: [ConfigPair]
    public var queryParams: [ConfigPair]
    public var timeoutSeconds: Int?
    /// The mcpServers `type` as written (`http`, `sse`, `streamable-http`), if any.
    public var transportType: String?

    public init(url: String, headers: [ConfigPair] = [], queryParams: [ConfigPair] = [],
                timeoutSeconds: Int? = nil, transportType: String? = nil) {
        self.url = url
        self.headers = headers
        self.queryParams = queryParams
        self.timeoutSeconds = timeoutSeconds
        self.transportType = transportType
    }
}

public struct DockerServer: Sendable, Equatable {
    public var image: String
    public var args: [String]
    public var env: [ConfigPair]
    public var volumes: [String]
    public var network: String?
    public var ports: [String]
    public var containerName: String?

    public init(image: String, args: [String] = [], env: [ConfigPair] = [], volumes: [String] = [],
                network: String? = nil, ports: [String] = [], containerName: String? = nil) {
        self.image = image
        self.args = args
        self.env = env
        self.volumes = volumes
        self.network = network
        self.ports = ports
        self.containerName = containerName
    }
}

public struct McpServerDefinition: Sendable, Equatable, Redacted {
    public enum Transport: Sendable, Equatable {
        case stdio(StdioServer)
        case http(HttpServer)
        case docker(DockerServer)

        public var name: String {
            switch self {
            case .stdio: "stdio"
            case .http: "http"
            case .docker: "docker"
            }
        }
    }

    public var name: String
    public var transport: Transport
    /// A sandbox profile (`--sandbox FILE`) for this server, as written: relative to the
    /// config file's directory.
    public var sandbox: String?

    public init(name: String, transport: Transport, sandbox: String? = nil) {
        self.name = name
        self.transport = transport
        self.sandbox = sandbox
    }

    public var redactedDescription: String { "McpServer(\(name): \(transport.name))" }
}

/// Paths a config or a sandbox profile names: absolute ones and `~/…` stay as written,
/// the rest are beside the file that names them.
public enum RelativePath {
    public static func beside(_ file: String, _ path: String) -> String {
        if path.hasPrefix("/") || path == "~" || path.hasPrefix("~/") { return path }
        guard let slash = file.lastIndex(of: "/") else { return path }
        return String(file[...slash]) + path
    }

    /// `~` and `~/…` under `home` (the launcher's HOME), when there is one.
    public static func expandingHome(_ path: String, home: String?) -> String {
        guard let home, path == "~" || path.hasPrefix("~/") else { return path }
        return home + path.dropFirst()
    }
}

/// Which of the two config forms a file was written in; `mcp wrap` answers in the same form.
public enum McpConfigForm: Sendable, Equatable {
    /// Stigmer's `mcp_servers` list inside an Agent or McpServer manifest.
    case stigmer
    /// `{"mcpServers": {...}}`.
    case mcpServers
}

public struct McpConfig: Sendable, Equatable, Redacted {
    public var form: McpConfigForm
    public var servers: [McpServerDefinition]

    public init(form: McpConfigForm, servers: [McpServerDefinition]) {
        self.form = form
        self.servers = servers
    }

    public func server(named name: String) -> McpServerDefinition? {
        servers.first { $0.name == name }
    }

    public var redactedDescription: String { "McpConfig(\(servers.map(\.name).joined(separator: ", ")))" }
}
