import FuzzSupport
import StigmerCore
import StigmerManifests

/// MCP configs (DESIGN.md §4): `{"mcpServers": …}`, a bare `mcp_servers:` list or an Agent
/// manifest, then each server made into templates as `mcp run` and the bridge do.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMcpConfig(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    for document in Fuzz.documents(data, size, file: "fuzz.yaml") {
        check(document, planted: false)
        check(Fuzz.plantingValues(document), planted: true)
    }
    return 0
}

func check(_ document: Document, planted: Bool) {
    let decoded = Result { () throws(StigmerError) in try ResourceDecoder.mcpConfig(Field(root: document, file: "fuzz.json")) }
    // The same tree from JSON text decodes the same.
    let viaJSON = Result { () throws(StigmerError) in try Loader.mcpConfig(text: JSONWriter.write(document), file: "fuzz.json") }
    switch (decoded, viaJSON) {
    case (.success(let a), .success(let b)):
        Fuzz.expect(a.form == b.form && a.servers == b.servers, "the JSON form decodes to another config")
    case (.failure(let a), .failure(let b)):
        Fuzz.expect(a.code == b.code, "the JSON form fails differently: \(a) / \(b)")
    case (.success, .failure(let b)): Fuzz.violation("the JSON form fails: \(b)")
    case (.failure(let a), .success): Fuzz.violation("only the JSON form decodes: \(a)")
    }
    let config: McpConfig
    switch decoded {
    case .failure(let error):
        if planted { Fuzz.expectNoCanary(error, "MCP config decoding") }
        return
    case .success(let c): config = c
    }
    var names = Set<String>()
    for server in config.servers {
        Fuzz.expect(names.insert(server.name).inserted, "two servers named \(server.name)")
        // Made into templates: a problem names a server, field and column, never a value.
        switch server.transport {
        case .http:
            switch Result(catching: { () throws(StigmerError) in try McpResolver.remote(server, file: "fuzz.json") }) {
            case .success(let remote): if planted { Fuzz.expectNoCanary(in: "\(remote)", "McpRemote") }
            case .failure(let error): if planted { Fuzz.expectNoCanary(error, "McpResolver.remote") }
            }
        case .stdio, .docker:
            switch Result(catching: { () throws(StigmerError) in try McpResolver.child(server, file: "fuzz.json") }) {
            case .success(let child): if planted { Fuzz.expectNoCanary(in: "\(child)", "McpChild") }
            case .failure(let error): if planted { Fuzz.expectNoCanary(error, "McpResolver.child") }
            }
        }
        // `mcp check` against a context whose every value is the canary.
        let checked = server.check { _ in Fuzz.canary }
        for problem in checked.problems { Fuzz.expectNoCanary(in: problem.description, "mcp check") }
        Fuzz.expect(Set(checked.names) == Set(server.referencedNames), "check and referencedNames disagree")
        Fuzz.expectNoCanary(in: "\(server)", "a server's description")
    }
}
