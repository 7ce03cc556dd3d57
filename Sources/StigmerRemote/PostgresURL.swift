import NIOSSL
import PostgresNIO
import StigmerCore
import StigmerStore
import StigmerSystem

/// A `postgres://user:password@host:port/database?sslmode=…` store URL, read as libpq reads
/// one, for what this build speaks. Every file it names is read here, before any
/// connection: a URL that cannot be honoured in full is refused, never half-used.
///
/// sslmode (default `disable`, not libpq's `prefer`):
/// - `disable`: in clear.
/// - `require`: TLS, the server's certificate not checked — unless `sslrootcert=FILE` is
///   given, then its chain is (libpq's rule for a root certificate that exists).
/// - `verify-ca`: TLS, the chain checked against `sslrootcert`.
/// - `verify-full`: TLS, the chain and the host name (or IP address) checked.
/// - `allow`, `prefer`: refused. Both connect in clear when the server — or anyone on the
///   way — says it has no TLS, a downgrade nobody would notice.
/// `sslrootcert` is a PEM file, or `system` (the system's CAs, with verify-full only, as in
/// libpq: a public CA vouches for every name it ever signed). `sslcert` and `sslkey` give a
/// client certificate (the key file private to its owner, like the master key's).
/// Parameter values may be percent-encoded; any other parameter is refused.
struct PostgresURL: Sendable {
    enum SSLMode: String, Sendable {
        case disable, require
        case verifyCA = "verify-ca"
        case verifyFull = "verify-full"
    }

    var user = "postgres"
    var password: String?
    var host = "127.0.0.1"
    var port = 5432
    var database = "postgres"
    var sslMode = SSLMode.disable
    var rootCert: String?
    var clientCert: String?
    var clientKey: String?

    /// Where, for messages: never the password.
    var place: String { "PostgreSQL at \(host.contains(":") ? "[\(host)]" : host):\(port)" }

    static let parameters = ["sslmode", "sslrootcert", "sslcert", "sslkey"]

    static func parse(_ url: String) throws(StigmerError) -> PostgresURL {
        var rest = Substring(url)
        var query: Substring?
        if let q = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: q)...]
            rest = rest[..<q]
        }
        // The query is left out of messages: libpq also reads a password there.
        let shown = StoreLocation.redacted(String(rest))
        guard let scheme = ["postgresql://", "postgres://"].first(where: { rest.hasPrefix($0) }) else {
            throw .usage("invalid store URL; expected postgres://user:password@host:port/database")
        }
        rest = rest.dropFirst(scheme.count)
        var out = PostgresURL()
        if let at = rest.lastIndex(of: "@") {
            let auth = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = auth.firstIndex(of: ":") {
                out.user = String(auth[..<colon])
                out.password = String(auth[auth.index(after: colon)...])
            } else {
                out.user = String(auth)
            }
        }
        if let slash = rest.firstIndex(of: "/") {
            let database = rest[rest.index(after: slash)...]
            if !database.isEmpty { out.database = String(database) }
            rest = rest[..<slash]
        }
        if let colon = rest.lastIndex(of: ":"), !rest.hasSuffix("]") {
            guard let p = Int(rest[rest.index(after: colon)...]), (1...65535).contains(p) else {
                throw .usage("invalid port in store \(quoted(shown))")
            }
            out.port = p
            rest = rest[..<colon]
        }
        if rest.hasPrefix("[") && rest.hasSuffix("]") { rest = rest.dropFirst().dropLast() }
        if !rest.isEmpty { out.host = String(rest) }
        if let query { try out.read(query) }
        return out
    }

    /// The query: each known parameter once; then the combinations that make sense.
    mutating func read(_ query: Substring) throws(StigmerError) {
        var given: [String: String] = [:]
        for parameter in query.split(separator: "&") {
            let pair = parameter.split(separator: "=", maxSplits: 1)
            let name = String(pair[0])
            // Names are printed, values are not (a password may be one).
            guard Self.parameters.contains(name) else {
                throw .usage("unsupported parameter \(quoted(name)) in the store URL; this build understands sslmode, sslrootcert, sslcert and sslkey")
            }
            guard pair.count == 2, let value = Self.percentDecoded(pair[1]), !value.isEmpty else {
                throw .usage("\(name) in the store URL has no value, or a bad %-escape")
            }
            guard given.updateValue(value, forKey: name) == nil else {
                throw .usage("\(name) is given twice in the store URL; keep one")
            }
        }
        if let mode = given["sslmode"] {
            switch mode {
            case "allow", "prefer":
                throw .usage("sslmode=\(mode) in the store URL would connect in clear whenever the server, or anyone on the way, says it has no TLS; use sslmode=verify-full with sslrootcert=CA.pem, sslmode=require, or sslmode=disable on a trusted network")
            default:
                guard let known = SSLMode(rawValue: mode) else {
                    throw .usage("invalid sslmode=\(quoted(mode)) in the store URL; use disable, require, verify-ca or verify-full")
                }
                sslMode = known
            }
        }
        rootCert = given["sslrootcert"]
        clientCert = given["sslcert"]
        clientKey = given["sslkey"]
        let tlsFiles = ["sslrootcert", "sslcert", "sslkey"].filter { given[$0] != nil }
        if sslMode == .disable, let first = tlsFiles.first {
            // A CA file with no TLS at all is a setting that was meant to protect something.
            throw .usage("\(first) is given but the store URL has \(given["sslmode"] == nil ? "no sslmode (the default is disable: in clear)" : "sslmode=disable"); add sslmode=verify-full (or require), or drop \(first)")
        }
        if (sslMode == .verifyCA || sslMode == .verifyFull) && rootCert == nil {
            throw .usage("sslmode=\(sslMode.rawValue) needs the CA to check the server's certificate against: add sslrootcert=FILE (its PEM file) or sslrootcert=system to the store URL")
        }
        if rootCert == "system" && sslMode != .verifyFull {
            throw .usage("sslrootcert=system needs sslmode=verify-full (any name a public CA signed would pass otherwise)")
        }
        if (clientCert == nil) != (clientKey == nil) {
            throw .usage("give sslcert and sslkey together in the store URL (the client certificate and its private key)")
        }
    }

    /// The TLS settings, every file read and checked now; nil for sslmode=disable.
    func tlsConfiguration() throws(StigmerError) -> TLSConfiguration? {
        guard sslMode != .disable else { return nil }
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        switch (sslMode, rootCert) {
        case (.verifyFull, _): tls.certificateVerification = .fullVerification
        case (_, nil): tls.certificateVerification = .none
        default: tls.certificateVerification = .noHostnameVerification
        }
        if let rootCert {
            tls.trustRoots = rootCert == "system" ? .default : .certificates(try Self.certificates(rootCert, "sslrootcert"))
        }
        if let clientCert, let clientKey {
            tls.certificateChain = try Self.certificates(clientCert, "sslcert").map { .certificate($0) }
            // The rules of the master key's file: ours, 0600 or 0400 (77 otherwise).
            var bytes: [UInt8]
            do throws(StigmerError) { bytes = try PrivateFile.read(clientKey, what: "sslkey") } catch {
                guard error.code == .dataError else { throw error }
                throw .usage("\(error.message); give the client certificate's private key (PEM) as sslkey")
            }
            defer { bytes.wipe() }
            do { tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: bytes, format: .pem)) } catch {
                throw .usage("sslkey \(quoted(clientKey)) is not an unencrypted PEM private key (a key with a passphrase is not supported)")
            }
        }
        return tls
    }

    /// The certificates of a PEM file: at least one, or a usage error naming the parameter.
    static func certificates(_ path: String, _ parameter: String) throws(StigmerError) -> [NIOSSLCertificate] {
        let bytes: [UInt8]
        do throws(StigmerError) { bytes = try IO.readFile(path, limit: 1 << 20) } catch {
            throw StigmerError(.usage, "cannot read \(parameter) \(quoted(path)) of the store URL; give a readable PEM file", cause: error.cause ?? error.message)
        }
        guard let certificates = try? NIOSSLCertificate.fromPEMBytes(bytes), !certificates.isEmpty else {
            throw .usage("\(parameter) \(quoted(path)) of the store URL holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
        }
        return certificates
    }

    /// `%XX` escapes decoded, as libpq decodes URI parameters; nil for a broken escape or
    /// bytes that are not UTF-8.
    static func percentDecoded(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var utf8 = text.utf8.makeIterator()
        while let byte = utf8.next() {
            guard byte == UInt8(ascii: "%") else { bytes.append(byte); continue }
            guard let high = utf8.next(), let low = utf8.next(),
                  let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16) else { return nil }
            bytes.append(value)
        }
        return String(validating: bytes, as: UTF8.self)
    }
}

/// What `PostgresStore` connects with, from a store URL: the pool's settings, and the same
/// for one connection of its own that names why the pool cannot connect (`refusal`).
public struct PostgresTarget: Sendable {
    let url: PostgresURL
    public let client: PostgresClient.Configuration
    let connection: PostgresConnection.Configuration

    public init(_ location: String) throws(StigmerError) {
        url = try PostgresURL.parse(location)
        let tls = try url.tlsConfiguration()
        var client = PostgresClient.Configuration(host: url.host, port: url.port, username: url.user, password: url.password,
                                                  database: url.database, tls: tls.map { .require($0) } ?? .disable)
        client.options.connectTimeout = .seconds(3)
        client.options.minimumConnections = 0
        client.options.maximumConnections = 8
        self.client = client
        let context: NIOSSLContext?
        do { context = try tls.map { try NIOSSLContext(configuration: $0) } } catch {
            throw StigmerError(.usage, "cannot set up TLS with the store URL's sslrootcert, sslcert and sslkey", cause: "\(error)")
        }
        var connection = PostgresConnection.Configuration(host: url.host, port: url.port, username: url.user, password: url.password,
                                                          database: url.database, tls: context.map { .require($0) } ?? .disable)
        connection.options.connectTimeout = .seconds(3)
        self.connection = connection
    }

    /// A failure to connect that waiting will not cure, as the line the user sees; nil for
    /// any other. Messages name the server, user and files, never the password.
    func refusal(_ error: any Error) -> StigmerError? {
        var cause = error
        if let e = error as? PSQLError {
            if e.code == .sslUnsupported {
                return StigmerError(.unavailable, "\(url.place) does not speak TLS, and sslmode=\(url.sslMode.rawValue) never falls back to a connection in clear; set ssl = on in its postgresql.conf, or use sslmode=disable on a trusted network")
            }
            // Class 28, invalid authorization: a password or a pg_hba.conf rule refused us.
            if e.code == .server, let state = e.serverInfo?[.sqlState], state.hasPrefix("28") {
                return StigmerError(.notPermitted, "\(url.place) refused user \(quoted(url.user)); check the store URL's user, password, sslcert and sslkey, and the server's pg_hba.conf",
                                    cause: e.serverInfo?[.message] ?? "SQLSTATE \(state)")
            }
            guard let underlying = e.underlying else { return nil }
            cause = underlying
        }
        if let e = cause as? NIOSSLExtraError, e == .failedToValidateHostname {
            return StigmerError(.unavailable, "the certificate of \(url.place) is not for \(quoted(url.host)) (sslmode=verify-full checks the name); connect by a name or address the certificate lists")
        }
        guard cause is NIOSSLError || cause is NIOSSLExtraError || cause is BoringSSLError else { return nil }
        // BoringSSL's reason; the rest of its text (a source path and line) helps nobody here.
        if "\(cause)".contains("CERTIFICATE_VERIFY_FAILED"), let root = url.rootCert {
            let trusted = root == "system" ? "the system's CAs" : "sslrootcert \(quoted(root))"
            return StigmerError(.unavailable, "the certificate of \(url.place) is not signed by \(trusted) (sslmode=\(url.sslMode.rawValue)); give the CA that signed it as sslrootcert")
        }
        return StigmerError(.unavailable, "TLS with \(url.place) failed (sslmode=\(url.sslMode.rawValue)); check the server's ssl settings and the store URL's sslrootcert, sslcert and sslkey", cause: "\(cause)")
    }
}
