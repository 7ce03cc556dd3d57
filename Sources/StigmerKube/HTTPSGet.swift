#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import StigmerBridge
import StigmerCore

/// A response, whole (registries' manifests and configs, and Secrets, are small).
public struct HTTPSResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public func header(_ name: String) -> String? {
        let lower = name.lowercased()
        return headers.first { $0.name.lowercased() == lower }?.value
    }
}

/// Why a request got no answer. Names the origin, never a header.
public struct FetchFailure: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// One GET on one connection, then closed: the injector asks a registry a handful of
/// times per image and caches the answer, so keeping connections buys little and a
/// pool would outlive the credentials it was opened with. HTTPS only; the TLS context
/// decides what is trusted (the system's roots plus any CA given).
public struct HTTPSGet: Sendable {
    let group: MultiThreadedEventLoopGroup
    let tls: NIOSSLContext
    let timeout: TimeAmount

    public init(group: MultiThreadedEventLoopGroup, caFiles: [String], timeout: TimeAmount) throws(StigmerError) {
        self.group = group
        self.timeout = timeout
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.additionalTrustRoots = caFiles.map { .file($0) }
        do {
            tls = try NIOSSLContext(configuration: configuration)
        } catch {
            throw StigmerError(.dataError, "cannot load the CA file(s) \(caFiles.map(quoted).joined(separator: ", ")): give PEM certificates", cause: "\(error)")
        }
    }

    /// GET `url`; the whole exchange (connecting included) within `timeout`, else this
    /// client's own.
    public func callAsFunction(_ url: HTTPURL, headers: [(String, String)] = [], limit: Int = 4 << 20,
                               timeout: TimeAmount? = nil) async throws(FetchFailure) -> HTTPSResponse {
        guard url.secure else { throw FetchFailure(message: "\(url.origin): only https is used") }
        let tls = self.tls, timeout = min(timeout ?? self.timeout, self.timeout)
        let literal = HTTPURL.isIPAddress(url.host)
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(timeout)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
        do {
            let channel = try await bootstrap.connect(host: url.host, port: url.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: literal ? nil : url.host))
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                }
            }
            let raw = channel.channel
            let timer = raw.eventLoop.scheduleTask(in: timeout) { raw.close(promise: nil) }
            defer { timer.cancel() }
            return try await channel.executeThenClose { inbound, outbound in
                var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: url.target)
                head.headers.add(name: "Host", value: url.hostHeader)
                head.headers.add(name: "User-Agent", value: "stigmer-exec-injector")
                head.headers.add(name: "Connection", value: "close")
                for (name, value) in headers { head.headers.add(name: name, value: value) }
                try await outbound.write(.head(head))
                try await outbound.write(.end(nil))
                var response = HTTPSResponse(status: 0, headers: [], body: [])
                for try await part in inbound {
                    switch part {
                    case .head(let h):
                        response.status = Int(h.status.code)
                        response.headers = h.headers.map { ($0.name, $0.value) }
                    case .body(var chunk):
                        guard response.body.count + chunk.readableBytes <= limit else {
                            throw FetchFailure(message: "\(url.origin) sent more than \(limit >> 20) MB")
                        }
                        response.body += chunk.readBytes(length: chunk.readableBytes) ?? []
                    case .end:
                        return response
                    }
                }
                throw FetchFailure(message: "\(url.origin) closed the connection before answering, or did not answer in time")
            }
        } catch let failure as FetchFailure {
            throw failure
        } catch is NIOSSLError {
            throw FetchFailure(message: "TLS with \(url.origin) failed: its certificate is not trusted (a private CA? pass it with --registry-ca)")
        } catch let error as IOError {
            throw FetchFailure(message: "cannot reach \(url.origin): \(String(cString: strerror(error.errnoCode)))")
        } catch {
            throw FetchFailure(message: "cannot reach \(url.origin): \(error)")
        }
    }
}
