/// `mcp wrap`: the same config, in the same form, with every server — stdio, docker, and
/// http through the bridge — launched through `stigmer-exec mcp run …`. The output holds no value from the
/// context and no resolved placeholder: the wrapped servers resolve at launch.
public enum McpWrap {
    /// `launcher` is stigmer-exec's absolute path, `config` the config's absolute path.
    /// `extraArgs` and `extraEnv` tell the wrapped entry where the context lives (an MCP
    /// client starts servers with a bare environment, from any directory).
    public static func wrap(_ root: Document, form: McpConfigForm, launcher: String, config: String,
                            executionID: String?, extraArgs: [String] = [], extraEnv: [(String, String)] = []) -> Document {
        let env: Document? = extraEnv.isEmpty ? nil : .object(extraEnv.map { ($0.0, .string($0.1)) })
        // A server's sandbox profile goes on its command line, absolute: the wrapped entry
        // may be read from anywhere.
        func launch(_ server: String, sandbox: Document?) -> [String] {
            var args = ["mcp", "run"]
            if let executionID { args += ["--execution-id", executionID] }
            args += ["--config", config, "--server", server]
            if case .scalar(let path, _)? = sandbox?.kind, !path.isEmpty {
                args += ["--sandbox", RelativePath.beside(config, path)]
            }
            return args + extraArgs
        }
        switch form {
        case .mcpServers:
            guard let servers = root["mcpServers"], case .mapping(let entries) = servers.kind else { return root }
            let rewritten = entries.map { entry -> Document.Entry in
                var e = entry
                var server = entry.value
                // An http or sse server becomes a stdio entry that starts the bridge: the
                // client never holds its headers.
                for key in ["command", "args", "env", "cwd", "type", "url", "headers", "sandbox"] { server = server.setting(key, nil) }
                // Client-specific fields (disabled, autoApprove, …) stay.
                var fields: [(String, Document)] = [("command", .string(launcher)), ("args", .list(launch(entry.key, sandbox: entry.value["sandbox"])))]
                if let env { fields.append(("env", env)) }
                server = Document.object(fields).merging(server)
                e.value = server
                return e
            }
            return root.setting("mcpServers", Document(.mapping(rewritten)))
        case .stigmer:
            guard let spec = root["spec"], let list = spec["mcp_servers"] ?? spec["mcpServers"],
                  case .sequence(let items) = list.kind else {
                // A bare mcp_servers list.
                if let list = root["mcp_servers"], case .sequence(let items) = list.kind {
                    return root.setting("mcp_servers", Document(.sequence(items.map { rewriteStigmer($0, launcher, env, launch) })))
                }
                return root
            }
            let key = spec["mcp_servers"] != nil ? "mcp_servers" : "mcpServers"
            let newSpec = spec.setting(key, Document(.sequence(items.map { rewriteStigmer($0, launcher, env, launch) })))
            return root.setting("spec", newSpec)
        }
    }

    static func rewriteStigmer(_ item: Document, _ launcher: String, _ env: Document?, _ launch: (String, Document?) -> [String]) -> Document {
        guard item["stdio"] != nil || item["docker"] != nil || item["http"] != nil,
              case .scalar(let name, _)? = item["name"]?.kind else { return item }
        var fields: [(String, Document)] = [("command", .string(launcher)), ("args", .list(launch(name, item["sandbox"])))]
        // Escaped: the wrapped entry's env is itself a template when it is read again.
        if let env, case .mapping(let entries) = env.kind {
            fields.append(("env_placeholders", .object(entries.map { entry in
                (entry.key, .string(Placeholder.escape({ if case .scalar(let v, _) = entry.value.kind { v } else { "" } }())))
            })))
        }
        let stdio = Document.object(fields)
        return item.setting("docker", nil).setting("http", nil).setting("sandbox", nil).setting("stdio", stdio)
    }
}

extension Document {
    /// Entries of `self` first, then those of `other` not already present.
    func merging(_ other: Document) -> Document {
        guard case .mapping(var entries) = kind, case .mapping(let more) = other.kind else { return self }
        for entry in more where !entries.contains(where: { $0.key == entry.key }) { entries.append(entry) }
        return Document(.mapping(entries), line: line, column: column)
    }
}
