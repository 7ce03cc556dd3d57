/// `mcp wrap`: the same config, in the same form, with every stdio and docker server
/// launched through `stigmer-exec mcp run …`. The output holds no value from the
/// context and no resolved placeholder: the wrapped servers resolve at launch.
public enum McpWrap {
    /// `launcher` is stigmer-exec's absolute path, `config` the config's absolute path.
    public static func wrap(_ root: Document, form: McpConfigForm, launcher: String, config: String,
                            executionID: String?, extraArgs: [String] = []) -> Document {
        func launch(_ server: String) -> [String] {
            var args = ["mcp", "run"]
            if let executionID { args += ["--execution-id", executionID] }
            return args + ["--config", config, "--server", server] + extraArgs
        }
        switch form {
        case .mcpServers:
            guard let servers = root["mcpServers"], case .mapping(let entries) = servers.kind else { return root }
            let rewritten = entries.map { entry -> Document.Entry in
                var e = entry
                guard entry.value["url"] == nil else { return e }  // http: as it was
                var server = entry.value
                for key in ["command", "args", "env", "cwd", "type"] { server = server.setting(key, nil) }
                // Client-specific fields (disabled, autoApprove, …) stay.
                server = Document.object([("command", .string(launcher)), ("args", .list(launch(entry.key)))])
                    .merging(server)
                e.value = server
                return e
            }
            return root.setting("mcpServers", Document(.mapping(rewritten)))
        case .stigmer:
            guard let spec = root["spec"], let list = spec["mcp_servers"] ?? spec["mcpServers"],
                  case .sequence(let items) = list.kind else {
                // A bare mcp_servers list.
                if let list = root["mcp_servers"], case .sequence(let items) = list.kind {
                    return root.setting("mcp_servers", Document(.sequence(items.map { rewriteStigmer($0, launcher, launch) })))
                }
                return root
            }
            let key = spec["mcp_servers"] != nil ? "mcp_servers" : "mcpServers"
            let newSpec = spec.setting(key, Document(.sequence(items.map { rewriteStigmer($0, launcher, launch) })))
            return root.setting("spec", newSpec)
        }
    }

    static func rewriteStigmer(_ item: Document, _ launcher: String, _ launch: (String) -> [String]) -> Document {
        guard item["stdio"] != nil || item["docker"] != nil,
              case .scalar(let name, _)? = item["name"]?.kind else { return item }
        let stdio = Document.object([("command", .string(launcher)), ("args", .list(launch(name)))])
        return item.setting("docker", nil).setting("stdio", stdio)
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
