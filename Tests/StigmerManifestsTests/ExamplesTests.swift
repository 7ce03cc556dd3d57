import Testing
import StigmerCore
@testable import StigmerManifests

/// `../shared/examples` beside the repository (CI places it there).
let examples: String = {
    var path = #filePath
    for _ in 0..<3 { path = String(path[..<path.lastIndex(of: "/")!]) }
    return path + "/../shared/examples"
}()

@Suite("Shared examples")
struct ExamplesTests {
    @Test func environments() throws {
        let base = try Loader.resources(path: examples + "/environment-base.yaml")
        guard case .environment(let env) = base.first else { Issue.record("not an Environment"); return }
        #expect(env.name == "base")
        #expect(env.spec.data.names == ["LOG_LEVEL", "TIMEOUT"])
        #expect(env.spec.data["TIMEOUT"] == EnvironmentValue(content: .plain("30s"), summary: "Per-request timeout"))

        let prod = try Loader.resources(path: examples + "/environment-github-prod.yaml")
        guard case .environment(let p) = prod.first else { Issue.record("not an Environment"); return }
        #expect(p.spec.data["GITHUB_TOKEN"]?.isSecret == true)
        #expect(p.spec.data["GITHUB_ORG"]?.isSecret == false)
    }

    @Test func agent() throws {
        guard case .agent(let agent) = try Loader.resources(path: examples + "/agent-github-reviewer.yaml").first else {
            Issue.record("not an Agent"); return
        }
        #expect(agent.name == "github-reviewer")
        #expect(agent.envSpec.data["LOG_LEVEL"]?.content == .plain("info"))
        #expect(agent.envSpec.data["GITHUB_TOKEN"] == EnvironmentValue(content: nil, isSecret: true,
            summary: "Required; supplied by an environment or at run time"))
        #expect(agent.envSpec.data["GITHUB_ORG"]?.content == nil)
        #expect(agent.mcpServers.map(\.name) == ["github", "notifier", "sandboxed-tools"])
        guard case .stdio(let gh) = agent.mcpServers[0].transport,
              case .http(let notifier) = agent.mcpServers[1].transport,
              case .docker(let docker) = agent.mcpServers[2].transport else { Issue.record("transports"); return }
        #expect(gh.command == "npx")
        #expect(gh.args == ["-y", "@modelcontextprotocol/server-github", "--org", "${GITHUB_ORG}"])
        #expect(gh.env == [ConfigPair("GITHUB_PERSONAL_ACCESS_TOKEN", "${GITHUB_TOKEN}"), ConfigPair("LOG_LEVEL", "${LOG_LEVEL:-info}")])
        #expect(notifier.url == "https://hooks.example.com/mcp?org=${GITHUB_ORG}")
        #expect(notifier.headers == [ConfigPair("Authorization", "Bearer ${SLACK_WEBHOOK}")])
        #expect(notifier.timeoutSeconds == 30)
        #expect(docker.image == "ghcr.io/example/tools-mcp:1.2")
        #expect(docker.env == [ConfigPair("API_KEY", "${GITHUB_TOKEN}")])
    }

    @Test func agentInstance() throws {
        let resources = try Loader.resources(path: examples + "/agentinstance-github-reviewer-prod.yaml")
        #expect(resources == [.agentInstance(AgentInstance(name: "github-reviewer-prod", agentID: "github-reviewer",
                                                           environmentRefs: ["base", "github-prod"]))])
    }

    @Test func claudeDesktopConfig() throws {
        let config = try Loader.mcpConfig(path: examples + "/claude-desktop-mcp.json")
        #expect(config.form == .mcpServers)
        #expect(config.servers.map(\.name) == ["github", "remote-search"])
        guard case .stdio(let gh) = config.servers[0].transport,
              case .http(let search) = config.servers[1].transport else { Issue.record("transports"); return }
        #expect(gh.env.map(\.key) == ["GITHUB_PERSONAL_ACCESS_TOKEN", "PRICE_NOTE", "LOG_LEVEL"])
        #expect(gh.env[1].value == "costs $$5, literal ${ needs $${")
        #expect(search.url == "https://mcp.example.com/search")
        #expect(search.transportType == "http")
        // The example's PRICE_NOTE holds a bare "${ " — by DESIGN.md §4 an unterminated
        // placeholder, located precisely.
        let problems = config.servers[0].placeholderProblems { ["GITHUB_TOKEN": "t"][$0] }
        #expect(problems.map(\.description) == ["server \"github\" env.PRICE_NOTE column 20: unterminated ${ (close it with }, or write $${ for a literal ${)"])
    }

    @Test func agentAsMcpConfig() throws {
        let config = try Loader.mcpConfig(path: examples + "/agent-github-reviewer.yaml")
        #expect(config.form == .stigmer)
        #expect(config.servers.count == 3)
        #expect(config.server(named: "github")?.referencedNames == ["GITHUB_ORG", "GITHUB_TOKEN", "LOG_LEVEL"])
    }

    @Test func runtimeEnv() throws {
        let entries = try Loader.envFile(path: examples + "/runtime.env")
        #expect(entries.map(\.name) == ["LOG_LEVEL", "REGION", "GREETING", "LITERAL", "MULTI", "EMPTY"])
        #expect(entries.map(\.value) == ["debug", "eu-west-1", "hello world", "no $expansion here", "line one\nline two", ""])
        #expect(entries.map(\.line) == [2, 3, 4, 5, 6, 7])
    }
}
