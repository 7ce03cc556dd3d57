import FuzzSupport
import StigmerCore
import StigmerManifests

/// Resource decoding (DESIGN.md §2): Environment, Agent, AgentInstance and McpServer
/// manifests, from the documents the YAML and JSON readers make.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzResources(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    for document in Fuzz.documents(data, size, file: "fuzz.yaml") {
        if case .null = document.kind { continue }
        check(document, planted: false)
        check(Fuzz.plantingValues(document), planted: true)
    }
    return 0
}

func check(_ document: Document, planted: Bool) {
    let decoded = Result { () throws(StigmerError) in try ResourceDecoder.resource(Field(root: document, file: "fuzz.yaml")) }
    switch decoded {
    case .failure(let error):
        if planted { Fuzz.expectNoCanary(error, "resource decoding") }
    case .success(let resource):
        // Every rendering of a decoded resource is redacted.
        let renderings: [String] = switch resource {
        case .environment(let e): ["\(e)", String(reflecting: e), "\(e.spec)"] + e.spec.data.entries.map { "\($0.value)" }
        case .agent(let a), .mcpServer(let a): ["\(a)", String(reflecting: a), "\(a.envSpec)"] + a.mcpServers.map { "\($0)" }
        case .agentInstance(let i): ["\(i)"]
        }
        if planted { for text in renderings { Fuzz.expectNoCanary(in: text, "a decoded resource's description") } }
    }
    // The same document written as JSON (as `kubectl` or a tool might convert it) decodes
    // the same: the decoders depend on the tree, not on which reader built it.
    let viaJSON = Result { () throws(StigmerError) in try Loader.resources(text: JSONWriter.write(document), file: "fuzz.json") }
    switch (decoded, viaJSON) {
    case (.success(let a), .success(let b)): Fuzz.expect(b == [a], "the JSON form decodes to another resource")
    case (.failure(let a), .failure(let b)): Fuzz.expect(a.code == b.code, "the JSON form fails differently: \(a) / \(b)")
    case (.success, .failure(let b)): Fuzz.violation("the JSON form fails: \(b)")
    case (.failure(let a), .success): Fuzz.violation("only the JSON form decodes: \(a)")
    }
}
