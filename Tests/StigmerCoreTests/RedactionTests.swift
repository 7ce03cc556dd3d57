import Testing
@testable import StigmerCore

/// No plaintext-holding type lets its value escape through description, debugDescription,
/// interpolation, dump or Mirror — alone or inside collections and optionals.
@Suite("Redaction")
struct RedactionTests {
    static let canary = "canary-\(UInt64.random(in: 1...UInt64.max))"

    static func renderings(_ value: Any) -> [String] {
        var dumped = ""
        dump(value, to: &dumped)
        let mirror = Mirror(reflecting: value).children.map { "\($0.label ?? ""): \($0.value)" }.joined()
        return ["\(value)", String(describing: value), String(reflecting: value), dumped, mirror,
                "\([value])", String(reflecting: Optional(value)), "\(["k": value])"]
    }

    static var samples: [Any] {
        var data = Variables<EnvironmentValue>()
        data["TOKEN"] = EnvironmentValue(content: .plain(canary), isSecret: true)
        data["SEALED"] = EnvironmentValue(content: .sealed(canary), isSecret: true)
        var merged = Variables<ExecutionValue>()
        merged["TOKEN"] = ExecutionValue(content: .plain(canary), isSecret: true, layer: .runtime)
        let spec = EnvironmentSpec(summary: nil, data: data)
        let server = McpServerDefinition(name: "s", transport: .stdio(StdioServer(command: "x", args: [canary], env: [ConfigPair("T", canary)])))
        var runtime = RuntimeLayer()
        runtime.set("TOKEN", canary, secret: true)
        return [
            ValueContent.plain(canary), ValueContent.sealed(canary),
            EnvironmentValue(content: .plain(canary)), data, spec,
            Environment(name: "e", spec: spec), Agent(name: "a", envSpec: spec, mcpServers: [server]),
            ExecutionValue(content: .plain(canary), isSecret: true, layer: .template), merged,
            ExecutionContext(executionID: "x", data: merged, createdAt: 0, expiresAt: 0),
            EnvFileEntry(name: "TOKEN", value: canary, line: 1), server,
            McpConfig(form: .mcpServers, servers: [server]), runtime.values,
            Resource.environment(Environment(name: "e", spec: spec)),
        ]
    }

    @Test func noRenderingShowsTheValue() {
        for sample in Self.samples {
            for text in Self.renderings(sample) {
                #expect(!text.contains(Self.canary), "\(type(of: sample)) leaked: \(text)")
            }
        }
    }

    @Test func namesAreShownRedacted() {
        var data = Variables<EnvironmentValue>()
        data["TOKEN"] = EnvironmentValue(content: .plain(Self.canary), isSecret: true)
        #expect("\(EnvironmentSpec(data: data))" == "EnvironmentSpec(TOKEN=<redacted>)")
        #expect("\(EnvFileEntry(name: "A", value: Self.canary, line: 1))" == "A=<redacted>")
    }
}
