import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import StigmerCore
import StigmerManifests
import StigmerSystem
import UnixSignals

/// Answers AdmissionReviews (admission.k8s.io/v1): a pod that opts in gets a JSON Patch
/// that injects stigmer-exec, or a denial that says why; everything else is allowed as
/// it is. Decides from the pod alone (and its images' configs), so replicas need no
/// shared state; the review's `dryRun` changes nothing, since admission has no side effects.
public struct Admission: Sendable {
    public var injector: PodInjector
    public var resolver: ImageResolver?

    public init(injector: PodInjector, resolver: ImageResolver?) {
        self.injector = injector
        self.resolver = resolver
    }

    /// What was decided, for the log line (no values: the patch is not logged).
    public enum Outcome: Sendable, Equatable { case untouched, injected(containers: Int), denied(String) }

    /// The AdmissionReview to answer with, or nil (and why) for a body that is not one.
    public func review(_ body: [UInt8]) async -> (response: String?, outcome: Outcome, problem: String?) {
        guard let text = String(validating: body, as: UTF8.self),
              let document = try? Loader.documents(text, file: "review.json").first,
              case .mapping = document.kind else {
            return (nil, .untouched, "the body is not JSON")
        }
        guard PodInjector.text(document["apiVersion"]) == "admission.k8s.io/v1", PodInjector.text(document["kind"]) == "AdmissionReview" else {
            return (nil, .untouched, "not an admission.k8s.io/v1 AdmissionReview (configure admissionReviewVersions: [v1])")
        }
        guard let request = document["request"], let uid = PodInjector.text(request["uid"]) else {
            return (nil, .untouched, "the AdmissionReview has no request.uid")
        }
        guard PodInjector.text(request["resource"]?["resource"]) == "pods", (PodInjector.text(request["subResource"]) ?? "").isEmpty,
              PodInjector.text(request["operation"]) == "CREATE", let pod = request["object"] else {
            return (Self.answer(uid: uid, patch: nil, denial: nil), .untouched, nil)
        }
        let namespace = PodInjector.text(request["namespace"]) ?? PodInjector.text(pod["metadata"]?["namespace"]) ?? "default"
        do throws(InjectionDenied) {
            guard let plan = try injector.plan(pod) else { return (Self.answer(uid: uid, patch: nil, denial: nil), .untouched, nil) }
            var images: [String: ImageConfig] = [:]
            if !plan.imagesToLookUp.isEmpty {
                guard let resolver else {
                    throw InjectionDenied("container \(quoted(plan.containers.first { $0.needsImageConfig }?.name ?? "")) has no command, and registry lookups are off; set the \(InjectAnnotation.command) annotation (a JSON list)")
                }
                images = try await resolver.configs(plan.imagesToLookUp, namespace: namespace, pullSecrets: plan.pullSecrets)
            }
            let ops = try injector.patch(plan, images: images)
            return (Self.answer(uid: uid, patch: PatchOperation.json(ops), denial: nil), .injected(containers: plan.containers.count), nil)
        } catch {
            return (Self.answer(uid: uid, patch: nil, denial: error.message), .denied(error.message), nil)
        }
    }

    static func answer(uid: String, patch: String?, denial: String?) -> String {
        var response: [(String, Document)] = [("uid", .string(uid)), ("allowed", Document(.scalar(denial == nil ? "true" : "false", plain: true)))]
        if let patch {
            response.append(("patchType", .string("JSONPatch")))
            response.append(("patch", .string(Base64.encode(Array(patch.utf8)))))
        }
        if let denial {
            response.append(("status", .object([
                ("code", Document(.scalar("400", plain: true))), ("reason", .string("BadRequest")),
                ("message", .string("stigmer-exec: " + denial)),
            ])))
        }
        var out = ""
        JSONWriter.writeCompact(.object([
            ("apiVersion", .string("admission.k8s.io/v1")), ("kind", .string("AdmissionReview")), ("response", .object(response)),
        ]), into: &out)
        return out
    }
}

/// The serving certificate, read again when its files change: cert-manager (or a Secret
/// update) rotates it under a running webhook, and the API server refuses an expired one.
/// Checked on each new connection (two stat calls); a rotation caught half-written keeps
/// the previous pair until both files load.
final class ServingCertificate: @unchecked Sendable {
    let certificate: String
    let key: String
    let logger: Logger
    private let lock = NIOLock()
    private var context: NIOSSLContext
    private var stamp: [Int64]

    init(certificate: String, key: String, logger: Logger) throws(StigmerError) {
        self.certificate = certificate
        self.key = key
        self.logger = logger
        stamp = Self.stamp(certificate, key)
        do {
            context = try Self.load(certificate, key)
        } catch {
            throw StigmerError(.dataError, "cannot load --tls-cert \(quoted(certificate)) and --tls-key \(quoted(key)): give a PEM certificate chain and its private key", cause: "\(error)")
        }
    }

    static func load(_ certificate: String, _ key: String) throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
        configuration.minimumTLSVersion = .tlsv12
        configuration.applicationProtocols = ["http/1.1"]
        // Closing a connection waits this long for the peer's close_notify (NIO's
        // default: 5 s); an idle API server connection has nothing to say.
        configuration.shutdownTimeout = .milliseconds(500)
        return try NIOSSLContext(configuration: configuration)
    }

    /// Modification time, inode and size of both files (a Secret volume swaps a symlink).
    static func stamp(_ paths: String...) -> [Int64] {
        paths.flatMap { path -> [Int64] in
            guard let st = try? Sys.stat(path) else { return [0, 0, 0, 0] }
            return [Int64(st.st_mtim.tv_sec), Int64(st.st_mtim.tv_nsec), Int64(st.st_ino), Int64(st.st_size)]
        }
    }

    func current() -> NIOSSLContext {
        let now = Self.stamp(certificate, key)
        return lock.withLock {
            guard now != stamp else { return context }
            stamp = now
            do {
                context = try Self.load(certificate, key)
                logger.info("loaded the rotated serving certificate")
            } catch {
                logger.warning("the serving certificate changed but does not load; serving the previous one", metadata: ["error": "\(error)"])
            }
            return context
        }
    }
}

/// The connections being served, so that stopping can close those waiting for a next
/// request (the API server keeps its connections to webhooks open) while those giving
/// an answer finish it and then close.
final class OpenConnections: @unchecked Sendable {
    private let lock = NIOLock()
    private var channels: [ObjectIdentifier: (channel: Channel, busy: Bool)] = [:]
    private var stopping = false

    var isStopping: Bool { lock.withLock { stopping } }

    /// False once stopping (the new connection is to be closed).
    func add(_ channel: Channel) -> Bool {
        lock.withLock {
            guard !stopping, channels.count < WebhookServer.maxConnections else { return false }
            channels[ObjectIdentifier(channel)] = (channel, false)
            return true
        }
    }

    func remove(_ channel: Channel) { lock.withLock { _ = channels.removeValue(forKey: ObjectIdentifier(channel)) } }
    func busy(_ channel: Channel) { lock.withLock { channels[ObjectIdentifier(channel)]?.busy = true } }

    /// Marks the connection as waiting for its next request; false when stopping.
    func idle(_ channel: Channel) -> Bool {
        lock.withLock {
            channels[ObjectIdentifier(channel)]?.busy = false
            return !stopping
        }
    }

    func stop() {
        let idle = lock.withLock { () -> [Channel] in
            stopping = true
            return channels.values.filter { !$0.busy }.map(\.channel)
        }
        for channel in idle { channel.close(promise: nil) }
    }

    func closeAll() {
        for channel in lock.withLock({ channels.values.map(\.channel) }) { channel.close(promise: nil) }
    }
}

/// The webhook's HTTPS server: `POST /mutate` (AdmissionReview), `GET /healthz` and
/// `GET /readyz`. HTTP/1.1 with keep-alive (the API server reuses its connections); TLS
/// only, as Kubernetes requires. SIGTERM stops accepting and lets answers in progress finish.
public enum WebhookServer {
    /// A pod is at most ~1.5 MB (etcd's limit); the review holds it once on CREATE.
    public static let maxBody = 4 << 20
    /// Connections served at once; more are closed at once (the API server pools a few).
    static let maxConnections = 512

    public static func run(host: String, port: Int, certificate: String, key: String, admission: Admission,
                           logger: Logger, group: MultiThreadedEventLoopGroup) async throws {
        let tls = try ServingCertificate(certificate: certificate, key: key, logger: logger)
        let server: NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>
        do {
            server = try await ServerBootstrap(group: group)
                .serverChannelOption(ChannelOptions.backlog, value: 256)
                .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                .bind(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        // Nothing read for a minute (a handshake, a request or the next one
                        // that never comes): closed, so stalled clients cannot pile up.
                        try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: .seconds(60)))
                        try channel.pipeline.syncOperations.addHandler(CloseWhenIdle())
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.current()))
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw StigmerError(.unavailable, "cannot listen on \(host):\(port)", cause: "\(error)")
        }
        let bound = server.channel.localAddress?.port ?? port
        Stderr.line("stigmer-exec: webhook serving on https://\(host.contains(":") ? "[\(host)]" : host):\(bound) (POST /mutate, GET /healthz, GET /readyz)")
        let serverChannel = server.channel
        let connections = OpenConnections()
        let stopper = Task {
            for await _ in await UnixSignalsSequence(trapping: .sigterm, .sigint) {
                logger.info("stopping: no new connections; answers in progress finish, idle connections close")
                serverChannel.close(promise: nil)
                connections.stop()
                // Whatever is still open after the grace period (a client that never
                // finishes its request) is closed too.
                try? await Task.sleep(for: .seconds(10))
                connections.closeAll()
                break
            }
        }
        defer { stopper.cancel() }
        try await server.executeThenClose { inbound in
            await withDiscardingTaskGroup { group in
                do {
                    for try await connection in inbound {
                        group.addTask { await serve(connection, admission: admission, logger: logger, open: connections) }
                    }
                } catch {
                    logger.debug("accept loop ended", metadata: ["error": "\(error)"])
                }
            }
        }
        Stderr.line("stigmer-exec: webhook stopped")
    }

    static func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, admission: Admission, logger: Logger,
                      open: OpenConnections) async {
        let channel = connection.channel
        guard open.add(channel) else { channel.close(promise: nil); return }
        defer { open.remove(channel) }
        try? await connection.executeThenClose { inbound, outbound in
            var head: HTTPRequestHead?
            var body: [UInt8] = []
            var tooLarge = false
            for try await part in inbound {
                switch part {
                case .head(let h):
                    head = h
                    body = []
                    tooLarge = false
                    open.busy(channel)
                case .body(var chunk):
                    if body.count + chunk.readableBytes > maxBody { tooLarge = true; body = [] } else if !tooLarge {
                        body += chunk.readBytes(length: chunk.readableBytes) ?? []
                    }
                case .end:
                    guard let request = head else { return }
                    let started = Sys.monotonicNanoseconds()
                    let (status, type, text) = tooLarge
                        ? (HTTPResponseStatus.payloadTooLarge, "text/plain", "body over \(maxBody >> 20) MB\n")
                        : await route(request, body, admission: admission, logger: logger, started: started)
                    var headers = HTTPHeaders()
                    headers.add(name: "Content-Type", value: type)
                    headers.add(name: "Content-Length", value: "\(text.utf8.count)")
                    // Once stopping, each connection ends after the answer it is giving.
                    let keepAlive = request.isKeepAlive && !tooLarge && !open.isStopping
                    headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
                    try await outbound.write(.head(HTTPResponseHead(version: request.version, status: status, headers: headers)))
                    try await outbound.write(.body(.byteBuffer(ByteBuffer(string: text))))
                    try await outbound.write(.end(nil))
                    if !keepAlive { return }
                    head = nil
                    body = []
                    if !open.idle(channel) { return }
                }
            }
        }
    }

    static func route(_ request: HTTPRequestHead, _ body: [UInt8], admission: Admission, logger: Logger, started: Int64) async -> (HTTPResponseStatus, String, String) {
        let path = request.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? request.uri
        switch (request.method, path) {
        case (.GET, "/healthz"), (.GET, "/readyz"), (.GET, "/livez"):
            return (.ok, "text/plain", "ok\n")
        case (.POST, "/mutate"):
            let (response, outcome, problem) = await admission.review(body)
            let ms = Double(Sys.monotonicNanoseconds() - started) / 1e6
            guard let response else {
                logger.warning("refused a request", metadata: ["problem": "\(problem ?? "")"])
                return (.badRequest, "text/plain", "stigmer-exec webhook: \(problem ?? "bad request")\n")
            }
            switch outcome {
            case .untouched: logger.debug("admitted unchanged", metadata: ["ms": "\(ms)"])
            case .injected(let n): logger.info("injected", metadata: ["containers": "\(n)", "ms": "\(ms)"])
            case .denied(let why): logger.info("denied", metadata: ["why": "\(why)", "ms": "\(ms)"])
            }
            return (.ok, "application/json", response)
        case (_, "/mutate"), (_, "/healthz"), (_, "/readyz"), (_, "/livez"):
            return (.methodNotAllowed, "text/plain", "method not allowed\n")
        default:
            return (.notFound, "text/plain", "not found; the webhook answers POST /mutate\n")
        }
    }
}

/// Closes a connection on the IdleStateHandler's event.
final class CloseWhenIdle: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}
