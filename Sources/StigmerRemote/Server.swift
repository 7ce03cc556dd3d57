import GRPCCore
import NIOCore
import Synchronization
import GRPCNIOTransportHTTP2
import Logging
import PostgresNIO
import ServiceLifecycle
import StigmerCore
import StigmerCrypto
import StigmerStore
import StigmerSystem

/// `serve`: the gRPC service over HTTP/2 (TLS optional), the TTL sweep, graceful
/// shutdown on SIGTERM/SIGINT (in-flight calls finish, then the process exits 0).
public struct ServerConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var tlsCertificate: String?
    public var tlsKey: String?
    public var operatorToken: String
    public var keys: KeyRing
    /// A SQLite path, or `postgres://…`.
    public var store: String
    public var sweepInterval: Duration
    public var defaultTTL: Int64
    /// HOST:PORT for a plaintext listener that serves only the health service (Kubernetes'
    /// grpc probes speak no TLS).
    public var healthHost: String?
    public var healthPort: Int?

    public init(host: String, port: Int, tlsCertificate: String?, tlsKey: String?, operatorToken: String, keys: KeyRing,
                store: String, sweepInterval: Duration, defaultTTL: Int64) {
        self.host = host
        self.port = port
        self.tlsCertificate = tlsCertificate
        self.tlsKey = tlsKey
        self.operatorToken = operatorToken
        self.keys = keys
        self.store = store
        self.sweepInterval = sweepInterval
        self.defaultTTL = defaultTTL
    }
}

/// The stores the companion can open from a location string.
public enum StoreFactory {
    /// Runs `body` with the store open (for PostgreSQL: with its client running and the
    /// schema migrated), then shuts it down. `readers`: read-only SQLite connections beside
    /// the writer (the server's, so fetches do not queue behind one lock).
    public static func with<T: Sendable>(_ location: String, logger: Logger, readers readerCount: Int = 0,
                                         _ body: @Sendable @escaping (any AsyncStore) async throws -> T) async throws(StigmerError) -> T {
        do {
            if StoreLocation.isPostgres(location) {
                // The pool's own chatter (a lease queued before `run()` has started, say) is
                // not the user's business: one line per error is (DESIGN.md §8).
                var poolLogger = logger
                poolLogger.logLevel = max(logger.logLevel, .error)
                let target = try PostgresTarget(location)
                let client = PostgresClient(configuration: target.client, backgroundLogger: poolLogger)
                let store = PostgresStore(client: client, logger: logger, target: target)
                // Not a structured child: when the database is gone, the pool's shutdown
                // can wait on a connection that never answers; the caller must not.
                let pool = Task { await client.run() }
                defer { pool.cancel() }
                try await store.migrate()
                return try await body(store)
            }
            guard let sqlite = try SQLiteStore.open(path: location, create: true) else {
                throw StigmerError(.unavailable, "cannot open the store \(quoted(StoreLocation.redacted(location)))")
            }
            // Readers once the writer has created and migrated the file.
            var readers: [any Store] = []
            for _ in 0..<readerCount {
                if let reader = try SQLiteStore.open(path: location, create: false, readOnly: true) { readers.append(reader) }
            }
            return try await body(LockedStore(sqlite, readers: readers))
        } catch let error as StigmerError {
            throw error
        } catch {
            throw StigmerError(.unavailable, "store error", cause: "\(type(of: error))")
        }
    }
}

public enum Server {
    /// A connection that sends nothing, or nothing more (no handshake, no call), is closed
    /// after 10 s; no more
    /// connections are held than the descriptor limit leaves room for (the rest are closed
    /// as soon as they are accepted), so idle sockets cannot starve every launcher.
    static func transportConfig(logger: Logger) -> HTTP2ServerTransport.Posix.Config {
        var config = HTTP2ServerTransport.Posix.Config.defaults
        config.connection.maxIdleTime = .seconds(10)
        config.connection.maxGraceTime = .seconds(10)
        let limiter = ConnectionLimiter(limit: ConnectionLimiter.limitFromDescriptors(), logger: logger)
        config.channelDebuggingCallbacks.onAcceptTCPConnection = { channel in
            limiter.accept(channel).flatMap {
                // gRPC's idle timer starts only once HTTP/2 is up: a socket that never says
                // anything is closed by this one.
                channel.pipeline.addHandler(FirstBytesDeadline(after: .seconds(10)), position: .first)
            }
        }
        return config
    }

    public static func run(_ config: ServerConfiguration, logger: Logger) async throws(StigmerError) {
        // One reader per core: fetches read in parallel, in WAL's consistent snapshots.
        try await StoreFactory.with(config.store, logger: logger, readers: max(2, sysconf(Int32(_SC_NPROCESSORS_ONLN)))) { store in
            let service = ExecutionContextService(store: store, auth: ServerAuth(operatorToken: config.operatorToken),
                                                  keys: config.keys, logger: logger, defaultTTL: config.defaultTTL)
            let security: HTTP2ServerTransport.Posix.TransportSecurity
            if let cert = config.tlsCertificate, let key = config.tlsKey {
                security = .tls(certificateChain: [.file(path: cert, format: .pem)], privateKey: .file(path: key, format: .pem))
            } else {
                security = .plaintext
            }
            let address: GRPCNIOTransportCore.SocketAddress = config.host.contains(":")
                ? .ipv6(host: config.host, port: config.port) : .ipv4(host: config.host, port: config.port)
            let server = GRPCServer(transport: .http2NIOPosix(address: address, transportSecurity: security,
                                                              config: Self.transportConfig(logger: logger)),
                                    services: [service, HealthService(store: store)])
            var services: [any Service] = []
            if let healthHost = config.healthHost, let healthPort = config.healthPort {
                let healthAddress: GRPCNIOTransportCore.SocketAddress = healthHost.contains(":")
                    ? .ipv6(host: healthHost, port: healthPort) : .ipv4(host: healthHost, port: healthPort)
                let health = GRPCServer(transport: .http2NIOPosix(address: healthAddress, transportSecurity: .plaintext,
                                                                  config: Self.transportConfig(logger: logger)),
                                        services: [HealthService(store: store)])
                services.append(HealthServerService(server: health, logger: logger))
            }
            let sweeper = Sweeper(store: store, interval: config.sweepInterval, logger: logger)
            let group = ServiceGroup(services: [sweeper, GRPCServerService(server: server, logger: logger, tls: config.tlsCertificate != nil,
                                                                                    serverKey: Base64.encode(ServerIdentity(config.keys.newest).publicKey))] + services,
                                     gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
            // The transports run on NIO's singleton group; so do the handlers.
            try await withTaskExecutorPreference(EventLoopGroupExecutor.singleton) { try await group.run() }
        }
    }
}

/// The gRPC server as a lifecycle service; announces its address once bound.
struct GRPCServerService<Transport: ServerTransport>: Service {
    let server: GRPCServer<Transport>
    let logger: Logger
    let tls: Bool
    /// The public identity launchers pin (`--server-key`, and inside every execution token).
    let serverKey: String

    func run() async throws {
        try await withTaskCancellationOrGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await server.serve() }
                if let address = try await server.listeningAddress {
                    // One line on stderr, for people and for tests that listen on port 0.
                    let text: String
                    if let v4 = address.ipv4 { text = "\(v4.host):\(v4.port)" }
                    else if let v6 = address.ipv6 { text = "[\(v6.host)]:\(v6.port)" }
                    else { text = "\(address)" }
                    Stderr.line("stigmer-exec: serving on \(tls ? "grpcs" : "grpc")://\(text) with server key \(serverKey)")
                }
            }
        } onCancelOrGracefulShutdown: {
            server.beginGracefulShutdown()
        }
    }
}

/// The gRPC health checking protocol (grpc.health.v1, Check): SERVING while the store
/// answers an indexed read, NOT_SERVING otherwise — what a readiness probe should see.
/// For "" (the server) and the context service; any other name is NOT_FOUND.
struct HealthService: Grpc_Health_V1_Health.SimpleServiceProtocol {
    let store: any AsyncStore
    static let known: Set<String> = ["", "stigmer.exec.v1.ExecutionContextService"]

    func check(request: Grpc_Health_V1_HealthCheckRequest, context: ServerContext) async throws -> Grpc_Health_V1_HealthCheckResponse {
        guard Self.known.contains(request.service) else { throw RPCError(code: .notFound, message: "unknown service") }
        var response = Grpc_Health_V1_HealthCheckResponse()
        do {
            _ = try await store.executionID(forTokenHash: String(repeating: "0", count: 64))
            response.status = .serving
        } catch {
            response.status = .notServing
        }
        return response
    }
}

/// The plaintext health-only listener (`serve --health-listen`).
struct HealthServerService<Transport: ServerTransport>: Service {
    let server: GRPCServer<Transport>
    let logger: Logger

    func run() async throws {
        try await withTaskCancellationOrGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await server.serve() }
                if let address = try await server.listeningAddress {
                    let text = address.ipv4.map { "\($0.host):\($0.port)" } ?? address.ipv6.map { "[\($0.host)]:\($0.port)" } ?? "\(address)"
                    Stderr.line("stigmer-exec: health (grpc.health.v1, plaintext) on grpc://\(text)")
                }
            }
        } onCancelOrGracefulShutdown: {
            server.beginGracefulShutdown()
        }
    }
}

/// Deletes expired contexts every `interval`. Safe to run in several servers sharing a
/// database: each row is deleted by exactly one DELETE.
struct Sweeper: Service {
    let store: any AsyncStore
    let interval: Duration
    let logger: Logger

    func run() async throws {
        while !Task.isShuttingDownGracefully {
            do {
                let count = try await store.deleteExpired(now: Sys.now())
                if count > 0 { logger.info("swept expired contexts", metadata: ["count": "\(count)"]) }
            } catch {
                logger.warning("sweep failed", metadata: ["error": "\(error)"])
            }
            do { try await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) } } catch { return }
        }
    }
}

/// Counts open connections; one past the limit is closed at once.
final class ConnectionLimiter: Sendable {
    let limit: Int
    let open = Atomic<Int>(0)
    let logger: Logger

    init(limit: Int, logger: Logger) {
        self.limit = limit
        self.logger = logger
    }

    /// Room for the store, the listener and the process's own files: a quarter of the
    /// descriptor limit, at least 16, is kept free (and at most 4,096 connections).
    static func limitFromDescriptors() -> Int {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 256 }
        let soft = Int(min(limit.rlim_cur, 1 << 20))
        return max(1, min(4096, soft - max(16, soft / 4)))
    }

    func accept(_ channel: any Channel) -> EventLoopFuture<Void> {
        let now = open.wrappingAdd(1, ordering: .relaxed).newValue
        channel.closeFuture.whenComplete { _ in self.open.wrappingSubtract(1, ordering: .relaxed) }
        guard now <= limit else {
            logger.warning("connection refused: too many open", metadata: ["open": "\(now - 1)", "limit": "\(limit)"])
            return channel.close()
        }
        return channel.eventLoop.makeSucceededVoidFuture()
    }
}

/// Closes a connection that has sent no byte within the deadline; steps aside at the first.
final class FirstBytesDeadline: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    let deadline: TimeAmount
    var timer: Scheduled<Void>?

    init(after deadline: TimeAmount) { self.deadline = deadline }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        timer = context.eventLoop.scheduleTask(in: deadline) { channel.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        timer?.cancel()
        timer = nil
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
