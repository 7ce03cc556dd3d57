import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import StigmerCore
import StigmerSystem

/// `grpc://host:port` (plaintext) or `grpcs://host:port` (TLS).
public struct ServerAddress: Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var tls: Bool

    /// Like `parse`, and refuses `grpc://` (no TLS) to anything but loopback unless
    /// `allowPlaintext`: the token and the request would cross the network in clear.
    public static func parse(_ text: String, allowPlaintext: Bool) throws(StigmerError) -> ServerAddress {
        let address = try parse(text)
        if !address.tls && !allowPlaintext && !address.isLoopback {
            throw .usage("grpc://\(address.host) sends the token in clear over the network; use grpcs:// (TLS), or --allow-plaintext where the network itself is trusted")
        }
        return address
    }

    public var isLoopback: Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    public static func parse(_ text: String) throws(StigmerError) -> ServerAddress {
        var rest = Substring(text)
        var tls = false
        if rest.hasPrefix("grpcs://") { tls = true; rest = rest.dropFirst(8) }
        else if rest.hasPrefix("grpc://") { rest = rest.dropFirst(7) }
        else { throw .usage("invalid server \(quoted(text)); expected grpc://HOST:PORT or grpcs://HOST:PORT") }
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]), (1...65535).contains(port) else {
            throw .usage("invalid server \(quoted(text)); give the port, e.g. grpc://127.0.0.1:7443")
        }
        var host = String(rest[..<colon])
        if host.hasPrefix("[") || host.hasSuffix("]") || host.contains(":") {
            // IPv6: only in brackets, and brackets only around an address.
            guard host.hasPrefix("["), host.hasSuffix("]"), host.count > 2 else {
                throw .usage("invalid server \(quoted(text)); write an IPv6 address in brackets, e.g. grpc://[::1]:7443")
            }
            host = String(host.dropFirst().dropLast())
            guard !host.contains("["), !host.contains("]") else { throw .usage("invalid server \(quoted(text)): bad brackets") }
        }
        guard !host.isEmpty, !host.contains("/"), !host.contains("@") else {
            throw .usage("invalid server \(quoted(text)): expected grpc[s]://HOST:PORT (no user, no path)")
        }
        return ServerAddress(host: host, port: port, tls: tls)
    }

    public var description: String { "\(tls ? "grpcs" : "grpc")://\(host):\(port)" }
}

/// The gRPC client of the companion: one call at a time, UNAVAILABLE retried with
/// exponential backoff and full jitter until `timeout`, then 69.
public struct RemoteClient: Sendable {
    public let address: ServerAddress
    /// The operator's bearer token; nil for a signed fetch, which sends none.
    public let token: String?
    public let caFile: String?
    public let timeout: Duration

    public init(address: ServerAddress, token: String?, caFile: String?, timeout: Duration) {
        self.address = address
        self.token = token
        self.caFile = caFile
        self.timeout = timeout
    }

    public typealias Service = Stigmer_Exec_V1_ExecutionContextService.Client<HTTP2ClientTransport.Posix>

    static func isIPAddress(_ host: String) -> Bool {
        if host.contains(":") { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { UInt8($0) != nil }
    }

    /// The one place an RPC status becomes a StigmerError (and an exit status).
    static func error(_ e: RPCError, _ address: ServerAddress) -> StigmerError {
        let message = e.message.isEmpty ? "\(e.code)" : e.message
        switch e.code {
        case .unauthenticated, .permissionDenied: return StigmerError(.notPermitted, "\(address): \(message)")
        case .notFound: return StigmerError(.notFound, "\(address): \(message)")
        case .alreadyExists: return StigmerError(.conflict, "\(address): \(message)")
        case .invalidArgument: return StigmerError(.dataError, "\(address): \(message)")
        case .failedPrecondition: return StigmerError(.unresolved, "\(address): \(message)")
        case .unavailable, .deadlineExceeded: return StigmerError(.unavailable, "\(address) is unavailable; check that `stigmer-exec serve` runs there", cause: message)
        default: return StigmerError(.unavailable, "\(address): \(message)")
        }
    }

    /// Runs `body` against the service, retrying while the server is unavailable.
    public func call<T: Sendable>(_ what: String, _ body: @escaping @Sendable (Service, Metadata, CallOptions) async throws -> T) async throws(StigmerError) -> T {
        let deadline = ContinuousClock.now + timeout
        var delay = Duration.milliseconds(50)
        var lastError: StigmerError?
        while true {
            do {
                return try await once(body)
            } catch let e as RPCError where e.code == .unavailable || e.code == .deadlineExceeded {
                lastError = Self.error(e, address)
            } catch let e as RPCError {
                throw Self.error(e, address)
            } catch let e as StigmerError {
                throw e
            } catch {
                lastError = StigmerError(.unavailable, "\(address) is unavailable while \(what)", cause: "\(type(of: error))")
            }
            let now = ContinuousClock.now
            guard now < deadline else {
                throw lastError ?? StigmerError(.unavailable, "\(address) is unavailable while \(what)")
            }
            // Full jitter: sleep a random part of the current backoff, never past the deadline.
            let jittered = Duration.nanoseconds(Int64.random(in: 0...max(1, Int64(delay.components.seconds * 1_000_000_000 + delay.components.attoseconds / 1_000_000_000))))
            try? await Task.sleep(for: min(jittered, deadline - now))
            delay = min(delay * 2, .seconds(2))
        }
    }

    func once<T: Sendable>(_ body: @escaping @Sendable (Service, Metadata, CallOptions) async throws -> T) async throws -> T {
        let security: HTTP2ClientTransport.Posix.TransportSecurity
        if address.tls {
            if let caFile {
                security = .tls { $0.trustRoots = .certificates([.file(path: caFile, format: .pem)]) }
            } else {
                security = .tls
            }
        } else {
            security = .plaintext
        }
        // An IP address is dialled as one (TLS then checks the certificate's IP SAN); a
        // name is resolved and sent as the TLS server name.
        let transport: HTTP2ClientTransport.Posix
        if address.host.contains(":") {
            transport = try HTTP2ClientTransport.Posix(target: .ipv6(host: address.host, port: address.port), transportSecurity: security)
        } else if Self.isIPAddress(address.host) {
            transport = try HTTP2ClientTransport.Posix(target: .ipv4(host: address.host, port: address.port), transportSecurity: security)
        } else {
            transport = try HTTP2ClientTransport.Posix(target: .dns(host: address.host, port: address.port), transportSecurity: security)
        }
        let metadata: Metadata = token.map { ["authorization": "Bearer \($0)"] } ?? [:]
        var options = CallOptions.defaults
        options.timeout = .seconds(10)
        return try await withGRPCClient(transport: transport) { client in
            try await body(Service(wrapping: client), metadata, options)
        }
    }
}
