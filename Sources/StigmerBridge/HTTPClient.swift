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
        /// The bridge's own headers (Accept, Content-Type): sent to any origin.
        var headers: [(String, String)]
        /// Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID: only to the configured origin
        /// (a session id is a credential of sorts: whoever holds it can speak in it).
        var sessionHeaders: [(String, String)] = []
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
    /// `onHead` and its body, chunk by chunk, to `onBody` (which returns false when it
    /// has what it waited for: the rest is not read). A secret header or query parameter,
    /// and the session's headers, go only to the configured url's origin — and not even
    /// there once a redirect has left it (the way back is a foreign origin's choice).
    func send(_ request: Request, onHead: @escaping @Sendable (ResponseHead) async throws -> Void,
              onBody: @escaping @Sendable (ByteBuffer) async throws -> Bool) async throws {
        var url = request.url
        var trusted = true
        var withQuery = true
        for _ in 0...Self.maxRedirects {
            let head = try await hop(request, url: url, trusted: trusted && url.origin == spec.url.origin, withQuery: withQuery,
                                     onHead: onHead, onBody: onBody)
            guard let head else { return }
            // A redirect: 307/308 keep the method and body; others only for GET.
            guard [307, 308].contains(head.status) || request.method == .GET else {
                throw BridgeFailure(kind: .protocolError, message: "\(describe(url)) redirected a \(request.method) with \(head.status); only 307 and 308 keep a request's body")
            }
            guard let location = head.header("location") else {
                throw BridgeFailure(kind: .protocolError, message: "\(describe(url)) answered \(head.status) without a Location")
            }
            switch url.resolving(location) {
            case .success(let next):
                if next.origin != spec.url.origin { trusted = false }
                // The configured query again only where it went before, and only if the
                // Location did not bring a query of its own.
                withQuery = trusted && !next.target.contains("?")
                url = next
            case .failure(let problem):
                throw BridgeFailure(kind: .protocolError, message: "\(describe(url)) redirected to a Location that is \(problem.description)")
            }
        }
        throw BridgeFailure(kind: .protocolError, message: "\(describe(request.url)) redirected more than \(Self.maxRedirects) times")
    }

    /// scheme://host:port of `url` — "the server" for the configured host when its url
    /// holds a secret (which could be the host).
    func describe(_ url: HTTPURL) -> String {
        spec.urlIsSecret && url.host == spec.url.host ? "the server" : url.origin
    }

    /// The header fields a hop gets: the bridge's own; the session's and the configured
    /// secret ones only when `trusted` (the configured origin, no redirect away from it
    /// on the way); credentials of any kind likewise, as curl drops them.
    func headerFields(_ request: Request, url: HTTPURL, trusted: Bool) -> HTTPHeaders {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: url.hostHeader)
        headers.add(name: "User-Agent", value: "stigmer-exec-bridge")
        for (name, value) in request.headers { headers.add(name: name, value: value) }
        if trusted { for (name, value) in request.sessionHeaders { headers.add(name: name, value: value) } }
        for field in spec.headers where trusted || (!field.secret && !Self.credentialHeaders.contains(field.name.lowercased())) {
            headers.add(name: field.name, value: String(decoding: field.value, as: UTF8.self))
        }
        headers.add(name: "Content-Length", value: "\(request.body.count)")
        return headers
    }

    static let credentialHeaders: Set<String> = ["authorization", "cookie", "proxy-authorization"]

    /// One request on one connection. Returns the head of a redirect (its body dropped),
    /// or nil once the final response has been handed over.
    func hop(_ request: Request, url: HTTPURL, trusted: Bool, withQuery: Bool, onHead: @escaping @Sendable (ResponseHead) async throws -> Void,
             onBody: @escaping @Sendable (ByteBuffer) async throws -> Bool) async throws -> ResponseHead? {
        let target = withQuery ? url.appendingQuery(spec.query.map { ($0.name, $0.value) }).target : url.target
        var requestHead = HTTPRequestHead(version: .http1_1, method: request.method, uri: target)
        requestHead.headers = headerFields(request, url: url, trusted: trusted)
        let head = requestHead
        let body = request.body
        // Only connections to the configured origin are kept (a redirecting server
        // cannot make the bridge hold sockets to origins of its choosing).
        let home = url.origin == spec.url.origin
        // A kept connection may have been closed by the server since: then once more on a
        // new one — but only if the request was not written (a POST is not repeated).
        for attempt in 0..<2 {
            let pooled = attempt == 0 && home ? await pool.take() : nil
            let connection: Connection
            if let pooled { connection = pooled } else { connection = try await connect(url) }
            let outcome = try await connection.run(timeout: timeout) { inbound, outbound, progress in
                try await outbound.write(.head(head))
                if !body.isEmpty { try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body)))) }
                try await outbound.write(.end(nil))
                progress(.written)
                guard case .head(let responseHead)? = try await inbound.next() else {
                    throw BridgeFailure(kind: .unreachable, message: "\(self.describe(url)) closed the connection without an answer")
                }
                let response = ResponseHead(status: Int(responseHead.status.code), reason: responseHead.status.reasonPhrase,
                                            headers: responseHead.headers.map { ($0.name, $0.value) })
                // A stream may last as long as the session; any other answer must come
                // whole within the timeout.
                progress(response.contentType == "text/event-stream" && (200..<300).contains(response.status) ? .streaming : .answered)
                let redirect = [301, 302, 303, 307, 308].contains(response.status) && response.header("location") != nil
                if !redirect { try await onHead(response) }
                while let part = try await inbound.next() {
                    switch part {
                    case .body(let chunk):
                        if !redirect, try await !onBody(chunk) { return (nil, false) }
                    case .end: return (redirect ? response : nil, responseHead.isKeepAlive)
                    case .head: throw BridgeFailure(kind: .protocolError, message: "\(self.describe(url)) sent a second response head")
                    }
                }
                throw BridgeFailure(kind: .unreachable, message: "\(self.describe(url)) closed the connection in the middle of an answer")
            }
            switch outcome {
            case .done(let result, let keepAlive):
                if keepAlive && home { await pool.give(connection) } else { connection.close() }
                return result
            case .failed(let error, let written) where pooled != nil && !written:
                _ = error
                continue
            case .timedOut:
                throw BridgeFailure(kind: .timeout, message: "\(describe(url)) did not answer within \(timeout.nanoseconds / 1_000_000_000) s (timeout_seconds)")
            case .failed(let error, _):
                throw classify(error, url)
            }
        }
        throw BridgeFailure(kind: .unreachable, message: "\(describe(url)) closed the connection without an answer")
    }

    func connect(_ url: HTTPURL) async throws -> Connection {
        let tls = url.secure ? try tls() : nil
        let literal = HTTPURL.isIPAddress(url.host)
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

    /// NIO's and BoringSSL's errors, as one phrase.
    func classify(_ error: Error, _ url: HTTPURL) -> BridgeFailure {
        if let failure = error as? BridgeFailure { return failure }
        let place = describe(url)
        // NIOSSL's descriptions may name the host (a secret, when the url holds one).
        let detail = spec.urlIsSecret ? "" : ": \(error)"
        if error is NIOSSLError {
            return BridgeFailure(kind: .tls, message: "TLS with \(place) failed\(detail) (a self-signed or private CA? pass it with --http-ca FILE)")
        }
        if error is NIOSSLExtraError {
            return BridgeFailure(kind: .tls, message: "TLS with \(place) failed\(detail)")
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
        return BridgeFailure(kind: .unreachable, message: "the exchange with \(place) failed\(detail)")
    }
}

/// One keep-alive connection: a task owns the channel (NIO's scoped API) and runs one
/// exchange at a time that callers submit.
final class Connection: Sendable {
    typealias Inbound = NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator
    typealias Outbound = NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>
    /// How far an exchange got: the request written; the answer's head read (then a
    /// stream runs untimed, anything else within the timeout still).
    enum Progress: Sendable { case written, streaming, answered }
    typealias Exchange = @Sendable (inout Inbound, Outbound, _ progress: @Sendable (Progress) -> Void) async throws -> (ResponseHead?, Bool)

    enum Outcome: Sendable {
        case done(ResponseHead?, keepAlive: Bool)
        case failed(Error, written: Bool)
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
                    let written = Flag()
                    do {
                        let (head, keepAlive) = try await job.exchange(&iterator, outbound) { if $0 == .written { written.set() } }
                        job.reply.resume(returning: .done(head, keepAlive: keepAlive))
                        if !keepAlive { break }
                    } catch {
                        job.reply.resume(returning: .failed(error, written: written.isSet))
                        break
                    }
                }
                continuation.finish()
                // Whoever submits after this gets an immediate failure.
                for await job in stream { job.reply.resume(returning: .failed(ChannelError.ioOnClosedChannel, written: false)) }
            }
        }
    }

    var isActive: Bool { channel.isActive }

    /// Runs `exchange` on this connection. The answer's head must come within `timeout`,
    /// and all of it unless it is a stream; a cancelled caller closes the connection (its
    /// exchange cannot be abandoned half-read on a connection someone else would reuse).
    func run(timeout: TimeAmount, _ exchange: @escaping Exchange) async throws -> Outcome {
        let channel = self.channel
        let expired = Flag()
        let timer = channel.eventLoop.scheduleTask(in: timeout) { expired.set(); channel.close(promise: nil) }
        let wrapped: Exchange = { inbound, outbound, progress in
            try await exchange(&inbound, outbound) { step in
                if step == .streaming { timer.cancel() }
                progress(step)
            }
        }
        let outcome = await withTaskCancellationHandler {
            await withCheckedContinuation { (reply: CheckedContinuation<Outcome, Never>) in
                if case .terminated = jobs.yield(Job(exchange: wrapped, reply: reply)) {
                    reply.resume(returning: .failed(ChannelError.ioOnClosedChannel, written: false))
                }
            }
        } onCancel: {
            channel.close(promise: nil)
        }
        timer.cancel()
        try Task.checkCancellation()
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

/// Idle keep-alive connections to the configured origin, at most 8.
actor ConnectionPool {
    var idle: [Connection] = []

    /// An idle connection the server has not closed meanwhile.
    func take() -> Connection? {
        while let connection = idle.popLast() {
            if connection.isActive { return connection }
            connection.close()
        }
        return nil
    }

    func give(_ connection: Connection) {
        idle.append(connection)
        if idle.count > 8 { idle.removeFirst().close() }
    }

    func closeAll() {
        for c in idle { c.close() }
        idle = []
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
