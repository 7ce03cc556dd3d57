import NIOCore
import NIOPosix
import StigmerBridge
import StigmerCore
import StigmerManifests
import StigmerSystem

/// The Kubernetes API, for one thing: reading the pull Secrets a pod names. In a cluster
/// it is found as every in-cluster client finds it (KUBERNETES_SERVICE_HOST/PORT and the
/// service account's token and CA); the token file is read for each request, since
/// projected tokens are rotated under the process.
public struct KubeAPI: Sendable {
    public var base: HTTPURL
    public var tokenFile: String
    var get: HTTPSGet

    public static let serviceAccount = "/var/run/secrets/kubernetes.io/serviceaccount"

    public init(url: String, tokenFile: String, caFile: String, group: MultiThreadedEventLoopGroup, timeout: TimeAmount) throws(StigmerError) {
        guard case .success(let parsed) = HTTPURL.parse(url), parsed.secure else {
            throw .usage("invalid Kubernetes API url \(quoted(url)); expected https://HOST:PORT")
        }
        base = parsed
        self.tokenFile = tokenFile
        get = try HTTPSGet(group: group, caFiles: [caFile], timeout: timeout)
    }

    /// The in-cluster API, or nil outside a cluster.
    public static func inCluster(group: MultiThreadedEventLoopGroup, timeout: TimeAmount) throws(StigmerError) -> KubeAPI? {
        guard let host = Sys.getenv("KUBERNETES_SERVICE_HOST"), let port = Sys.getenv("KUBERNETES_SERVICE_PORT") else { return nil }
        let bracketed = host.contains(":") ? "[\(host)]" : host
        return try KubeAPI(url: "https://\(bracketed):\(port)", tokenFile: serviceAccount + "/token", caFile: serviceAccount + "/ca.crt",
                           group: group, timeout: timeout)
    }

    /// A Secret's docker config (`.dockerconfigjson` or `.dockercfg`), parsed.
    public func dockerConfig(namespace: String, secret: String) async throws(FetchFailure) -> Document {
        guard PodInjector.isDNSSubdomain(namespace), PodInjector.isDNSSubdomain(secret) else {
            throw FetchFailure(message: "pull Secret \(quoted(secret)) in \(quoted(namespace)) is not a valid name")
        }
        var bytes: [UInt8]
        do { bytes = try IO.readFile(tokenFile, limit: 64 << 10) } catch {
            throw FetchFailure(message: "cannot read the service account token \(quoted(tokenFile)): \(error)")
        }
        let token = String(decoding: bytes, as: UTF8.self).trimmingSpaces().filter { $0 != "\n" && $0 != "\r" }
        bytes.wipe()
        let url = HTTPURL(secure: true, host: base.host, port: base.port, target: "/api/v1/namespaces/\(namespace)/secrets/\(secret)")
        let response = try await get(url, headers: [("Authorization", "Bearer " + token), ("Accept", "application/json")], limit: 1 << 20)
        switch response.status {
        case 200: break
        case 404: throw FetchFailure(message: "pull Secret \(namespace)/\(secret) does not exist")
        case 401, 403: throw FetchFailure(message: "the webhook may not read pull Secret \(namespace)/\(secret) (\(response.status)); grant its service account get on secrets")
        default: throw FetchFailure(message: "the Kubernetes API answered \(response.status) for pull Secret \(namespace)/\(secret)")
        }
        let object = try RegistryClient.json(response.body, "pull Secret \(namespace)/\(secret)")
        for key in [".dockerconfigjson", ".dockercfg"] {
            if let encoded = RegistryClient.text(object["data"]?[key]), let decoded = Base64.decode(encoded) {
                return try RegistryClient.json(decoded, "the \(key) of pull Secret \(namespace)/\(secret)")
            }
        }
        throw FetchFailure(message: "pull Secret \(namespace)/\(secret) holds no .dockerconfigjson")
    }
}

/// Finds the commands of images: the cache, then the registry, with the credentials
/// the pod's pull Secrets give (then --registry-auth's).
public struct ImageResolver: Sendable {
    public var registry: RegistryClient
    public var cache: ImageConfigCache
    public var kube: KubeAPI?
    /// A docker config.json given with --registry-auth.
    public var fallbackAuth: Document?

    public init(registry: RegistryClient, cache: ImageConfigCache, kube: KubeAPI?, fallbackAuth: Document?) {
        self.registry = registry
        self.cache = cache
        self.kube = kube
        self.fallbackAuth = fallbackAuth
    }

    /// The configs of `images`, looked up concurrently; the first failure denies the pod.
    public func configs(_ images: [String], namespace: String, pullSecrets: [String]) async throws(InjectionDenied) -> [String: ImageConfig] {
        guard !images.isEmpty else { return [:] }
        var configsByRegistry: [Document] = []
        var secretProblems: [String] = []
        if let kube, !pullSecrets.isEmpty {
            for secret in pullSecrets {
                do { configsByRegistry.append(try await kube.dockerConfig(namespace: namespace, secret: secret)) } catch {
                    secretProblems.append(error.message)
                }
            }
        }
        if let fallbackAuth { configsByRegistry.append(fallbackAuth) }
        let sources = configsByRegistry
        let problems = secretProblems
        let result = await withTaskGroup(of: (String, Result<ImageConfig, FetchFailure>).self) { group in
            for image in images {
                group.addTask {
                    guard let reference = ImageReference.parse(image) else {
                        return (image, .failure(FetchFailure(message: "\(quoted(image)) is not an image reference")))
                    }
                    let credentials = sources.lazy.compactMap { RegistryCredentials.find(in: $0, registry: reference.registry) }.first
                    do {
                        let config = try await cache.config(reference, credentials: credentials, now: Sys.now()) { () async throws(FetchFailure) -> ImageConfig in
                            try await registry.config(reference, credentials: credentials)
                        }
                        return (image, .success(config))
                    } catch {
                        return (image, .failure(error as? FetchFailure ?? FetchFailure(message: "\(error)")))
                    }
                }
            }
            var out: [(String, Result<ImageConfig, FetchFailure>)] = []
            for await item in group { out.append(item) }
            return out
        }
        var configs: [String: ImageConfig] = [:]
        for image in images {
            guard let (_, outcome) = result.first(where: { $0.0 == image }) else { continue }
            switch outcome {
            case .success(let config): configs[image] = config
            case .failure(let failure):
                let also = problems.isEmpty ? "" : " (\(problems.joined(separator: "; ")))"
                throw InjectionDenied("cannot read the command of image \(quoted(image)): \(failure.message)\(also); or give it with the \(InjectAnnotation.command) annotation (a JSON list)")
            }
        }
        return configs
    }
}
