import Testing
@testable import StigmerCore

@Suite("MCP resolution and wrap")
struct McpTests {
    let context = ["TOKEN": "t0k3n", "ORG": "acme", "DIR": "/srv"]

    @Test func stdioResolution() throws {
        let server = McpServerDefinition(name: "gh", transport: .stdio(StdioServer(
            command: "npx", args: ["--org", "${ORG}", "--t=${TOKEN}"],
            env: [ConfigPair("GITHUB_TOKEN", "${TOKEN}"), ConfigPair("LEVEL", "${LEVEL:-info}"), ConfigPair("LIT", "$${x}")],
            workingDir: "${DIR}/work")))
        let r = try McpResolver.resolve(server, lookup: { context[$0] }, isSecret: { $0 == "TOKEN" }).get()
        #expect(r.command == "npx")
        #expect(r.args == ["--org", "acme", "--t=t0k3n"])
        #expect(r.env == [ConfigPair("GITHUB_TOKEN", "t0k3n"), ConfigPair("LEVEL", "info"), ConfigPair("LIT", "${x}")])
        #expect(r.workingDir == "/srv/work")
        #expect(r.secretArgs == [2])
        #expect(!"\(r)".contains("t0k3n"))
    }

    @Test func dockerPassesNamesOnly() throws {
        let server = McpServerDefinition(name: "d", transport: .docker(DockerServer(
            image: "img:1", args: ["--x"], env: [ConfigPair("API_KEY", "${TOKEN}")], volumes: ["/a:/b"],
            network: "none", ports: [], containerName: "c")))
        let r = try McpResolver.resolve(server, lookup: { context[$0] }).get()
        #expect(r.command == "docker")
        #expect(r.args == ["run", "-i", "--rm", "--name", "c", "--network", "none", "-v", "/a:/b", "-e", "API_KEY", "img:1", "--x"])
        #expect(!r.args.contains("t0k3n"))
        #expect(r.env == [ConfigPair("API_KEY", "t0k3n")])
    }

    @Test func problemsAreLocatedAndAllReported() {
        let server = McpServerDefinition(name: "s", transport: .stdio(StdioServer(
            command: "x", args: ["a", "${MISSING}"], env: [ConfigPair("T", "${ALSO_MISSING}")])))
        guard case .failure(let list) = McpResolver.resolve(server, lookup: { context[$0] }) else { Issue.record(); return }
        #expect(list.problems.map(\.field) == ["args[1]", "env.T"])
        let error = McpResolver.error(list.problems, file: "c.json")
        #expect(error.exitStatus == 78)
        #expect(error.message.hasPrefix("2 unresolvable placeholders in c.json: server \"s\" args[1] column 1"))
    }

    @Test func wrapDesktopFormKeepsClientFieldsAndHttp() {
        let root = Document.object([("mcpServers", .object([
            ("a", .object([("command", .string("npx")), ("args", .list(["x"])), ("env", .object([("K", .string("${TOKEN}"))])),
                           ("disabled", Document(.scalar("false", plain: true)))])),
            ("h", .object([("url", .string("https://h/${ORG}"))])),
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
                  "url": "https://h/${ORG}"
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
