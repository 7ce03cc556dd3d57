import Crypto
import NIOCore
import StigmerBridge
import StigmerSystem
import StigmerCore
import StigmerCrypto
import StigmerManifests

/// An image reference as Docker and the kubelet read it: `[registry/]repository[:tag][@digest]`,
/// Docker Hub when the first part is not a host (`nginx` is `docker.io/library/nginx:latest`).
public struct ImageReference: Sendable, Hashable, CustomStringConvertible {
    public var registry: String
    public var repository: String
    public var tag: String?
    public var digest: String?

    /// What the registry API calls the reference: the digest when pinned, else the tag.
    public var reference: String { digest ?? tag ?? "latest" }
    /// Where Docker Hub's API answers.
    public var apiHost: String { registry == "docker.io" ? "registry-1.docker.io" : registry }
    public var description: String { "\(registry)/\(repository)" + (tag.map { ":" + $0 } ?? "") + (digest.map { "@" + $0 } ?? "") }

    public static func parse(_ text: String) -> ImageReference? {
        var name = Substring(text)
        var digest: String?
        if let at = name.firstIndex(of: "@") {
            let pinned = String(name[name.index(after: at)...])
            guard pinned.hasPrefix("sha256:"), pinned.utf8.count == 71,
                  pinned.utf8.dropFirst(7).allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) else { return nil }
            digest = pinned
            name = name[..<at]
        }
        var registry = "docker.io"
        if let slash = name.firstIndex(of: "/") {
            let first = name[..<slash]
            if first.contains(".") || first.contains(":") || first == "localhost" {
                registry = String(first)
                name = name[name.index(after: slash)...]
            }
        }
        var tag: String?
        if let colon = name.lastIndex(of: ":"), !name[colon...].contains("/") {
            tag = String(name[name.index(after: colon)...])
            name = name[..<colon]
            guard let t = tag, (1...128).contains(t.utf8.count),
                  t.utf8.allSatisfy({ Self.isWord($0) || $0 == 0x2E || $0 == 0x2D }) else { return nil }
        }
        var repository = String(name)
        if registry == "docker.io" && !repository.contains("/") { repository = "library/" + repository }
        guard !repository.isEmpty, repository.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || [0x2E, 0x5F, 0x2D, 0x2F].contains($0) }),
              !registry.isEmpty, registry.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != 0x2F && $0 != 0x40 }) else { return nil }
        return ImageReference(registry: registry, repository: repository, tag: tag, digest: digest)
    }

    static func isWord(_ b: UInt8) -> Bool {
        (b >= 0x61 && b <= 0x7A) || (b >= 0x41 && b <= 0x5A) || (b >= 0x30 && b <= 0x39) || b == 0x5F
    }
}

/// A username and password for one registry (from a `kubernetes.io/dockerconfigjson`
/// Secret or a docker config.json).
public struct RegistryCredentials: Sendable, Hashable {
    public var username: String
    public var password: String

    var basic: String { "Basic " + Base64.encode(Array("\(username):\(password)".utf8)) }
    /// Tells cache entries apart without keeping the password in the key.
    var fingerprint: String { String(Hex.encode(SHA256.hash(data: Array("\(username)\u{0}\(password)".utf8))).prefix(16)) }

    /// The entry for `registry` in a docker config (`{"auths": {...}}`, or the older
    /// `.dockercfg` form without `auths`), matching keys written as a host, a URL, or
    /// Docker Hub's several names.
    public static func find(in config: Document, registry: String) -> RegistryCredentials? {
        let auths = config["auths"] ?? config
        guard case .mapping(let entries) = auths.kind else { return nil }
        let hub: Set<String> = ["docker.io", "index.docker.io", "registry-1.docker.io"]
        for entry in entries {
            var key = Substring(entry.key)
            for scheme in ["https://", "http://"] where key.hasPrefix(scheme) { key = key.dropFirst(scheme.count) }
            if let slash = key.firstIndex(of: "/") { key = key[..<slash] }
            guard key == registry || (hub.contains(registry) && hub.contains(String(key))) else { continue }
            if case .scalar(let auth, _)? = entry.value["auth"]?.kind, let decoded = Base64.decode(auth),
               let colon = decoded.firstIndex(of: UInt8(ascii: ":")) {
                return RegistryCredentials(username: String(decoding: decoded[..<colon], as: UTF8.self),
                                           password: String(decoding: decoded[(colon + 1)...], as: UTF8.self))
            }
            if case .scalar(let user, _)? = entry.value["username"]?.kind, case .scalar(let pass, _)? = entry.value["password"]?.kind {
                return RegistryCredentials(username: user, password: pass)
            }
        }
        return nil
    }
}

/// Reads an image's Entrypoint and Cmd from its registry over the OCI distribution API:
/// the manifest (an index resolved to the platform), then the config blob, each checked
/// against its digest. Token (Bearer) and Basic challenges are answered with the
/// credentials given; credentials never follow a redirect to another origin.
public struct RegistryClient: Sendable {
    public var get: HTTPSGet
    /// How long one image's lookup may take, all its requests together (the API server
    /// gives the webhook `timeoutSeconds` for the whole review).
    public var budget: TimeAmount
    public var os = "linux"
    public var architecture: String
    public var variant: String?

    public init(get: HTTPSGet, platform: String, budget: TimeAmount) throws(StigmerError) {
        self.get = get
        self.budget = budget
        let parts = platform.split(separator: "/").map(String.init)
        guard (2...3).contains(parts.count), parts.allSatisfy({ !$0.isEmpty }) else {
            throw .usage("invalid --platform \(quoted(platform)); expected OS/ARCH[/VARIANT], e.g. linux/amd64")
        }
        os = parts[0]
        architecture = parts[1]
        variant = parts.count == 3 ? parts[2] : nil
    }

    static let bodyLimit = 512 << 10

    static let manifestTypes = [
        "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.docker.distribution.manifest.v2+json",
    ]

    public func config(_ image: ImageReference, credentials: RegistryCredentials?) async throws(FetchFailure) -> ImageConfig {
        var session = Session(image: image, credentials: credentials, deadline: Sys.monotonicNanoseconds() + budget.nanoseconds)
        let accept = [("Accept", Self.manifestTypes.joined(separator: ", "))]
        var manifest = try await fetch(&session, "/v2/\(image.repository)/manifests/\(image.reference)", accept: accept, digest: image.digest)
        var document = try Self.json(manifest.body, "the manifest of \(image)")
        let mediaType = Self.text(document["mediaType"]) ?? manifest.header("content-type").map { String($0.split(separator: ";")[0]) } ?? ""
        if mediaType.contains("index") || mediaType.contains("manifest.list") || document["manifests"] != nil {
            guard let chosen = choose(document["manifests"]) else {
                throw FetchFailure(message: "\(image) has no \(platform) image (its index lists other platforms)")
            }
            manifest = try await fetch(&session, "/v2/\(image.repository)/manifests/\(chosen)", accept: accept, digest: chosen)
            document = try Self.json(manifest.body, "the \(platform) manifest of \(image)")
        }
        guard let configDigest = Self.text(document["config"]?["digest"]) else {
            throw FetchFailure(message: "the manifest of \(image) names no config")
        }
        let blob = try await fetch(&session, "/v2/\(image.repository)/blobs/\(configDigest)", accept: [], digest: configDigest)
        let config = try Self.json(blob.body, "the config of \(image)")
        return ImageConfig(entrypoint: Self.words(config["config"]?["Entrypoint"]), cmd: Self.words(config["config"]?["Cmd"]))
    }

    var platform: String { "\(os)/\(architecture)" + (variant.map { "/" + $0 } ?? "") }

    /// The digest of the index entry for this platform (an entry without a variant
    /// matches when no variant was asked for, or as the fallback).
    func choose(_ manifests: Document?) -> String? {
        guard let manifests, case .sequence(let items) = manifests.kind else { return nil }
        var fallback: String?
        for item in items {
            guard let p = item["platform"], Self.text(p["os"]) == os, Self.text(p["architecture"]) == architecture,
                  let digest = Self.text(item["digest"]) else { continue }
            let v = Self.text(p["variant"])
            if v == variant { return digest }
            if fallback == nil && (variant == nil || v == nil) { fallback = digest }
        }
        return fallback
    }

    /// One lookup's state: the authorization the registry accepted.
    struct Session {
        var image: ImageReference
        var credentials: RegistryCredentials?
        var deadline: Int64
        var authorization: String?
    }

    /// One GET within what is left of the lookup's budget.
    func get(_ session: Session, _ url: HTTPURL, headers: [(String, String)]) async throws(FetchFailure) -> HTTPSResponse {
        let left = session.deadline - Sys.monotonicNanoseconds()
        guard left > 0 else {
            throw FetchFailure(message: "\(session.image.registry) did not answer within \(budget.nanoseconds / 1_000_000) ms (--registry-timeout)")
        }
        do {
            // Manifests and configs are kilobytes; a parsed document costs many times its
            // text, and a registry is the pod author's choice.
            return try await get(url, headers: headers, limit: Self.bodyLimit, timeout: .nanoseconds(left))
        } catch {
            if Sys.monotonicNanoseconds() >= session.deadline {
                throw FetchFailure(message: "\(session.image.registry) did not answer within \(budget.nanoseconds / 1_000_000) ms (--registry-timeout)")
            }
            throw error
        }
    }

    func fetch(_ session: inout Session, _ target: String, accept: [(String, String)], digest: String?) async throws(FetchFailure) -> HTTPSResponse {
        let origin = HTTPURL(secure: true, host: Self.host(session.image.apiHost), port: Self.port(session.image.apiHost), target: target)
        var (response, answeredBy) = try await follow(session, origin, headers: accept)
        if response.status == 401 {
            // Only the registry's own challenge is answered: a host it redirected to (a
            // CDN, or an open redirect) must not name a realm that gets the credentials.
            guard answeredBy == origin.origin else {
                throw FetchFailure(message: "\(session.image.registry) redirected to \(answeredBy), which asked for credentials; they are only sent where the registry itself asks")
            }
            session.authorization = try await authorize(response.header("www-authenticate") ?? "", session: session)
            (response, answeredBy) = try await follow(session, origin, headers: accept)
        }
        switch response.status {
        case 200: break
        case 401, 403:
            throw FetchFailure(message: session.credentials == nil
                ? "\(session.image.registry) wants credentials for \(session.image.repository): add an imagePullSecret for it (or --registry-auth)"
                : "\(session.image.registry) refused the credentials for \(session.image.repository) (\(response.status))")
        case 404: throw FetchFailure(message: "\(session.image) is not in its registry (404 for \(target.hasPrefix("/v2/\(session.image.repository)/blobs") ? "its config" : "the manifest"))")
        default: throw FetchFailure(message: "\(session.image.registry) answered \(response.status) for \(session.image)")
        }
        if let digest {
            let actual = "sha256:" + Hex.encode(SHA256.hash(data: response.body))
            guard actual == digest else {
                throw FetchFailure(message: "\(session.image.registry) sent content for \(digest) whose digest is \(actual); refusing it")
            }
        }
        return response
    }

    /// GET, following up to 3 redirects (blobs are often served from a CDN); the
    /// Authorization header only to the registry's own origin.
    /// The final answer, and the origin that gave it.
    func follow(_ session: Session, _ start: HTTPURL, headers: [(String, String)]) async throws(FetchFailure) -> (HTTPSResponse, String) {
        var url = start
        for _ in 0..<4 {
            var sent = headers
            if let authorization = session.authorization, url.origin == start.origin { sent.append(("Authorization", authorization)) }
            let response = try await get(session, url, headers: sent)
            guard [301, 302, 303, 307, 308].contains(response.status), let location = response.header("location") else { return (response, url.origin) }
            guard case .success(let next) = url.resolving(location), next.secure else {
                throw FetchFailure(message: "\(url.origin) redirected to a location that is not https")
            }
            url = next
        }
        throw FetchFailure(message: "\(start.origin) redirected too many times")
    }

    /// The Authorization header answering a challenge: Basic with the credentials, or a
    /// Bearer token from the realm (fetched with the credentials, if any).
    func authorize(_ challenge: String, session: Session) async throws(FetchFailure) -> String {
        let scheme = challenge.split(separator: " ", maxSplits: 1).first.map { $0.lowercased() } ?? ""
        if scheme == "basic" {
            guard let credentials = session.credentials else {
                throw FetchFailure(message: "\(session.image.registry) wants credentials for \(session.image.repository): add an imagePullSecret for it (or --registry-auth)")
            }
            return credentials.basic
        }
        guard scheme == "bearer" else {
            throw FetchFailure(message: "\(session.image.registry) asked for an authentication scheme the injector does not speak (\(scheme.isEmpty ? "none given" : scheme))")
        }
        let parameters = Self.challengeParameters(String(challenge.dropFirst(6)))
        guard let realm = parameters["realm"], case .success(let realmURL) = HTTPURL.parse(realm), realmURL.secure else {
            throw FetchFailure(message: "\(session.image.registry)'s token realm is missing or not https; refusing to send credentials there")
        }
        var query: [(name: String, value: [UInt8])] = []
        if let service = parameters["service"] { query.append(("service", Array(service.utf8))) }
        query.append(("scope", Array("repository:\(session.image.repository):pull".utf8)))
        let url = realmURL.appendingQuery(query)
        let response = try await get(session, url, headers: session.credentials.map { [("Authorization", $0.basic)] } ?? [])
        guard response.status == 200 else {
            throw FetchFailure(message: session.credentials == nil
                ? "\(session.image.registry) wants credentials for \(session.image.repository) (its token server \(url.origin) answered \(response.status)): add an imagePullSecret for it (or --registry-auth)"
                : "\(session.image.registry) refused the credentials for \(session.image.repository) (its token server \(url.origin) answered \(response.status)); check the imagePullSecret")
        }
        let answer = try Self.json(response.body, "the token answer of \(url.origin)")
        // Docker's client prefers access_token (OAuth 2) over token when both are given.
        let candidates = [Self.text(answer["access_token"]), Self.text(answer["token"])].compactMap { $0 }.filter { !$0.isEmpty }
        guard let token = candidates.first else {
            throw FetchFailure(message: "\(url.origin) answered without a token")
        }
        return "Bearer " + token
    }

    /// `realm="…",service="…",scope="…"` (quoted strings with backslash escapes).
    package static func challengeParameters(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            while let b = bytes.first, b == 0x20 || b == 0x2C { bytes = bytes.dropFirst() }
            guard let eq = bytes.firstIndex(of: UInt8(ascii: "=")) else { break }
            let key = String(decoding: bytes[..<eq], as: UTF8.self).trimmingSpaces().lowercased()
            bytes = bytes[(eq + 1)...]
            var value: [UInt8] = []
            if bytes.first == UInt8(ascii: "\"") {
                bytes = bytes.dropFirst()
                while let b = bytes.first, b != UInt8(ascii: "\"") {
                    bytes = bytes.dropFirst()
                    if b == UInt8(ascii: "\\"), let next = bytes.first { value.append(next); bytes = bytes.dropFirst() } else { value.append(b) }
                }
                bytes = bytes.dropFirst()
            } else {
                while let b = bytes.first, b != 0x2C { value.append(b); bytes = bytes.dropFirst() }
            }
            out[key] = String(decoding: value, as: UTF8.self).trimmingSpaces()
        }
        return out
    }

    static func host(_ registry: String) -> String {
        if registry.hasPrefix("["), let close = registry.firstIndex(of: "]") { return String(registry[registry.index(after: registry.startIndex)..<close]) }
        if let colon = registry.lastIndex(of: ":"), registry.firstIndex(of: ":") == colon { return String(registry[..<colon]) }
        return registry
    }

    static func port(_ registry: String) -> Int {
        if let colon = registry.lastIndex(of: ":"), let port = Int(registry[registry.index(after: colon)...]), !registry.hasSuffix("]") { return port }
        return 443
    }

    static func json(_ body: [UInt8], _ what: String) throws(FetchFailure) -> Document {
        guard let text = String(validating: body, as: UTF8.self),
              let document = try? Loader.documents(text, file: "response.json").first else {
            throw FetchFailure(message: "\(what) is not JSON")
        }
        return document
    }

    static func text(_ node: Document?) -> String? { PodInjector.text(node) }

    static func words(_ node: Document?) -> [String]? {
        (try? PodInjector.stringList(node, "")) ?? nil
    }
}

/// Answers for images already looked up: a digest-pinned image for a day, a tag for the
/// TTL; per credentials (a pod without access to a private image must not learn its
/// command from another pod's lookup). Concurrent lookups of one key share one request.
public actor ImageConfigCache {
    struct Entry {
        var config: ImageConfig
        var expires: Int64
    }

    var entries: [String: Entry] = [:]
    var inFlight: [String: Task<ImageConfig, Error>] = [:]
    let ttl: Int64
    /// Lookups running at once, across every review: each holds a parsed document.
    let permits = Permits(8)

    public init(ttlSeconds: Int64) { ttl = ttlSeconds }

    public func config(_ image: ImageReference, credentials: RegistryCredentials?, now: Int64,
                       lookup: @escaping @Sendable () async throws(FetchFailure) -> ImageConfig) async throws(FetchFailure) -> ImageConfig {
        let key = "\(image)|\(credentials?.fingerprint ?? "-")"
        if ttl > 0 || image.digest != nil, let entry = entries[key], entry.expires > now {
            return entry.config
        }
        let permits = self.permits
        let task = inFlight[key] ?? Task { () async throws -> ImageConfig in
            await permits.acquire()
            do {
                let config = try await lookup()
                await permits.release()
                return config
            } catch {
                await permits.release()
                throw error
            }
        }
        inFlight[key] = task
        do {
            let config = try await task.value
            inFlight[key] = nil
            if entries.count >= 4096 { entries = entries.filter { $0.value.expires > now } }
            if entries.count < 4096, ttl > 0 || image.digest != nil {
                entries[key] = Entry(config: config, expires: now + (image.digest != nil ? 86_400 : ttl))
            }
            return config
        } catch {
            inFlight[key] = nil
            throw (error as? FetchFailure) ?? FetchFailure(message: "\(error)")
        }
    }
}

/// A counting semaphore for async code.
actor Permits {
    var available: Int
    var waiting: [CheckedContinuation<Void, Never>] = []

    init(_ count: Int) { available = count }

    func acquire() async {
        if available > 0 { available -= 1; return }
        await withCheckedContinuation { waiting.append($0) }
    }

    func release() {
        if waiting.isEmpty { available += 1 } else { waiting.removeFirst().resume() }
    }
}
