import GRPCCore
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
    /// schema migrated), then shuts it down.
    public static func with<T: Sendable>(_ location: String, logger: Logger,
                                         _ body: @Sendable @escaping (any AsyncStore) async throws -> T) async throws(StigmerError) -> T {
        do {
            if StoreLocation.isPostgres(location) {
                // The pool's own chatter (a lease queued before `run()` has started, say) is
                // not the user's business: one line per error is (DESIGN.md §8).
                var poolLogger = logger
                poolLogger.logLevel = max(logger.logLevel, .error)
                let client = PostgresClient(configuration: try PostgresStore.configuration(location), backgroundLogger: poolLogger)
                let store = PostgresStore(client: client, logger: logger)
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
            return try await body(LockedStore(sqlite))
        } catch let error as StigmerError {
            throw error
        } catch {
            throw StigmerError(.unavailable, "store error", cause: "\(type(of: error))")
        }
    }
}

public enum Server {
    public static func run(_ config: ServerConfiguration, logger: Logger) async throws(StigmerError) {
        try await StoreFactory.with(config.store, logger: logger) { store in
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
            let server = GRPCServer(transport: .http2NIOPosix(address: address, transportSecurity: security), services: [service])
            let sweeper = Sweeper(store: store, interval: config.sweepInterval, logger: logger)
            let group = ServiceGroup(services: [sweeper, GRPCServerService(server: server, logger: logger, tls: config.tlsCertificate != nil)],
                                     gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
            try await group.run()
        }
    }
}

/// The gRPC server as a lifecycle service; announces its address once bound.
struct GRPCServerService<Transport: ServerTransport>: Service {
    let server: GRPCServer<Transport>
    let logger: Logger
    let tls: Bool

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
                    Stderr.line("stigmer-exec: serving on \(tls ? "grpcs" : "grpc")://\(text)")
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
