import Testing
@testable import StigmerCore

@Suite("Merge")
struct MergeTests {
    func spec(_ entries: [(String, String?, Bool)]) -> EnvironmentSpec {
        var data = Variables<EnvironmentValue>()
        for (name, value, secret) in entries {
            data[name] = EnvironmentValue(content: value.map { .plain($0) }, isSecret: secret)
        }
        return EnvironmentSpec(data: data)
    }

    @Test func layersInOrderWithProvenance() throws {
        var runtime = RuntimeLayer()
        runtime.set("LOG", "debug", secret: false)
        let merged = try Merge.merge(MergeInput(
            template: spec([("LOG", "info", false), ("TOKEN", nil, true), ("ORG", nil, false)]),
            environments: [
                Environment(name: "base", spec: spec([("LOG", "warn", false), ("TIMEOUT", "30s", false)])),
                Environment(name: "prod", spec: spec([("TOKEN", "t", true), ("ORG", "o", false), ("TIMEOUT", "60s", false)])),
            ],
            runtime: runtime.values))
        #expect(merged["LOG"] == ExecutionValue(content: .plain("debug"), isSecret: false, layer: .runtime))
        #expect(merged["TOKEN"] == ExecutionValue(content: .plain("t"), isSecret: true, layer: .environment("prod")))
        #expect(merged["TIMEOUT"]?.layer == .environment("prod"))
        #expect(merged["TIMEOUT"]?.content == .plain("60s"))
        #expect(merged["ORG"]?.isSecret == false)
    }

    @Test func secretNeverDowngraded() throws {
        var runtime = RuntimeLayer()
        runtime.set("TOKEN", "override", secret: false)
        runtime.set("DECLARED", "v", secret: false)
        let merged = try Merge.merge(MergeInput(
            template: spec([("DECLARED", nil, true)]),
            environments: [Environment(name: "e", spec: spec([("TOKEN", "t", true)]))],
            runtime: runtime.values))
        #expect(merged["TOKEN"] == ExecutionValue(content: .plain("override"), isSecret: true, layer: .runtime))
        #expect(merged["DECLARED"]?.isSecret == true)
    }

    @Test func laterLayerReplacesWholeValueButKeepsSecrecy() throws {
        // A non-secret default overridden by a secret: secret. The reverse: still secret.
        let merged = try Merge.merge(MergeInput(
            template: spec([("A", "plain", false), ("B", "hidden", true)]),
            environments: [Environment(name: "e", spec: spec([("A", "s", true), ("B", "p", false)]))]))
        #expect(merged["A"]?.isSecret == true)
        #expect(merged["B"]?.isSecret == true)
        #expect(merged["B"]?.content == .plain("p"))
    }

    @Test func allMissingReportedTogether() {
        var expected = StigmerError.unresolved("missing required variables: A, M, Z; supply them with an environment_ref, --env, --secret or --env-file")
        expected.names = ["A", "M", "Z"]  // for --error-fd's record
        #expect(throws: expected) {
            try Merge.merge(MergeInput(template: spec([("Z", nil, true), ("A", nil, false), ("M", nil, false), ("OK", nil, false)]),
                                       environments: [Environment(name: "e", spec: spec([("OK", "1", false)]))]))
        }
        do {
            _ = try Merge.merge(MergeInput(template: spec([("ONLY", nil, false)])))
            Issue.record("expected an error")
        } catch {
            #expect(error.exitStatus == 78)
            #expect(error.message.contains("ONLY"))
        }
    }

    @Test func runtimeLayerFlagsOverrideFilesAndSecrecySticks() {
        var layer = RuntimeLayer()
        layer.add([EnvFileEntry(name: "A", value: "file", line: 1)], secret: true)
        layer.set("A", "flag", secret: false)
        #expect(layer.values["A"] == EnvironmentValue(content: .plain("flag"), isSecret: true))
    }

    @Test func assignments() throws {
        #expect(try RuntimeLayer.assignment("A=b=c", flag: "--env") == ("A", "b=c"))
        #expect(try RuntimeLayer.assignment("A=", flag: "--env") == ("A", ""))
        #expect(throws: StigmerError.self) { try RuntimeLayer.assignment("A", flag: "--env") }
        #expect(throws: StigmerError.self) { try RuntimeLayer.assignment("1A=x", flag: "--env") }
    }
}
