#if canImport(Glibc)
import Glibc
#endif
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import StigmerCore

/// Why an exchange with the server failed, in words a user can act on. Never holds a
/// header or query value.
public struct BridgeFailure: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable { case unreachable, tls, status(Int), protocolError, sessionExpired, timeout }

    public var kind: Kind
    public var message: String

    public var description: String { message }
}

/// A response's status line and headers.
struct ResponseHead: Sendable {
    var status: Int
    var reason: String
    var headers: [(name: String, value: String)]

    func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name }?.value
    }

    /// The media type, lower-cased, without parameters.
    var contentType: String {
        (header("content-type") ?? "").split(separator: ";").first.map { $0.trimmingCharacters(in: " ").lowercased() } ?? ""
    }
}

/// A minimal HTTP/1.1 client on NIO for the bridge: keep-alive connections per origin,
/// TLS that verifies by default, redirects followed with the secrets bound to the url's
/// origin, and streamed bodies (SSE).
final class HTTPClient: Sendable {
    struct Request: Sendable {
        var method: HTTPMethod
        var url: HTTPURL
        /// The bridge's own headers (Accept, Mcp-Session-Id, …): sent to any origin.
        var headers: [(String, String)]
        var body: [UInt8]
    }

    let group: MultiThreadedEventLoopGroup
    let spec: BridgeSpec
    let timeout: TimeAmount
    let pool = ConnectionPool()
    let caFile: String?
    private let tlsContext = NIOLockedValueBox<NIOSSLContext?>(nil)

    init(spec: BridgeSpec, caFile: String?, timeout: TimeAmount, group: MultiThreadedEventLoopGroup) throws(StigmerError) {
        self.group = group
        self.spec = spec
        self.timeout = timeout
        self.caFile = caFile
        // Loading the system's roots takes milliseconds: only for an https url, before
        // the client's first message (a bad --http-ca is refused up front).
        if spec.url.secure || caFile != nil { _ = try tls() }
    }

    /// The TLS context, made once: the system's roots plus --http-ca.
    func tls() throws(StigmerError) -> NIOSSLContext {
        let made = tlsContext.withLockedValue { (context: inout NIOSSLContext?) -> Result<NIOSSLContext, StigmerError> in
            if let context { return .success(context) }
            var configuration = TLSConfiguration.makeClientConfiguration()
            if let caFile { configuration.additionalTrustRoots = [.file(caFile)] }
            do {
                let new = try NIOSSLContext(configuration: configuration)
                context = new
                return .success(new)
            } catch {
                return .failure(StigmerError(.dataError, "cannot load the CA file \(quoted(caFile ?? "")) (--http-ca): give a PEM certificate", cause: "\(error)"))
            }
        }
        return try made.get()
    }

    static let maxRedirects = 5

    /// Sends `request`, following redirects, and hands the final response's head to
    /// `onHead` and its body, chunk by chunk, to `onBody`. A secret header or query
    /// parameter goes only to the configured url's origin.
    func send(_ request: Request, onHead: @escaping @Sendable (ResponseHead) async throws -> Void,
              onBody: @escaping @Sendable (ByteBuffer) async throws -> Void) async throws {
        var url = request.url
        var first = true
        for _ in 0...Self.maxRedirects {
            let head = try await hop(request, url: url, withQuery: first, onHead: onHead, onBody: onBody)
            guard let head else { return }
            // A redirect: 307/308 keep the method and body; others only for GET.
            guard [307, 308].contains(head.status) || request.method == .GET else {
                throw BridgeFailure(kind: .protocolError, message: "\(describe(url)) redirected a POST with \(head.status); only 307 and 308 keep a request's body")
            }
            guard let location = head.header("location") else {
                throw BridgeFailure(kind: .protocolError, message: "\(describe(url)) answered \(head.status) without a Location")
            }
            switch url.resolving(location) {
            case .success(let next):
                let sameOrigin = next.origin == spec.url.origin
                first = sameOrigin && !next.target.contains("?")
                url = next
            case .failure(let problem):
                throw BridgeFailure(kind: .protocolError, message: "\(describe(url)) redirected to a Location that is \(problem.description)")
            }
        }
        throw BridgeFailure(kind: .protocolError, message: "\(describe(request.url)) redirected more than \(Self.maxRedirects) times")
    }

    /// scheme://host:port of `url`, unless the configured url holds a secret.
    func describe(_ url: HTTPURL) -> String {
        url.origin == spec.url.origin && spec.urlIsSecret ? "the server" : url.origin
    }

    /// The header fields `url` gets: the bridge's own, then the configured ones — those
    /// from a secret, and credentials of any kind (as curl drops them), only on the
    /// configured url's origin.
    func headerFields(_ request: Request, url: HTTPURL) -> HTTPHeaders {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: url.hostHeader)
        headers.add(name: "User-Agent", value: "stigmer-exec-bridge")
        for (name, value) in request.headers { headers.add(name: name, value: value) }
        let home = url.origin == spec.url.origin
        for field in spec.headers where home || (!field.secret && !Self.credentialHeaders.contains(field.name.lowercased())) {
            headers.replaceOrAdd(name: field.name, value: String(decoding: field.value, as: UTF8.self))
        }
        headers.add(name: "Content-Length", value: "\(request.body.count)")
        return headers
    }

    static let credentialHeaders: Set<String> = ["authorization", "cookie", "proxy-authorization"]

    /// One request on one connection. Returns the head of a redirect (its body dropped),
    /// or nil once the final response has been handed over.
    func hop(_ request: Request, url: HTTPURL, withQuery: Bool, onHead: @escaping @Sendable (ResponseHead) async throws -> Void,
             onBody: @escaping @Sendable (ByteBuffer) async throws -> Void) async throws -> ResponseHead? {
        let target = withQuery ? url.appendingQuery(spec.query.map { ($0.name, $0.value) }).target : url.target
        var requestHead = HTTPRequestHead(version: .http1_1, method: request.method, uri: target)
        requestHead.headers = headerFields(request, url: url)
        let head = requestHead
        let body = request.body
        // A pooled connection the server has closed fails before any answer: then once
        // more on a new one.
        for attempt in 0..<2 {
            let pooled = attempt == 0 ? await pool.take(url.origin) : nil
            let connection: Connection
            if let pooled { connection = pooled } else { connection = try await connect(url) }
            let outcome = try await connection.run(timeout: timeout) { inbound, outbound, answered in
                try await outbound.write(.head(head))
                if !body.isEmpty { try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body)))) }
                try await outbound.write(.end(nil))
                guard case .head(let responseHead)? = try await inbound.next() else {
                    throw BridgeFailure(kind: .unreachable, message: "\(self.describe(url)) closed the connection without an answer")
                }
                answered()
                let response = ResponseHead(status: Int(responseHead.status.code), reason: responseHead.status.reasonPhrase,
                                            headers: responseHead.headers.map { ($0.name, $0.value) })
                let redirect = [301, 302, 303, 307, 308].contains(response.status) && response.header("location") != nil
                if !redirect { try await onHead(response) }
                while let part = try await inbound.next() {
                    switch part {
                    case .body(let chunk): if !redirect { try await onBody(chunk) }
                    case .end: return (redirect ? response : nil, responseHead.isKeepAlive)
                    case .head: throw BridgeFailure(kind: .protocolError, message: "\(self.describe(url)) sent a second response head")
                    }
                }
                throw BridgeFailure(kind: .unreachable, message: "\(self.describe(url)) closed the connection in the middle of an answer")
            }
            switch outcome {
            case .done(let result, let keepAlive):
                if keepAlive { await pool.give(connection, origin: url.origin) } else { connection.close() }
                return result
            case .failedBeforeAnswer(let error) where pooled != nil && attempt == 0:
                _ = error
                continue
            case .timedOut:
                throw BridgeFailure(kind: .timeout, message: "\(describe(url)) did not answer within \(timeout.nanoseconds / 1_000_000_000) s (timeout_seconds)")
            case .failedBeforeAnswer(let error), .failed(let error):
                throw classify(error, url)
            }
        }
        throw BridgeFailure(kind: .unreachable, message: "\(describe(url)) closed the connection without an answer")
    }

    func connect(_ url: HTTPURL) async throws -> Connection {
        let tls = url.secure ? try tls() : nil
        let literal = Self.isIPAddress(url.host)
        let hostname = literal ? nil : url.host
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(min(timeout, .seconds(30)))
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
        let initializer: @Sendable (Channel) -> EventLoopFuture<NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>> = { channel in
            channel.eventLoop.makeCompletedFuture {
                if let tls {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: hostname))
                }
                try channel.pipeline.syncOperations.addHTTPClientHandlers()
                return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
            }
        }
        do {
            // An address needs no resolver (getaddrinfo and NSS, a few milliseconds).
            let channel = literal
                ? try await bootstrap.connect(to: try SocketAddress(ipAddress: url.host, port: url.port), channelInitializer: initializer)
                : try await bootstrap.connect(host: url.host, port: url.port, channelInitializer: initializer)
            return Connection(channel)
        } catch {
            throw classify(error, url)
        }
    }

    static func isIPAddress(_ host: String) -> Bool {
        var v4 = in_addr(), v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    /// NIO's and BoringSSL's errors, as one phrase.
    func classify(_ error: Error, _ url: HTTPURL) -> BridgeFailure {
        if let failure = error as? BridgeFailure { return failure }
        let place = describe(url)
        if let ssl = error as? NIOSSLError {
            return BridgeFailure(kind: .tls, message: "TLS with \(place) failed: \(ssl) (a self-signed or private CA? pass it with --http-ca FILE)")
        }
        if error is NIOSSLExtraError {
            return BridgeFailure(kind: .tls, message: "TLS with \(place) failed: \(error)")
        }
        if error is ChannelError, case .connectTimeout = error as! ChannelError {
            return BridgeFailure(kind: .timeout, message: "cannot reach \(place): no connection within the timeout")
        }
        if let io = error as? IOError {
            return BridgeFailure(kind: .unreachable, message: "cannot reach \(place): \(String(cString: strerror(io.errnoCode)))")
        }
        if error is NIOConnectionError || error is SocketAddressError {
            return BridgeFailure(kind: .unreachable, message: "cannot reach \(place): connection refused or host not found")
        }
        return BridgeFailure(kind: .unreachable, message: "the exchange with \(place) failed: \(error)")
    }
}

/// One keep-alive connection: a task owns the channel (NIO's scoped API) and runs one
/// exchange at a time that callers submit.
final class Connection: Sendable {
    typealias Inbound = NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator
    typealias Outbound = NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>
    typealias Exchange = @Sendable (inout Inbound, Outbound, _ answered: @Sendable () -> Void) async throws -> (ResponseHead?, Bool)

    enum Outcome: Sendable {
        case done(ResponseHead?, keepAlive: Bool)
        case failedBeforeAnswer(Error)
        case failed(Error)
        case timedOut
    }

    struct Job: Sendable {
        var exchange: Exchange
        var reply: CheckedContinuation<Outcome, Never>
    }

    let jobs: AsyncStream<Job>.Continuation
    let channel: Channel

    init(_ async: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>) {
        let (stream, continuation) = AsyncStream<Job>.makeStream()
        jobs = continuation
        channel = async.channel
        Task {
            try? await async.executeThenClose { inbound, outbound in
                var iterator = inbound.makeAsyncIterator()
                for await job in stream {
                    let answered = Flag()
                    do {
                        let (head, keepAlive) = try await job.exchange(&iterator, outbound) { answered.set() }
                        job.reply.resume(returning: .done(head, keepAlive: keepAlive))
                        if !keepAlive { break }
                    } catch {
                        job.reply.resume(returning: answered.isSet ? .failed(error) : .failedBeforeAnswer(error))
                        break
                    }
                }
                continuation.finish()
                // Whoever submits after this gets an immediate failure.
                for await job in stream { job.reply.resume(returning: .failedBeforeAnswer(ChannelError.ioOnClosedChannel)) }
            }
        }
    }

    /// Runs `exchange` on this connection; the answer's head must come within `timeout`.
    func run(timeout: TimeAmount, _ exchange: @escaping Exchange) async throws -> Outcome {
        let channel = self.channel
        let expired = Flag()
        let timer = channel.eventLoop.scheduleTask(in: timeout) { expired.set(); channel.close(promise: nil) }
        let wrapped: Exchange = { inbound, outbound, answered in
            try await exchange(&inbound, outbound) { timer.cancel(); answered() }
        }
        let outcome = await withCheckedContinuation { (reply: CheckedContinuation<Outcome, Never>) in
            if case .terminated = jobs.yield(Job(exchange: wrapped, reply: reply)) {
                reply.resume(returning: .failedBeforeAnswer(ChannelError.ioOnClosedChannel))
            }
        }
        timer.cancel()
        if expired.isSet, case .done = outcome {} else if expired.isSet { return .timedOut }
        return outcome
    }

    func close() {
        jobs.finish()
        channel.close(promise: nil)
    }
}

/// A flag set once, read from another task.
final class Flag: @unchecked Sendable {
    private let lock = NIOLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}

/// Idle keep-alive connections by origin.
actor ConnectionPool {
    var idle: [String: [Connection]] = [:]

    func take(_ origin: String) -> Connection? {
        guard var list = idle[origin], let connection = list.popLast() else { return nil }
        idle[origin] = list
        return connection
    }

    func give(_ connection: Connection, origin: String) {
        idle[origin, default: []].append(connection)
        if idle[origin]!.count > 8 { idle[origin]!.removeFirst().close() }
    }

    func closeAll() {
        for list in idle.values { for c in list { c.close() } }
        idle = [:]
    }
}

extension StringProtocol {
    func trimmingCharacters(in set: Character) -> String {
        var s = Substring(self)
        while s.first == set { s = s.dropFirst() }
        while s.last == set { s = s.dropLast() }
        return String(s)
    }
}
