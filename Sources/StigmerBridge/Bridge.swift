#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import StigmerCore
import StigmerSystem
import UnixSignals

/// The stdio bridge to a remote MCP server (DESIGN.md §4, issue 12): newline-delimited
/// JSON-RPC on stdin/stdout, MCP Streamable HTTP (or the legacy HTTP+SSE transport) to
/// the server, with the configured headers and query parameters added to every request.
/// Messages pass through as bytes; the bridge reads only what it must (method, id, the
/// initialize result's protocol version).
public final class Bridge: Sendable {
    public struct Options: Sendable {
        public var server: String
        public var legacySSE: Bool
        public var timeoutSeconds: Int
        public var caFile: String?

        public init(server: String, legacySSE: Bool, timeoutSeconds: Int, caFile: String?) {
            self.server = server
            self.legacySSE = legacySSE
            self.timeoutSeconds = timeoutSeconds
            self.caFile = caFile
        }
    }

    let options: Options
    let spec: BridgeSpec
    let client: HTTPClient
    let log: Logger
    let out = Output()
    let session = Session()
    let inFlight = TaskSet()
    let group: MultiThreadedEventLoopGroup

    public init(options: Options, spec: BridgeSpec, logger: Logger) throws(StigmerError) {
        self.options = options
        self.spec = spec
        log = logger
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        client = try HTTPClient(spec: spec, caFile: options.caFile, timeout: .seconds(Int64(options.timeoutSeconds)), group: group)
    }

    /// Runs until stdin ends or SIGTERM/SIGINT; returns the exit status.
    public func run() async -> Int32 {
        // A client that closed its end of stdout: the write fails (EPIPE) and the session
        // ends cleanly, rather than SIGPIPE killing the bridge before it deletes it.
        signal(SIGPIPE, SIG_IGN)
        let lines = StdinLines.start()
        out.onClosed { lines.stop() }
        let signals = Task {
            for await _ in await UnixSignalsSequence(trapping: .sigterm, .sigint) {
                // The session ends now: what is in flight is cancelled, the DELETE has its
                // own deadline; a second signal kills as it would any process.
                signal(SIGTERM, SIG_DFL)
                signal(SIGINT, SIG_DFL)
                lines.stop()
                self.inFlight.cancelAll()
                return
            }
        }
        if options.legacySSE { session.startLegacyStream(self) }
        for await line in lines.stream {
            let peek = JSONRPCPeek(line)
            if peek?.method == "initialize" { session.remember(initialize: line) }
            if peek?.method == "notifications/initialized" { session.remember(initialized: line) }
            // The server sees messages in the client's order where order matters: nothing
            // goes before the initialize's answer (it carries the session id), and a
            // notification or response is accepted (202) before the next message is sent.
            // A request's answer may take long (a tool call): requests run side by side.
            // The legacy transport's POSTs are all answered at once: all in order.
            let task = inFlight.start { await self.forward(line, peek) }
            if options.legacySSE || peek?.method == "initialize" || peek?.isRequest != true { await task.value }
        }
        // stdin ended (the client closed it) or a signal stopped the reader: the session
        // ends; what is still in flight has no one left to answer.
        signals.cancel()
        inFlight.cancelAll()
        await close()
        // A session that never started ends with the reason's status, as a launch would.
        switch session.initializeFailure?.kind {
        case nil: return 0
        case .status(401)?, .status(403)?: return 77
        case .protocolError?: return 65
        default: return 69
        }
    }

    /// The session ends: Streamable HTTP deletes it on the server (DELETE with its id).
    func close() async {
        session.stopStreams()
        if !options.legacySSE, let id = session.id {
            let request = HTTPClient.Request(method: .DELETE, url: spec.url, headers: [], sessionHeaders: sessionHeaders(id: id), body: [])
            do {
                try await withTimeout(seconds: 5) {
                    try await self.client.send(request, onHead: { head in
                        self.log.debug("session closed", metadata: ["status": "\(head.status)"])
                    }, onBody: { _ in true })
                }
            } catch {
                log.debug("the session could not be closed on the server", metadata: ["error": "\(conceal("\(error)"))"])
            }
        }
        await client.pool.closeAll()
    }

    func sessionHeaders(id: String?) -> [(String, String)] {
        var headers: [(String, String)] = []
        if let id { headers.append(("Mcp-Session-Id", id)) }
        if let version = session.protocolVersion { headers.append(("MCP-Protocol-Version", version)) }
        return headers
    }

    // MARK: client → server

    /// One message of the client, to the server; a failure goes to stderr, and to the
    /// client as a JSON-RPC error when the message was a request.
    func forward(_ line: [UInt8], _ peek: JSONRPCPeek?) async {
        do {
            if options.legacySSE {
                try await postLegacy(line)
            } else {
                try await post(line, peek, retry: true)
            }
            if peek?.method == "initialize" { session.initializeFailure = nil }
        } catch is CancellationError {
        } catch {
            let failure = error as? BridgeFailure ?? BridgeFailure(kind: .protocolError, message: "\(error)")
            if peek?.method == "initialize" { session.initializeFailure = failure }
            report(failure, answering: peek)
        }
    }

    func report(_ failure: BridgeFailure, answering peek: JSONRPCPeek?) {
        let text = conceal(failure.message)
        Stderr.line("stigmer-exec: mcp bridge: server \(options.server): \(text)")
        guard let peek, peek.isRequest, let id = peek.id else { return }
        let error = "{\"jsonrpc\":\"2.0\",\"id\":\(String(decoding: id, as: UTF8.self)),\"error\":{\"code\":-32000,\"message\":\(JSONWriter.quote("stigmer-exec bridge: " + text))}}"
        out.send(Array(error.utf8))
    }

    func conceal(_ text: String) -> String { spec.conceal(text) }
    func serverText(_ raw: [UInt8]) -> String { spec.serverText(raw) }

    struct SessionExpired: Error {}

    /// Streamable HTTP: POST the message; answer with JSON or an SSE stream of messages.
    func post(_ line: [UInt8], _ peek: JSONRPCPeek?, retry: Bool, replay: Bool = false) async throws {
        let initialize = peek?.method == "initialize"
        // While a new session is being set up, wait for it: sent now, this message would
        // carry no session id.
        if !replay { await session.settled() }
        let sessionID = initialize ? nil : session.id
        let headers = [("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream")]
        let sink = ResponseSink(bridge: self, request: peek, mode: replay ? .replay : .post)
        do {
            try await client.send(HTTPClient.Request(method: .POST, url: spec.url, headers: headers, sessionHeaders: sessionHeaders(id: sessionID), body: line),
                                  onHead: { try sink.head($0, sentSession: sessionID != nil) }, onBody: { try sink.body($0) })
            try sink.finish()
        } catch is SessionExpired where retry {
            // The server forgot the session (restarted, expired): a new one, then once more.
            log.info("session expired on the server; initializing a new one")
            try await reinitialize(after: sessionID)
            try await post(line, peek, retry: false)
            return
        } catch is SessionExpired {
            throw BridgeFailure(kind: .sessionExpired, message: "the server answered 404 for the session again after a new initialize; restart the client")
        }
        if peek?.method == "notifications/initialized" && !replay { session.startListening(self) }
    }

    /// Replays the client's initialize (its answer not forwarded) and initialized
    /// notification; once for all requests that found `expired` gone.
    func reinitialize(after expired: String?) async throws {
        try await session.reinitializing(after: expired) {
            guard let initialize = self.session.initializeRequest else {
                throw BridgeFailure(kind: .sessionExpired, message: "the server has no session for this client and it never initialized; restart the client")
            }
            self.session.reset()
            try await self.post(initialize, JSONRPCPeek(initialize), retry: false, replay: true)
            if let initialized = self.session.initializedNotification {
                try await self.post(initialized, JSONRPCPeek(initialized), retry: false, replay: true)
            }
            self.session.startListening(self)
        }
    }

    /// The GET stream for messages the server starts (Streamable HTTP), while the
    /// session lasts; 405 means the server offers none. A stream that ends is opened
    /// again after the server's `retry` (else a second), longer after failures.
    func listen() async {
        var failures = 0
        while !Task.isCancelled, let id = session.id {
            let sink = ResponseSink(bridge: self, request: nil, mode: .stream)
            let request = HTTPClient.Request(method: .GET, url: spec.url, headers: [("Accept", "text/event-stream")],
                                             sessionHeaders: sessionHeaders(id: id) + (session.lastEventID.map { [("Last-Event-ID", $0)] } ?? []), body: [])
            do {
                try await client.send(request, onHead: { try sink.head($0, sentSession: true) }, onBody: { try sink.body($0) })
                try sink.finish()
                failures = sink.delivered > 0 ? 0 : failures + 1
            } catch is CancellationError {
                return
            } catch let failure as BridgeFailure {
                if case .status(405) = failure.kind { log.debug("the server offers no GET stream"); return }
                failures += 1
                log.debug("the GET stream ended", metadata: ["error": "\(conceal(failure.message))"])
            } catch is SessionExpired {
                return  // the next request re-initializes, and listens again
            } catch {
                failures += 1
            }
            if failures > 10 { log.info("the GET stream keeps failing; server-initiated messages may be lost"); return }
            let pause = max(sink.retryMilliseconds ?? 1000, 100) * (1 << min(failures, 4))
            try? await Task.sleep(nanoseconds: UInt64(pause) * 1_000_000)
        }
    }

    // MARK: legacy HTTP+SSE

    /// The legacy transport: POST to the endpoint the stream announced.
    func postLegacy(_ line: [UInt8], to known: HTTPURL? = nil) async throws {
        let endpoint: HTTPURL
        if let known { endpoint = known } else { endpoint = try await session.endpoint(timeoutSeconds: options.timeoutSeconds) }
        let sink = ResponseSink(bridge: self, request: nil, mode: .legacyPost)
        try await client.send(HTTPClient.Request(method: .POST, url: endpoint, headers: [("Content-Type", "application/json")], body: line),
                              onHead: { try sink.head($0, sentSession: false) }, onBody: { try sink.body($0) })
        try sink.finish()
    }

    /// The legacy SSE stream: `endpoint` first, then the server's messages. When it ends
    /// (the server restarted), a new one, and the client's initialize replayed on it once
    /// it announces its endpoint.
    func legacyStream() async {
        var failures = 0
        while !Task.isCancelled {
            let sink = ResponseSink(bridge: self, request: nil, mode: .legacyStream)
            let request = HTTPClient.Request(method: .GET, url: spec.url, headers: [("Accept", "text/event-stream")], body: [])
            do {
                try await client.send(request, onHead: { try sink.head($0, sentSession: false) }, onBody: { try sink.body($0) })
                try sink.finish()
                failures = sink.delivered > 0 ? 0 : failures + 1
            } catch is CancellationError {
                return
            } catch let failure as BridgeFailure {
                failures += 1
                session.endpointFailed(failure)
                if failures == 1 || failures % 10 == 0 { Stderr.line("stigmer-exec: mcp bridge: server \(options.server): \(conceal(failure.message))") }
            } catch {
                failures += 1
            }
            session.clearEndpoint()
            let pause = max(sink.retryMilliseconds ?? 1000, 100) * (1 << min(failures, 4))
            try? await Task.sleep(nanoseconds: UInt64(pause) * 1_000_000)
        }
    }

    /// Replays the client's initialize and initialized on a new stream's `endpoint`,
    /// before any message of the client may go there (the server must know the client
    /// first); then the endpoint is open to them.
    func replayLegacy(to endpoint: HTTPURL) async {
        if let initialize = session.initializeRequest {
            do {
                try await postLegacy(Self.replacingID(initialize, with: session.nextReplayID()), to: endpoint)
                if let initialized = session.initializedNotification { try await postLegacy(initialized, to: endpoint) }
            } catch {
                log.debug("replaying initialize failed", metadata: ["error": "\(conceal("\(error)"))"])
            }
        }
        session.publish(endpoint)
    }

    /// `message` with its id replaced (a replayed initialize answered to the bridge only).
    static func replacingID(_ message: [UInt8], with id: String) -> [UInt8] {
        var scanner = JSONScanner(message)
        guard let members = scanner.objectMembers(), let span = members.first(where: { $0.key == "id" })?.value else { return message }
        var out = message
        out.replaceSubrange(span, with: Array(JSONWriter.quote(id).utf8))
        return out
    }
}

/// What comes back for one request, handled as it arrives: JSON collected then
/// forwarded, SSE forwarded event by event; errors collected for `finish`. One exchange
/// runs at a time on a connection's task, so its state is never touched concurrently.
final class ResponseSink: @unchecked Sendable {
    enum Mode {
        /// A client message (Streamable HTTP): the answer is the client's.
        case post
        /// A replayed initialize or initialized: its answer is the bridge's alone.
        case replay
        /// The legacy transport's POST: answers come on the stream, the body is ignored.
        case legacyPost
        /// A GET stream of server messages; the legacy one also announces the endpoint.
        case stream, legacyStream
    }

    let bridge: Bridge
    let request: JSONRPCPeek?
    let mode: Mode
    var initialize: Bool { request?.method == "initialize" }
    var head: ResponseHead?
    var failure: BridgeFailure?
    var expired = false
    var json: [UInt8]?
    var sse: SSEParser?
    var errorText: [UInt8] = []
    /// Messages handed to the client (or the bridge) from this answer.
    var delivered = 0
    /// The request's own answer has come (on a POST's stream, the rest is not awaited).
    var answered = false
    /// `retry:` of a stream, for its reconnection.
    var retryMilliseconds: Int? { sse?.retryMilliseconds }

    /// One message, or one answer of any kind, is at most this large: a server cannot
    /// make the bridge hold unbounded memory.
    static let maxMessage = 64 << 20

    init(bridge: Bridge, request: JSONRPCPeek?, mode: Mode) {
        self.bridge = bridge
        self.request = request
        self.mode = mode
    }

    var server: String { bridge.client.describe(bridge.spec.url) }

    func head(_ head: ResponseHead, sentSession: Bool) throws {
        self.head = head
        switch head.status {
        case 200..<300:
            if initialize, let id = head.header("mcp-session-id") { bridge.session.id = id }
            if head.status == 202 || head.status == 204 || mode == .legacyPost { return }
            switch (head.contentType, mode) {
            case ("text/event-stream", _): sse = SSEParser(limit: Self.maxMessage)
            case ("application/json", .post), ("application/json", .replay): json = []
            default:
                failure = BridgeFailure(kind: .protocolError, message: "\(server) answered with Content-Type \(quoted(head.contentType)), not JSON-RPC; is the url an MCP endpoint?")
            }
        case 404 where sentSession:
            expired = true
        case 401, 403:
            let sent = bridge.spec.headers.map(\.name)
            failure = BridgeFailure(kind: .status(head.status), message: "\(server) refused the request: \(head.status) \(head.reason); sent headers: \(sent.isEmpty ? "none" : sent.joined(separator: ", ")) (check their values in the context)")
        default:
            failure = BridgeFailure(kind: .status(head.status), message: "\(server) answered \(head.status) \(head.reason)")
        }
    }

    /// Takes a chunk of the body; false once nothing more is wanted from it.
    func body(_ chunk: ByteBuffer) throws -> Bool {
        if json != nil {
            guard json!.count + chunk.readableBytes <= Self.maxMessage else {
                throw BridgeFailure(kind: .protocolError, message: "\(server) sent an answer larger than \(Self.maxMessage >> 20) MiB; not forwarded")
            }
            json! += chunk.readableBytesView
        } else if sse != nil {
            for event in sse!.feed(chunk.readableBytesView) { deliver(event) }
            if sse!.overflowed {
                throw BridgeFailure(kind: .protocolError, message: "\(server) sent an event larger than \(Self.maxMessage >> 20) MiB; not forwarded")
            }
            // The initialize's stream has served its purpose once the answer came, and
            // every other message waits for it: a server that keeps it open (the spec
            // says it SHOULD close it) must not stall the session. Other requests read
            // their stream to its end, so that the connection is kept for the next.
            if answered && mode == .post && initialize { return false }
        } else if failure != nil, errorText.count < 4096 {
            errorText += chunk.readableBytesView.prefix(4096 - errorText.count)
        }
        return true
    }

    func deliver(_ event: SSEParser.Event) {
        // Only the GET stream is resumed (Last-Event-ID); a POST's stream ends with its answer.
        if mode == .stream, let id = event.id { bridge.session.lastEventID = id }
        switch event.type {
        case "endpoint" where mode == .legacyStream:
            delivered += 1
            bridge.session.announce(endpoint: String(decoding: event.data, as: UTF8.self), bridge: bridge)
        case "message":
            forward(event.data)
        default:
            break
        }
    }

    func forward(_ message: [UInt8]) {
        // A JSON text holds raw CR/LF only as whitespace: dropped, it is one line.
        let line = message.filter { $0 != 0x0A && $0 != 0x0D }
        guard !line.isEmpty else { return }
        delivered += 1
        let peek = JSONRPCPeek(line)
        if let peek, peek.method == nil, let id = peek.id, id == request?.id { answered = true }
        if initialize, let version = peek?.protocolVersion { bridge.session.protocolVersion = version }
        if let id = peek?.id, bridge.session.isReplayID(id) { return }
        if mode == .replay { return }
        bridge.out.send(line)
    }

    func finish() throws {
        if expired { throw Bridge.SessionExpired() }
        if var failure {
            if case .status(let code) = failure.kind, code != 401 && code != 403 {
                let text = bridge.serverText(errorText)
                if !text.isEmpty { failure.message += ": " + text }
            }
            throw failure
        }
        if let json {
            forward(json)
        }
        // A request must be answered: a stream that ended without its answer, or a 202,
        // would leave the client waiting for ever.
        if mode == .post, let request, request.isRequest, !answered, head.map({ (200..<300).contains($0.status) }) == true {
            if json != nil && delivered > 0 { return }  // a batch's array: passed through whole
            throw BridgeFailure(kind: .protocolError, message: head?.status == 202 || head?.status == 204
                ? "\(server) accepted a request (\(head?.status ?? 0)) without answering it"
                : "\(server) ended its answer's stream before answering the request; try again")
        }
    }
}

/// The session's state, shared by the tasks of the bridge.
final class Session: @unchecked Sendable {
    private let lock = NIOLock()
    private var _id: String?
    private var _protocolVersion: String?
    private var _lastEventID: String?
    private var _initialize: [UInt8]?
    private var _initialized: [UInt8]?
    private var listener: Task<Void, Never>?
    private var legacy: Task<Void, Never>?
    private var generation = 0
    private var replayIDs: Set<[UInt8]> = []
    private var _endpoint: HTTPURL?
    private var endpointWaiters: [(token: Flag, waiter: CheckedContinuation<HTTPURL, Error>)] = []
    private var endpointError: BridgeFailure?

    var id: String? {
        get { lock.withLock { _id } }
        set { lock.withLock { _id = newValue } }
    }
    var protocolVersion: String? {
        get { lock.withLock { _protocolVersion } }
        set { lock.withLock { _protocolVersion = newValue } }
    }
    var lastEventID: String? {
        get { lock.withLock { _lastEventID } }
        set { lock.withLock { _lastEventID = newValue } }
    }
    private var _initializeFailure: BridgeFailure?
    /// Why the client's last initialize failed, if it did.
    var initializeFailure: BridgeFailure? {
        get { lock.withLock { _initializeFailure } }
        set { lock.withLock { _initializeFailure = newValue } }
    }
    var initializeRequest: [UInt8]? { lock.withLock { _initialize } }
    var initializedNotification: [UInt8]? { lock.withLock { _initialized } }

    func remember(initialize: [UInt8]) { lock.withLock { _initialize = initialize } }
    func remember(initialized: [UInt8]) { lock.withLock { _initialized = initialized } }

    func reset() {
        lock.withLock {
            _id = nil
            _lastEventID = nil
            listener?.cancel()
            listener = nil
        }
    }

    func startListening(_ bridge: Bridge) {
        lock.withLock {
            guard listener == nil else { return }
            listener = Task { await bridge.listen() }
        }
    }

    func startLegacyStream(_ bridge: Bridge) {
        lock.withLock { legacy = Task { await bridge.legacyStream() } }
    }

    func stopStreams() {
        lock.withLock {
            listener?.cancel()
            legacy?.cancel()
            for (_, waiter) in endpointWaiters { waiter.resume(throwing: CancellationError()) }
            endpointWaiters = []
        }
    }

    /// Returns once no new session is being set up.
    func settled() async {
        guard let task = lock.withLock({ reinit?.task }) else { return }
        _ = try? await task.value
    }

    /// Runs `body` once for all callers that saw session `expired` fail; a failed attempt
    /// is not reused, so the next request tries again.
    private var reinit: (expired: String?, task: Task<Void, Error>)?
    func reinitializing(after expired: String?, _ body: @escaping @Sendable () async throws -> Void) async throws {
        let task: Task<Void, Error> = lock.withLock {
            if let reinit, reinit.expired == expired { return reinit.task }
            let t = Task { try await body() }
            reinit = (expired, t)
            return t
        }
        do { try await task.value } catch {
            lock.withLock { if reinit?.task == task { reinit = nil } }
            throw error
        }
    }

    // Legacy transport: the endpoint the stream announced.

    private var announcements = 0

    func announce(endpoint: String, bridge: Bridge) {
        let resolved = bridge.spec.url.resolving(endpoint)
        lock.withLock {
            switch resolved {
            case .success(let url) where url.origin == bridge.spec.url.origin:
                endpointError = nil
                lastTransient = nil
                announcements += 1
                // A new stream after one that ended: the server has forgotten the client;
                // the client's initialize is replayed on it, once, before the endpoint
                // opens to the client's messages.
                if announcements > 1 && _initialize != nil {
                    Task { await bridge.replayLegacy(to: url) }
                } else {
                    publishLocked(url)
                }
            case .success:
                // Messages would carry nothing secret (headers stay on the origin), but a
                // server that sends its clients elsewhere is not followed.
                let failure = BridgeFailure(kind: .protocolError, message: "the server announced a message endpoint on another origin; refusing to post there")
                endpointError = failure
                for (_, waiter) in endpointWaiters { waiter.resume(throwing: failure) }
                endpointWaiters = []
            case .failure(let problem):
                let failure = BridgeFailure(kind: .protocolError, message: "the server announced a message endpoint that is \(problem.description)")
                endpointError = failure
                for (_, waiter) in endpointWaiters { waiter.resume(throwing: failure) }
                endpointWaiters = []
            }
        }
    }

    /// The stream failed. A refusal (401/403, not an MCP endpoint), or any failure before
    /// the server was ever reached, fails the messages waiting for an endpoint now; a
    /// server that was up and is down or slow is waited for, up to the timeout, as the
    /// stream reconnects (restarting, it will be back).
    func endpointFailed(_ failure: BridgeFailure) {
        lock.withLock {
            if announcements > 0 {
                switch failure.kind {
                case .unreachable, .timeout:
                    lastTransient = failure
                    return
                default: break
                }
            }
            endpointError = failure
            for (_, waiter) in endpointWaiters { waiter.resume(throwing: failure) }
            endpointWaiters = []
        }
    }

    func clearEndpoint() { lock.withLock { _endpoint = nil } }

    func publish(_ url: HTTPURL) { lock.withLock { publishLocked(url) } }

    private func publishLocked(_ url: HTTPURL) {
        _endpoint = url
        for (_, waiter) in endpointWaiters { waiter.resume(returning: url) }
        endpointWaiters = []
    }

    private var lastTransient: BridgeFailure?

    func endpoint(timeoutSeconds: Int) async throws -> HTTPURL {
        do {
            return try await waitForEndpoint(timeoutSeconds: timeoutSeconds)
        } catch let failure as BridgeFailure {
            guard case .timeout = failure.kind else { throw failure }
            throw lock.withLock { lastTransient }
                ?? BridgeFailure(kind: .timeout, message: "the server announced no message endpoint within \(timeoutSeconds) s")
        }
    }

    private func waitForEndpoint(timeoutSeconds: Int) async throws -> HTTPURL {
        try await withTimeout(seconds: timeoutSeconds) {
            let token = Flag()
            return try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (waiter: CheckedContinuation<HTTPURL, Error>) in
                    self.lock.withLock {
                        if let endpoint = self._endpoint { waiter.resume(returning: endpoint) }
                        else if let error = self.endpointError { self.endpointError = nil; waiter.resume(throwing: error) }
                        else if token.isSet { waiter.resume(throwing: CancellationError()) }
                        else { self.endpointWaiters.append((token, waiter)) }
                    }
                }
            } onCancel: {
                // The waiter leaves (a timeout, the session's end): resumed here, once.
                self.lock.withLock {
                    token.set()
                    if let i = self.endpointWaiters.firstIndex(where: { $0.token === token }) {
                        self.endpointWaiters.remove(at: i).waiter.resume(throwing: CancellationError())
                    }
                }
            }
        }
    }

    func nextReplayID() -> String {
        lock.withLock {
            generation += 1
            let id = "stigmer-bridge-replay-\(generation)"
            replayIDs.insert(Array(JSONWriter.quote(id).utf8))
            return id
        }
    }

    func isReplayID(_ id: [UInt8]) -> Bool { lock.withLock { replayIDs.contains(id) } }
}

/// Messages to the client, one per line, in the order they are sent. A client that has
/// closed stdout ends the session.
final class Output: Sendable {
    private let lock = NIOLock()
    private let closed = NIOLockedValueBox<(@Sendable () -> Void)?>(nil)

    func onClosed(_ action: @escaping @Sendable () -> Void) { closed.withLockedValue { $0 = action } }

    func send(_ message: [UInt8]) {
        let failed: Bool = lock.withLock {
            var line = message
            line.append(0x0A)
            return line.withUnsafeBytes { (try? IO.writeAll(1, $0)) == nil }
        }
        if failed { closed.withLockedValue { $0 }?() }
    }
}

/// The tasks forwarding messages, so that the end of the session can cancel them.
final class TaskSet: Sendable {
    private struct State {
        var next: UInt64 = 0
        var running: [UInt64: Task<Void, Never>] = [:]
        /// Ended before they were registered.
        var ended: Set<UInt64> = []
    }

    private let state = NIOLockedValueBox(State())

    @discardableResult
    func start(_ body: @escaping @Sendable () async -> Void) -> Task<Void, Never> {
        let key = state.withLockedValue { $0.next += 1; return $0.next }
        let task = Task {
            await body()
            self.state.withLockedValue { if $0.running.removeValue(forKey: key) == nil { $0.ended.insert(key) } }
        }
        state.withLockedValue { if $0.ended.remove(key) == nil { $0.running[key] = task } }
        return task
    }

    func cancelAll() {
        for task in state.withLockedValue({ Array($0.running.values) }) { task.cancel() }
    }
}

/// stdin as lines, read by a thread of its own (stdin may be a pipe, a file or a
/// terminal; NIO reads only some of these).
final class StdinLines: Sendable {
    let stream: AsyncStream<[UInt8]>
    private let continuation: AsyncStream<[UInt8]>.Continuation

    private init() {
        (stream, continuation) = AsyncStream<[UInt8]>.makeStream()
    }

    static func start() -> StdinLines {
        let lines = StdinLines()
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        pool.submit { _ in
            var pending: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = buffer.withUnsafeMutableBytes { Glibc.read(0, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                // Only the new bytes are searched: a long line arriving in pieces is not
                // rescanned from its start each time.
                var from = pending.count
                pending += buffer[..<n]
                var start = 0
                while let newline = pending[from...].firstIndex(of: 0x0A) {
                    let line = Array(pending[start..<newline])
                    if !line.allSatisfy({ $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }) { lines.continuation.yield(line) }
                    start = newline + 1
                    from = start
                }
                pending.removeFirst(start)
            }
            if !pending.isEmpty { lines.continuation.yield(pending) }
            lines.continuation.finish()
        }
        return lines
    }

    func stop() { continuation.finish() }
}

/// `body`, or a timeout failure after `seconds`.
func withTimeout<T: Sendable>(seconds: Int, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(nanoseconds: UInt64(seconds) * 1_000_000_000)
            throw BridgeFailure(kind: .timeout, message: "no answer within \(seconds) s")
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}
