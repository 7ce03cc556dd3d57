import Foundation
import StigmerCore
import StigmerManifests
import XCTest

@testable import StigmerKube

final class InjectionTests: XCTestCase {
    let injector = PodInjector(settings: InjectorSettings(image: "ghcr.io/stigmer/stigmer-exec:0.2.0", server: "grpcs://stigmer:7443"))

    func pod(_ yaml: String) throws -> Document {
        try XCTUnwrap(Loader.documents(yaml, file: "pod.yaml").first)
    }

    func compact(_ doc: Document?) -> String {
        guard let doc else { return "nil" }
        var out = ""
        JSONWriter.writeCompact(doc, into: &out)
        return out
    }

    static let base = """
        apiVersion: v1
        kind: Pod
        metadata:
          annotations:
            stigmer.ai/inject: "true"
            stigmer.ai/execution-id: exec-1
            stigmer.ai/token-secret: exec-1-token/tok
        spec:
          containers:
          - name: app
            image: registry.example/app:1
            command: ["/app", "$(HOME)"]
            env:
            - {name: LEVEL, value: debug}
          - name: side
            image: nginx
        """

    func testInjectsChosenContainersWhole() throws {
        let source = try pod(Self.base.replacingOccurrences(of: "token/tok", with: "token/tok\n    stigmer.ai/containers: app\n    stigmer.ai/init: \"true\""))
        let plan = try XCTUnwrap(try injector.plan(source))
        XCTAssertEqual(plan.containers.map(\.name), ["app"])
        XCTAssertEqual(plan.imagesToLookUp, [])
        let result = try PatchOperation.apply(try injector.patch(plan, images: [:]), to: source)
        let app = try XCTUnwrap(result["spec"]?["containers"].flatMap { PodInjector.items($0).first })
        XCTAssertEqual(compact(app["command"]), #"["/stigmer/stigmer-exec","run","--execution-id","exec-1","--server","grpcs://stigmer:7443","--init","--"]"#)
        XCTAssertEqual(compact(app["args"]), #"["/app","$(HOME)"]"#, "the pod's own words keep the kubelet's expansion")
        XCTAssertEqual(compact(app["env"]), #"[{"name":"LEVEL","value":"debug"},{"name":"STIGMER_TOKEN","valueFrom":{"secretKeyRef":{"name":"exec-1-token","key":"tok"}}},{"name":"STIGMER_EXEC_FULL","value":"/stigmer/stigmer-exec-full"}]"#)
        XCTAssertEqual(compact(app["volumeMounts"]), #"[{"name":"stigmer-exec","mountPath":"/stigmer","readOnly":true}]"#)
        let side = try XCTUnwrap(result["spec"]?["containers"].flatMap { PodInjector.items($0).last })
        XCTAssertNil(side["command"], "a container not chosen is untouched")
        let initContainers = PodInjector.items(result["spec"]?["initContainers"])
        XCTAssertEqual(initContainers.map { PodInjector.text($0["name"]) }, ["stigmer-exec-install"])
        XCTAssertEqual(PodInjector.text(result["metadata"]?["annotations"]?["stigmer.ai/injected"]), "0.2.0")
        // Idempotent: the injected pod is left alone.
        XCTAssertNil(try injector.plan(result))
    }

    func testImageConfigByKubernetesRules() throws {
        let source = try pod(Self.base.replacingOccurrences(of: "    command: [\"/app\", \"$(HOME)\"]\n", with: ""))
        let plan = try XCTUnwrap(try injector.plan(source))
        XCTAssertEqual(plan.imagesToLookUp, ["registry.example/app:1", "nginx"])
        let images = [
            "registry.example/app:1": ImageConfig(entrypoint: ["/entry"], cmd: ["--x", "$(NOT_OURS)", "echo $$ $HOME"]),
            "nginx": ImageConfig(entrypoint: nil, cmd: ["nginx", "-g", "daemon off;"]),
        ]
        let result = try PatchOperation.apply(try injector.patch(plan, images: images), to: source)
        let containers = PodInjector.items(result["spec"]?["containers"])
        XCTAssertEqual(compact(containers[0]["args"]), #"["/entry","--x","$$(NOT_OURS)","echo $$$$ $$HOME"]"#, "every $ of the image's words is doubled")
        XCTAssertEqual(compact(containers[1]["args"]), #"["nginx","-g","daemon off;"]"#)
        XCTAssertThrowsError(try injector.patch(plan, images: ["nginx": images["nginx"]!]))
        XCTAssertThrowsError(try injector.patch(plan, images: images.merging(["nginx": ImageConfig(entrypoint: [], cmd: nil)]) { $1 })) { error in
            XCTAssertTrue("\(error)".contains("neither Entrypoint nor Cmd"), "\(error)")
        }
    }

    func testDenialsNameWhatToFix() throws {
        let cases: [(String, String, String)] = [
            ("    stigmer.ai/execution-id: exec-1\n", "", "stigmer.ai/execution-id"),
            ("    stigmer.ai/token-secret: exec-1-token/tok\n", "", "stigmer.ai/token-secret"),
            ("exec-1-token/tok", "Bad_Name", "stigmer.ai/token-secret"),
            ("exec-1-token/tok", "exec-1-token/tok\n    stigmer.ai/containers: nope", "\"nope\""),
            ("exec-1-token/tok", "exec-1-token/tok\n    stigmer.ai/init: \"yes\"", "stigmer.ai/init"),
            ("exec-1-token/tok", "exec-1-token/tok\n    stigmer.ai/seccomp: relative.json", "stigmer.ai/seccomp"),
            ("exec-1-token/tok", "exec-1-token/tok\n    stigmer.ai/server: http://x", "stigmer.ai/server"),
            ("{name: LEVEL, value: debug}", "{name: STIGMER_TOKEN, value: x}", "STIGMER_TOKEN"),
            ("exec-1", "-rf", "execution id"),
            ("{name: LEVEL, value: debug}", "{name: STIGMER_EXEC_FULL, value: /tmp/evil}", "STIGMER_EXEC_FULL"),
            ("    env:\n", "    envFrom: [{configMapRef: {name: x}}]\n    env:\n", "envFrom"),
            ("[\"/app\", \"$(HOME)\"]", "[\"/app\", \"$(STIGMER_TOKEN)\"]", "$(STIGMER_"),
            ("  - name: side\n", "  - name: side\n    volumeMounts: [{name: stigmer-exec, mountPath: /x}]\n", "injector's volume"),
        ]
        for (from, to, needle) in cases {
            let source = try pod(Self.base.replacingOccurrences(of: from, with: to))
            XCTAssertThrowsError(try injector.plan(source), needle) { error in
                XCTAssertTrue("\(error)".contains(needle), "\(needle): \(error)")
            }
        }
        var noServer = injector
        noServer.settings.server = nil
        XCTAssertThrowsError(try noServer.plan(try pod(Self.base)))
    }

    func testLookupsPerPodAreBounded() throws {
        var yaml = Self.base.replacingOccurrences(of: "    command: [\"/app\", \"$(HOME)\"]\n", with: "")
        for i in 0..<8 { yaml += "\n  - name: extra\(i)\n    image: registry.example/extra\(i):1" }
        XCTAssertThrowsError(try injector.plan(try pod(yaml))) { XCTAssertTrue("\($0)".contains("at most 8"), "\($0)") }
    }

    func testOwnWordsAreEscaped() throws {
        let source = try pod(Self.base.replacingOccurrences(of: "exec-1-token/tok", with: "exec-1-token/tok\n    stigmer.ai/containers: app")
            .replacingOccurrences(of: "stigmer.ai/execution-id: exec-1", with: "stigmer.ai/execution-id: run$$1"))
        let plan = try XCTUnwrap(try injector.plan(source))
        let result = try PatchOperation.apply(try injector.patch(plan, images: [:]), to: source)
        let app = try XCTUnwrap(PodInjector.items(result["spec"]?["containers"]).first)
        XCTAssertEqual(PodInjector.items(app["command"]).compactMap { PodInjector.text($0) }[3], "run$$$$1")
    }

    func testYAMLReaderRefusesWhatWouldChangeMeaning() throws {
        XCTAssertThrowsError(try Loader.documents(String(repeating: "- ", count: 5_000) + "x", file: "deep.yaml")) {
            XCTAssertTrue("\($0)".contains("levels deep"), "\($0)")
        }
        XCTAssertThrowsError(try Loader.documents("base: &b {a: 1}\nx:\n  <<: *b\n", file: "merge.yaml")) {
            XCTAssertTrue("\($0)".contains("merge keys"), "\($0)")
        }
        let tagged = try XCTUnwrap(Loader.documents("port: !!str 123\n", file: "t.yaml").first)
        XCTAssertEqual(compact(tagged), #"{"port":"123"}"#)
    }

    func testCommandAnnotations() throws {
        let yaml = Self.base.replacingOccurrences(of: "    command: [\"/app\", \"$(HOME)\"]\n", with: "")
            .replacingOccurrences(of: "token/tok", with: "token/tok\n    stigmer.ai/command: '[\"/all\"]'\n    stigmer.ai/command.side: '[\"/side\", \"-v\"]'")
        let source = try pod(yaml)
        let plan = try XCTUnwrap(try injector.plan(source))
        XCTAssertEqual(plan.imagesToLookUp, [])
        let result = try PatchOperation.apply(try injector.patch(plan, images: [:]), to: source)
        let containers = PodInjector.items(result["spec"]?["containers"])
        XCTAssertEqual(compact(containers[0]["args"]), #"["/all"]"#)
        XCTAssertEqual(compact(containers[1]["args"]), #"["/side","-v"]"#)
        let bad = try pod(Self.base.replacingOccurrences(of: "token/tok", with: "token/tok\n    stigmer.ai/command: '/app --x'"))
        XCTAssertThrowsError(try injector.plan(bad))
    }

    func testUntouchedWithoutOptIn() throws {
        XCTAssertNil(try injector.plan(try pod(Self.base.replacingOccurrences(of: "stigmer.ai/inject: \"true\"", with: "stigmer.ai/inject: \"false\""))))
        let labelled = Self.base.replacingOccurrences(of: "    stigmer.ai/inject: \"true\"\n", with: "")
            .replacingOccurrences(of: "metadata:\n", with: "metadata:\n  labels: {stigmer.ai/inject: \"true\"}\n")
        XCTAssertNotNil(try injector.plan(try pod(labelled)))
    }

    func testPatchJSONAndApply() throws {
        let ops: [PatchOperation] = [
            .add("/a~1b", .string("x")), .add("/list/-", .string("3")), .add("/list/0", .string("0")), .replace("/n", Document(.scalar("2", plain: true))), .remove("/gone"),
        ]
        XCTAssertEqual(PatchOperation.json([ops[0]]), #"[{"op":"add","path":"/a~1b","value":"x"}]"#)
        let result = try PatchOperation.apply(ops, to: try pod(#"{"list": ["1", "2"], "n": 1, "gone": true}"#))
        XCTAssertEqual(compact(result), #"{"list":["0","1","2","3"],"n":2,"a/b":"x"}"#)
        XCTAssertThrowsError(try PatchOperation.apply([.replace("/missing", .string("x"))], to: result))
        XCTAssertThrowsError(try PatchOperation.apply([.add("/list/9", .string("x"))], to: result))
        XCTAssertThrowsError(try PatchOperation.apply([.add("/n/x", .string("x"))], to: result))
    }

    func testYAMLWriterReadsBackAsTheSameValue() throws {
        let source = try pod("""
            {"a": "yes", "b": "007", "c": 7, "d": true, "e": null, "f": "/x/y", "g": "a: b", "h": "#c", "i": "",
             "j": [], "k": {}, "l": [["x", 1], {"m": "multi\\nline", "n": [{"o": "p"}]}], "q": "- x", "r": "null",
             "s": "\\u00e9t\\u00e9\\u0085\\u2028\\u007f", "t": " lead", "u": "tab\\there", "v": "1e3", "w": "~", "x": "@x", "y": "on"}
            """)
        let written = YAMLWriter.write(source)
        let back = try XCTUnwrap(Loader.documents(written, file: "out.yaml").first)
        XCTAssertEqual(compact(back), compact(source), written)
    }

    /// Found by fuzzing (Fuzz/yaml): a key longer than YAML's 1024-character limit on
    /// implicit keys was written as one and did not read back; now it is explicit (`? key`).
    func testYAMLWriterWritesLongKeysExplicitly() throws {
        let long = String(repeating: "\u{FFFD}", count: 700) + "\\n" + String(repeating: "k", count: 400)
        for value in [#""v""#, "[1, [2]]", #"{"a": {"b": [3]}}"#, "null"] {
            let source = try pod(#"{"\#(long)": \#(value), "short": [{"\#(long)": 1, "x": 2}]}"#)
            let written = YAMLWriter.write(source)
            XCTAssertTrue(written.contains("? "), written)
            let back = try XCTUnwrap(Loader.documents(written, file: "out.yaml").first)
            XCTAssertEqual(compact(back), compact(source), written)
        }
    }

    func testImageReferences() {
        func parse(_ s: String) -> String? { ImageReference.parse(s).map { "\($0.registry)|\($0.repository)|\($0.reference)" } }
        XCTAssertEqual(parse("nginx"), "docker.io|library/nginx|latest")
        XCTAssertEqual(parse("nginx:1.27"), "docker.io|library/nginx|1.27")
        XCTAssertEqual(parse("bitnami/redis"), "docker.io|bitnami/redis|latest")
        XCTAssertEqual(parse("localhost/app:dev"), "localhost|app|dev")
        XCTAssertEqual(parse("127.0.0.1:5000/team/app:1.0"), "127.0.0.1:5000|team/app|1.0")
        let digest = "sha256:" + String(repeating: "a", count: 64)
        XCTAssertEqual(parse("ghcr.io/o/r:tag@" + digest), "ghcr.io|o/r|" + digest)
        XCTAssertNil(parse("UPPER/case"))
        XCTAssertNil(parse("app@sha256:short"))
        XCTAssertNil(parse("app:bad tag"))
        XCTAssertEqual(ImageReference.parse("nginx")?.apiHost, "registry-1.docker.io")
        XCTAssertEqual(RegistryClient.host("127.0.0.1:5000"), "127.0.0.1")
        XCTAssertEqual(RegistryClient.port("127.0.0.1:5000"), 5000)
        XCTAssertEqual(RegistryClient.port("ghcr.io"), 443)
    }

    func testChallengesAndCredentials() throws {
        let p = RegistryClient.challengeParameters(#"realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#)
        XCTAssertEqual(p["realm"], "https://auth.docker.io/token")
        XCTAssertEqual(p["service"], "registry.docker.io")
        XCTAssertEqual(p["scope"], "repository:library/nginx:pull")
        let config = try pod(#"{"auths": {"https://index.docker.io/v1/": {"auth": "dXNlcjpwYTpzcw=="}, "reg.example:5000": {"username": "u", "password": "p"}}}"#)
        XCTAssertEqual(RegistryCredentials.find(in: config, registry: "docker.io"), RegistryCredentials(username: "user", password: "pa:ss"))
        XCTAssertEqual(RegistryCredentials.find(in: config, registry: "reg.example:5000"), RegistryCredentials(username: "u", password: "p"))
        XCTAssertNil(RegistryCredentials.find(in: config, registry: "reg.example"))
        XCTAssertNotEqual(RegistryCredentials(username: "u", password: "p").fingerprint, RegistryCredentials(username: "u", password: "q").fingerprint)
    }

    func testAdmissionAnswers() async throws {
        let admission = Admission(injector: injector, resolver: nil)
        let podJSON = JSONWriter.write(try pod(Self.base.replacingOccurrences(of: "token/tok", with: "token/tok\n    stigmer.ai/containers: app")))
        let review = #"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-1","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"ns","operation":"CREATE","object":"# + podJSON + "}}"
        let (answer, outcome, _) = await admission.review(Array(review.utf8))
        XCTAssertEqual(outcome, .injected(containers: 1))
        let response = try XCTUnwrap(try Loader.documents(XCTUnwrap(answer), file: "a.json").first?["response"])
        XCTAssertEqual(PodInjector.text(response["uid"]), "u-1")
        XCTAssertEqual(PodInjector.text(response["patchType"]), "JSONPatch")
        let update = review.replacingOccurrences(of: "\"CREATE\"", with: "\"UPDATE\"")
        let (unchanged, untouched, _) = await admission.review(Array(update.utf8))
        XCTAssertEqual(untouched, .untouched)
        XCTAssertFalse(try XCTUnwrap(unchanged).contains("patch"))
        let noCommand = review.replacingOccurrences(of: #""command": ["#, with: #""x-command": ["#)
        let (_, denied, _) = await admission.review(Array(noCommand.utf8))
        guard case .denied(let why) = denied else { return XCTFail("\(denied)") }
        XCTAssertTrue(why.contains("stigmer.ai/command"), why)
        let (none, _, problem) = await admission.review(Array(#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"}"#.utf8))
        XCTAssertNil(none)
        XCTAssertTrue(problem?.contains("admissionReviewVersions") == true)
    }
}
