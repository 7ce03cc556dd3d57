import Testing
@testable import StigmerCore

@Suite("MCP resolution and wrap")
struct McpTests {
    let context = ["TOKEN": "t0k3n", "ORG": "acme", "DIR": "/srv"]

    @Test func stdioBecomesTemplates() throws {
        let server = McpServerDefinition(name: "gh", transport: .stdio(StdioServer(
            command: "npx", args: ["--org", "${ORG}", "--t=${TOKEN}"],
            env: [ConfigPair("GITHUB_TOKEN", "${TOKEN}"), ConfigPair("LEVEL", "${LEVEL:-info}"), ConfigPair("LIT", "$${x}")],
            workingDir: "${DIR}/work")))
        let c = try McpResolver.child(server, file: "c.json")
        #expect(c.command.segments == [.literal("npx")])
        #expect(c.args.map(\.names) == [[], ["ORG"], ["TOKEN"]])
        #expect(c.args.map(\.field) == ["args[0]", "args[1]", "args[2]"])
        #expect(c.env.map(\.name) == ["GITHUB_TOKEN", "LEVEL", "LIT"])
        #expect(c.env[1].template.segments == [.reference(name: "LEVEL", fallback: "info", column: 1)])
        #expect(c.env[2].template.segments == [.literal("${x}")])
        #expect(c.workingDir?.names == ["DIR"])
        #expect(!c.isDocker)
    }

    @Test func dockerPassesNamesOnly() throws {
        let server = McpServerDefinition(name: "d", transport: .docker(DockerServer(
            image: "img:1", args: ["--x"], env: [ConfigPair("API_KEY", "${TOKEN}")], volumes: ["/a:/b"],
            network: "none", ports: [], containerName: "c")))
        let c = try McpResolver.child(server, file: "c.json")
        #expect(c.command.segments == [.literal("docker")])
        #expect(c.args.map(\.source) == ["run", "-i", "--rm", "--name", "c", "--network", "none", "-v", "/a:/b", "-e", "API_KEY", "img:1", "--x"])
        #expect(c.args.allSatisfy { $0.names.isEmpty })
        #expect(c.env.map(\.name) == ["API_KEY"])
        #expect(c.env[0].template.names == ["TOKEN"])
        #expect(c.isDocker)
    }

    @Test func syntaxProblemsAreLocatedAndAllReported() {
        let server = McpServerDefinition(name: "s", transport: .stdio(StdioServer(
            command: "x", args: ["a", "${A%b}"], env: [ConfigPair("T", "${OPEN")])))
        do {
            _ = try McpResolver.child(server, file: "c.json")
            Issue.record("expected an error")
        } catch {
            #expect(error.exitStatus == 78)
            #expect(error.message.hasPrefix("2 unresolvable placeholders in c.json: server \"s\" args[1] column 1"))
        }
    }

    @Test func httpIsReachedNotStarted() throws {
        let server = McpServerDefinition(name: "h", transport: .http(HttpServer(
            url: "https://x/${ORG}", headers: [ConfigPair("Authorization", "Bearer ${TOKEN}")], queryParams: [ConfigPair("k", "${K:-d}")],
            transportType: "sse")))
        #expect(throws: StigmerError.self) { try McpResolver.child(server, file: "c.json") }
        let remote = try McpResolver.remote(server, file: "c.json")
        #expect(remote.url.names == ["ORG"] && remote.headers.map(\.name) == ["Authorization"] && remote.legacySSE)
        #expect(remote.queryParams.first?.template.names == ["K"])
        let bad = McpServerDefinition(name: "h", transport: .http(HttpServer(url: "https://x/${", headers: [ConfigPair("A", "${1X}")])))
        do {
            _ = try McpResolver.remote(bad, file: "c.json")
            Issue.record("expected an error")
        } catch {
            #expect(error.exitStatus == 78 && error.message.contains("url") && error.message.contains("headers.A"))
        }
    }

    @Test func jsonNumbersAreStrict() {
        for bare in ["0", "-1", "1.5", "1e3", "-0.5E-2", "10", "true", "null"] { #expect(JSONWriter.isBare(bare), "\(bare)") }
        for quoted in ["+1", ".5", "1.", "007", "1e", "-", "0x1F", "1_000", "", "inf", ".nan", "1.e3"] { #expect(!JSONWriter.isBare(quoted), "\(quoted)") }
    }

    @Test func wrapDesktopFormKeepsClientFieldsAndBridgesHttp() {
        let root = Document.object([("mcpServers", .object([
            ("a", .object([("command", .string("npx")), ("args", .list(["x"])), ("env", .object([("K", .string("${TOKEN}"))])),
                           ("disabled", Document(.scalar("false", plain: true)))])),
            ("h", .object([("type", .string("http")), ("url", .string("https://h/${ORG}")),
                           ("headers", .object([("Authorization", .string("Bearer ${TOKEN}"))])), ("disabled", Document(.scalar("true", plain: true)))])),
        ]))])
        let out = JSONWriter.write(McpWrap.wrap(root, form: .mcpServers, launcher: "/bin/stigmer-exec", config: "/c.json", executionID: "e1"))
        #expect(out == """
            {
              "mcpServers": {
                "a": {
                  "command": "/bin/stigmer-exec",
                  "args": [
                    "mcp",
                    "run",
                    "--execution-id",
                    "e1",
                    "--config",
                    "/c.json",
                    "--server",
                    "a"
                  ],
                  "disabled": false
                },
                "h": {
                  "command": "/bin/stigmer-exec",
                  "args": [
                    "mcp",
                    "run",
                    "--execution-id",
                    "e1",
                    "--config",
                    "/c.json",
                    "--server",
                    "h"
                  ],
                  "disabled": true
                }
              }
            }
            """)
    }

    @Test func jsonWriterScalars() {
        #expect(JSONWriter.write(Document(.scalar("30", plain: true))) == "30")
        #expect(JSONWriter.write(Document(.scalar("30", plain: false))) == "\"30\"")
        #expect(JSONWriter.write(Document(.scalar("007", plain: true))) == "\"007\"")
        #expect(JSONWriter.write(Document(.scalar("yes", plain: true))) == "\"yes\"")
        #expect(JSONWriter.write(Document(.scalar("a\"\\\n\u{1}", plain: false))) == "\"a\\\"\\\\\\n\\u0001\"")
    }
}
