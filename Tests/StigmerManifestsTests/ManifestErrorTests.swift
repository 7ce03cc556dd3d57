import Testing
import StigmerCore
@testable import StigmerManifests

@Suite("Manifest errors")
struct ManifestErrorTests {
    func error(_ text: String, file: String = "m.yaml") -> StigmerError? {
        do {
            _ = try Loader.resources(text: text, file: file)
            return nil
        } catch {
            return error
        }
    }

    let header = "apiVersion: agentic.stigmer.ai/v1\nkind: Environment\nmetadata:\n  name: e\n"

    @Test(arguments: [
        ("apiVersion: agentic.stigmer.ai/v1\nkind: Secret\nmetadata:\n  name: x\n",
         "m.yaml:2:7: kind: unknown kind; expected one of Environment, Agent, AgentInstance, McpServer"),
        ("apiVersion: agentic.stigmer.ai/v2\nkind: Environment\nmetadata:\n  name: x\n",
         "m.yaml:1:13: apiVersion: unsupported apiVersion; expected agentic.stigmer.ai/v1"),
        ("kind: Environment\nmetadata:\n  name: x\n",
         "m.yaml:1:1: missing required field \"apiVersion\""),
        ("apiVersion: agentic.stigmer.ai/v1\nkind: Environment\nmetadata:\n  name: x\nspec:\n  data:\n    BAD-NAME:\n      value: v\n",
         "m.yaml:7:5: spec.data.BAD-NAME: invalid variable name \"BAD-NAME\": names must match [A-Za-z_][A-Za-z0-9_]*"),
        ("apiVersion: agentic.stigmer.ai/v1\nkind: Environment\nmetadata:\n  name: x\nspec:\n  data:\n    A:\n      value: v\n      is_secret: maybe\n",
         "m.yaml:9:18: spec.data.A.is_secret: expected true or false"),
        ("apiVersion: agentic.stigmer.ai/v1\nkind: Environment\nmetadata:\n  name: x\nspec:\n  data:\n    A:\n      value: v\n      is_sercet: true\n",
         "m.yaml:9:7: spec.data.A.is_sercet: unknown field \"is_sercet\"; expected one of value, encrypted_value, is_secret, description"),
        ("apiVersion: agentic.stigmer.ai/v1\nkind: Environment\nmetadata:\n  name: x\nspec:\n  data:\n    A:\n      value: [1, 2]\n",
         "m.yaml:8:14: spec.data.A.value: expected a string, found a list"),
        ("apiVersion: agentic.stigmer.ai/v1\nkind: Environment\nmetadata:\n  name: x\nspec:\n  data:\n    A:\n      description: no value\n",
         "m.yaml:8:7: spec.data.A: missing value; give value: or encrypted_value:"),
        ("apiVersion: agentic.stigmer.ai/v1\nkind: Agent\nmetadata:\n  name: a\nspec:\n  mcp_servers:\n    - name: s\n      stdio:\n        args: [x]\n",
         "m.yaml:9:9: spec.mcp_servers[0].stdio: missing required field \"command\""),
        ("apiVersion: agentic.stigmer.ai/v1\nkind: Environment\nmetadata:\n  name: bad name\n",
         "m.yaml:4:9: metadata.name: invalid name \"bad name\": use letters, digits, '-', '_' and '.' (at most 253)"),
        ("a: [1, 2\n", "m.yaml:2:1: invalid YAML: did not find expected ',' or ']' while parsing a flow sequence"),
        ("a: 1\na: 2\n", "m.yaml:1:1: duplicate key \"a\"; keep one"),
        // Found by the mcpconfig fuzz harness's invariant (FUZZING.md): an McpServer's own
        // server and an mcp_servers entry of the same name, one silently hidden by the other.
        ("apiVersion: agentic.stigmer.ai/v1\nkind: McpServer\nmetadata: {name: gh}\nspec:\n  stdio: {command: a}\n  mcp_servers:\n  - name: gh\n    stdio: {command: b}\n",
         "m.yaml:7:3: spec.mcp_servers: duplicate server name \"gh\": it is this McpServer's own name; rename the one in mcp_servers"),
    ])
    func locatedErrors(text: String, expected: String) {
        let e = error(text)
        #expect(e?.message == expected)
        #expect(e?.exitStatus == 65)
    }

    @Test func jsonErrorsAreLocated() {
        #expect(error("{\"apiVersion\": \"agentic.stigmer.ai/v1\",\n  \"kind\": \"Environment\",\n  \"kind\": \"Agent\"}", file: "m.json")?.message
                == "m.json:3:3: duplicate key \"kind\"; keep one")
        #expect(error("{\"a\": tru}", file: "m.json")?.message == "m.json:1:7: invalid JSON: unexpected character; expected a value")
        #expect(error("{\"a\": 1,}", file: "m.json")?.message == "m.json:1:9: invalid JSON: expected a string key")
    }

    @Test func errorsNeverShowValues() {
        // A secret pasted where a flag belongs, and a YAML error on a line holding one.
        let canary = "ghp_canary_9f8e7d"
        let texts = [
            header + "spec:\n  data:\n    A:\n      value: v\n      is_secret: \(canary)\n",
            header + "spec:\n  data:\n    A:\n      value: \"\(canary)\n",
            header + "spec:\n  data:\n    A:\n      value: [\(canary)]\n",
            "{\"a\": \"\(canary)\" x}",
        ]
        for text in texts {
            guard let e = error(text) else { Issue.record("no error"); continue }
            #expect(!e.description.contains(canary), "\(e.description)")
        }
    }

    @Test func sealedValuesAndFlags() throws {
        let text = header + "spec:\n  data:\n    A:\n      encrypted_value: v1:abc:AAAA\n    B:\n      value: \"30\"\n    C:\n      value: 30\n    D:\n      value: yes\n"
        guard case .environment(let env) = try Loader.resources(text: text, file: "m.yaml")[0] else { Issue.record(); return }
        #expect(env.spec.data["A"] == EnvironmentValue(content: .sealed("v1:abc:AAAA"), isSecret: true))
        #expect(env.spec.data["B"]?.content == .plain("30"))
        #expect(env.spec.data["C"]?.content == .plain("30"))
        #expect(env.spec.data["D"]?.content == .plain("yes"))
        #expect(error(header + "spec:\n  data:\n    A:\n      encrypted_value: x\n      is_secret: false\n")?.message
                == "m.yaml:9:18: spec.data.A.is_secret: an encrypted_value is always secret; drop is_secret: false")
        #expect(error(header + "spec:\n  data:\n    A:\n      encrypted_value: x\n      value: y\n")?.message
                == "m.yaml:8:7: spec.data.A: both value and encrypted_value are set; keep one")
    }

    @Test func multipleDocumentsAndCamelCase() throws {
        let text = """
            apiVersion: agentic.stigmer.ai/v1
            kind: AgentInstance
            metadata: {name: i}
            spec: {agentId: a, environmentRefs: [x, y]}
            ---
            apiVersion: agentic.stigmer.ai/v1
            kind: Environment
            metadata: {name: x}
            spec: {data: {A: {value: "1", isSecret: true}}}
            """
        let resources = try Loader.resources(text: text, file: "m.yaml")
        #expect(resources.count == 2)
        #expect(resources[0] == .agentInstance(AgentInstance(name: "i", agentID: "a", environmentRefs: ["x", "y"])))
        guard case .environment(let env) = resources[1] else { Issue.record(); return }
        #expect(env.spec.data["A"]?.isSecret == true)
    }

    @Test func aliasBombRefused() {
        var text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        var previous = "a"
        for name in ["b", "c", "d", "e", "f", "g", "h"] {
            text += "\(name): &\(name) [" + Array(repeating: "*\(previous)", count: 10).joined(separator: ", ") + "]\n"
            previous = name
        }
        let e = error(text)
        #expect(e?.exitStatus == 65)
    }

    @Test func mcpConfigShapes() throws {
        let json = """
            {"mcpServers": {"a": {"command": "x", "args": ["${A}"], "env": {"K": "${B}"}, "cwd": "/tmp", "disabled": false},
                            "b": {"type": "sse", "url": "https://h/${C}"}}}
            """
        let config = try Loader.mcpConfig(text: json, file: "c.json")
        #expect(config.servers.map(\.referencedNames) == [["A", "B"], ["C"]])
        do {
            _ = try Loader.mcpConfig(text: "{\"mcpServers\": {\"a\": {\"args\": []}}}", file: "c.json")
            Issue.record("expected an error")
        } catch {
            #expect(error.message == "c.json:1:22: mcpServers.a: server \"a\" needs a command (stdio) or a url (http)")
        }
        do {
            _ = try Loader.mcpConfig(text: "{\"mcpServers\": {\"a\": {\"command\": \"x\", \"env\": {\"BAD-K\": \"v\"}}}}", file: "c.json")
            Issue.record("expected an error")
        } catch {
            #expect(error.message.hasPrefix("c.json:1:47: mcpServers.a.env.BAD-K: invalid variable name"))
        }
    }
}

@Suite("Agent templates")
struct AgentTemplateTests {
    @Test func sealedDefaultsRefused() {
        let text = "apiVersion: agentic.stigmer.ai/v1\nkind: Agent\nmetadata:\n  name: a\nspec:\n  env_spec:\n    data:\n      T:\n        encrypted_value: v1:x:AAAA\n"
        do {
            _ = try Loader.resources(text: text, file: "a.yaml")
            Issue.record("accepted")
        } catch {
            #expect(error.message.hasPrefix("a.yaml:8:7: spec.env_spec.data.T: encrypted_value belongs in an Environment"))
        }
    }
}
