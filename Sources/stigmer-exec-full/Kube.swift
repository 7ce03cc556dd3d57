import ArgumentParser
import NIOCore
import NIOPosix
import StigmerCLI
import StigmerCore
import StigmerEngine
import StigmerKube
import StigmerManifests
import StigmerSystem

#if canImport(Glibc)
import Glibc
#endif

/// What the webhook and `inject` share: where the launcher comes from, the default
/// server, and how images' commands are looked up.
struct InjectionOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The init container's image: it holds the bundle of scripts/k8s-bundle.sh at /stigmer-dist.", valueName: "IMAGE"))
    var image: String

    @Option(help: ArgumentHelp("The server for pods without a stigmer.ai/server annotation (grpc:// or grpcs://).", valueName: "URL"))
    var server: String?

    @Option(name: .customLong("server-ca-configmap"), help: ArgumentHelp("The ConfigMap (in each pod's namespace) with the server's CA, for pods that name none.", valueName: "NAME[/KEY]"))
    var serverCAConfigMap: String?

    @Option(name: .customLong("registry-auth"), help: ArgumentHelp("A docker config.json whose credentials are tried after the pod's imagePullSecrets.", valueName: "FILE"))
    var registryAuth: String?

    @Option(name: .customLong("registry-ca"), help: ArgumentHelp("Also trust this CA (PEM) for registries (repeatable).", valueName: "FILE"))
    var registryCA: [String] = []

    @Option(help: ArgumentHelp("Which image of a multi-platform index to read.", valueName: "OS/ARCH[/VARIANT]"))
    var platform: String = InjectionOptions.hostPlatform

    @Option(name: .customLong("registry-timeout"), help: ArgumentHelp("How long looking up one image may take, all its requests together (keep it under the webhook's timeoutSeconds).", valueName: "DURATION"))
    var registryTimeout: String = "4s"

    static var hostPlatform: String {
        #if arch(arm64)
        "linux/arm64"
        #else
        "linux/amd64"
        #endif
    }

    func injector() throws(StigmerError) -> PodInjector {
        guard ImageReference.parse(image) != nil else { throw .usage("invalid --image \(quoted(image)); expected an image reference such as ghcr.io/you/stigmer-exec:0.2.0") }
        if let server, !(server.hasPrefix("grpc://") || server.hasPrefix("grpcs://")) {
            throw .usage("invalid --server \(quoted(server)); expected grpc://HOST:PORT or grpcs://HOST:PORT")
        }
        var settings = InjectorSettings(image: image, server: server)
        settings.serverCAConfigMap = serverCAConfigMap
        return PodInjector(settings: settings)
    }

    func resolver(group: MultiThreadedEventLoopGroup, cacheTTL: Int64, kube: KubeAPI?) throws(StigmerError) -> ImageResolver {
        let timeout = try DurationText.seconds(registryTimeout)
        let get = try HTTPSGet(group: group, caFiles: registryCA, timeout: .seconds(timeout))
        var fallback: Document?
        if let registryAuth {
            var bytes = try IO.readFile(registryAuth, limit: 1 << 20)
            defer { bytes.wipe() }
            guard let text = String(validating: bytes, as: UTF8.self), let document = try? Loader.documents(text, file: "auth.json").first else {
                throw .data("\(registryAuth): not a docker config.json (JSON with \"auths\"); fix or drop --registry-auth")
            }
            fallback = document
        }
        return ImageResolver(registry: try RegistryClient(get: get, platform: platform, budget: .seconds(timeout)), cache: ImageConfigCache(ttlSeconds: cacheTTL),
                             kube: kube, fallbackAuth: fallback)
    }
}

struct WebhookCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "webhook",
        abstract: "The Kubernetes mutating admission webhook that puts stigmer-exec in front of a pod's command.",
        subcommands: [Serve.self])

    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Answer AdmissionReviews over HTTPS: POST /mutate, GET /healthz, GET /readyz.",
            discussion: """
                A pod opts in with the annotation or label stigmer.ai/inject: "true", and names its \
                execution (stigmer.ai/execution-id) and the Secret holding its execution token \
                (stigmer.ai/token-secret: NAME or NAME/KEY). No value ever enters the pod spec. \
                See deploy/kubernetes/ and the README.
                """)

        @OptionGroup var global: GlobalOptions
        @OptionGroup var injection: InjectionOptions

        @Option(help: ArgumentHelp("Where to listen, HOST:PORT (port 0: any free port; the chosen one is printed).", valueName: "HOST:PORT"))
        var listen: String = "0.0.0.0:8443"
        @Option(name: .customLong("tls-cert"), help: ArgumentHelp("TLS certificate chain (PEM); Kubernetes calls webhooks over HTTPS only.", valueName: "FILE"))
        var tlsCert: String
        @Option(name: .customLong("tls-key"), help: ArgumentHelp("TLS private key (PEM).", valueName: "FILE"))
        var tlsKey: String
        @Option(name: .customLong("cache-ttl"), help: ArgumentHelp("How long an image tag's command is remembered (digests: a day); 0: tags are asked for every time.", valueName: "DURATION"))
        var cacheTTL: String = "5m"
        @Option(name: .customLong("kube-api"), help: ArgumentHelp("The Kubernetes API, for pull Secrets. Default: in-cluster (KUBERNETES_SERVICE_HOST).", valueName: "URL"))
        var kubeAPI: String?
        @Option(name: .customLong("kube-token-file"), help: ArgumentHelp("The API token (with --kube-api). Default: the service account's.", valueName: "FILE"))
        var kubeTokenFile: String = KubeAPI.serviceAccount + "/token"
        @Option(name: .customLong("kube-ca"), help: ArgumentHelp("The API's CA (with --kube-api). Default: the service account's.", valueName: "FILE"))
        var kubeCA: String = KubeAPI.serviceAccount + "/ca.crt"
        @Flag(name: .customLong("no-registry"), help: "Never ask a registry: a container without a command needs the stigmer.ai/command annotation.")
        var noRegistry = false

        func run() async throws {
            let logger = try global.logger()
            let (host, port) = try listenAddress(listen, flag: "--listen")
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let injector = try injection.injector()
            var resolver: ImageResolver?
            if !noRegistry {
                let timeout = TimeAmount.seconds(try DurationText.seconds(injection.registryTimeout))
                let kube = try kubeAPI.map { url throws(StigmerError) in
                    try KubeAPI(url: url, tokenFile: kubeTokenFile, caFile: kubeCA, group: group, timeout: timeout)
                } ?? KubeAPI.inCluster(group: group, timeout: timeout)
                if kube == nil { logger.notice("no Kubernetes API (not in a cluster, no --kube-api): imagePullSecrets cannot be read") }
                let ttl = cacheTTL == "0" || cacheTTL == "0s" ? 0 : try DurationText.seconds(cacheTTL)
                resolver = try injection.resolver(group: group, cacheTTL: ttl, kube: kube)
            }
            try await WebhookServer.run(host: host.isEmpty ? "0.0.0.0" : host, port: port, certificate: tlsCert, key: tlsKey,
                                        admission: Admission(injector: injector, resolver: resolver), logger: logger, group: group)
        }
    }
}

/// `inject -f`: what the webhook would do, offline, for GitOps and for review (as
/// `istioctl kube-inject` and `linkerd inject`). Pods and the pod templates of
/// Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and CronJobs; anything else
/// is printed as it came. All or nothing: one pod that cannot be injected prints nothing.
struct InjectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inject",
        abstract: "Print manifests with stigmer-exec injected into the pods that opt in (offline `webhook`).",
        discussion: """
            YAML in, YAML out (JSON in, JSON out). A container without a command gets its image's \
            Entrypoint and Cmd from the registry (credentials from --registry-auth), unless \
            --offline; then it needs the stigmer.ai/command annotation.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var injection: InjectionOptions

    @Option(name: .customShort("f"), help: ArgumentHelp("The manifest file, or - for stdin.", valueName: "FILE"))
    var file: String
    @Flag(help: "Never ask a registry.") var offline = false

    func run() async throws {
        _ = try global.logger()
        let text: String
        if file == "-" {
            let bytes = try IO.readAll(0)
            guard let decoded = String(validating: bytes, as: UTF8.self) else { throw StigmerError.data("stdin: not valid UTF-8 text") }
            text = decoded
        } else {
            text = try Loader.text(file)
        }
        let name = file == "-" ? "stdin" : file
        let documents = try Loader.documents(text, file: name)
        let injector = try injection.injector()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let resolver = offline ? nil : try injection.resolver(group: group, cacheTTL: 300, kube: nil)
        var out: [Document] = []
        for (index, document) in documents.enumerated() {
            do throws(InjectionDenied) {
                out.append(try await Self.inject(document, injector: injector, resolver: resolver))
            } catch {
                let kind = PodInjector.text(document["kind"]) ?? "document"
                let objectName = PodInjector.text(document["metadata"]?["name"]) ?? "#\(index + 1)"
                throw StigmerError(.dataError, "\(name): \(kind) \(objectName): \(error.message)")
            }
        }
        let asJSON = file.hasSuffix(".json") || text.utf8.first(where: { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }) == UInt8(ascii: "{")
        let rendered = asJSON
            ? out.map { JSONWriter.write($0) + "\n" }.joined()
            : out.map { YAMLWriter.write($0) }.joined(separator: "---\n")
        try Stdout.write(rendered)
        try? await group.shutdownGracefully()
    }

    /// The path to the pod template in each kind that has one.
    static let templates: [String: [String]] = [
        "Deployment": ["spec", "template"], "StatefulSet": ["spec", "template"], "DaemonSet": ["spec", "template"],
        "ReplicaSet": ["spec", "template"], "ReplicationController": ["spec", "template"], "Job": ["spec", "template"],
        "CronJob": ["spec", "jobTemplate", "spec", "template"],
    ]

    static func inject(_ document: Document, injector: PodInjector, resolver: ImageResolver?) async throws(InjectionDenied) -> Document {
        guard case .mapping = document.kind, let kind = PodInjector.text(document["kind"]) else { return document }
        let path = kind == "Pod" ? [] : templates[kind]
        guard let path else { return document }
        var pod = document
        for key in path {
            guard let next = pod[key] else { return document }
            pod = next
        }
        guard let plan = try injector.plan(pod) else { return document }
        var images: [String: ImageConfig] = [:]
        if !plan.imagesToLookUp.isEmpty {
            guard let resolver else {
                let name = plan.containers.first { $0.needsImageConfig }?.name ?? ""
                throw InjectionDenied("container \(quoted(name)) has no command and --offline forbids asking its registry; set command, or the \(InjectAnnotation.command).\(name) annotation (a JSON list)")
            }
            let namespace = PodInjector.text(document["metadata"]?["namespace"]) ?? "default"
            images = try await resolver.configs(plan.imagesToLookUp, namespace: namespace, pullSecrets: [])
        }
        let injected = try PatchOperation.apply(try injector.patch(plan, images: images), to: pod)
        return setting(document, path[...], injected)
    }

    static func setting(_ document: Document, _ path: ArraySlice<String>, _ value: Document) -> Document {
        guard let key = path.first else { return value }
        return document.setting(key, setting(document[key] ?? .object([]), path.dropFirst(), value))
    }
}
