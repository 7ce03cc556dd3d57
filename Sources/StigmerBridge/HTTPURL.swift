#if canImport(Glibc)
import Glibc
#endif
import StigmerCore

/// An http(s) URL as the bridge uses it: scheme, host, port and request target. Small and
/// strict (no Foundation): no user information (credentials belong in headers, where they
/// stay bound to the origin), no fragment.
public struct HTTPURL: Sendable, Equatable {
    public var secure: Bool
    /// Without brackets for IPv6.
    public var host: String
    public var port: Int
    /// Path and query, starting with "/".
    public var target: String

    public init(secure: Bool, host: String, port: Int, target: String) {
        self.secure = secure
        self.host = host
        self.port = port
        self.target = target
    }

    /// Parses an absolute http:// or https:// URL; nil with the reason otherwise.
    public static func parse(_ text: String) -> Result<HTTPURL, URLProblem> {
        let lower = text.lowercased()
        let secure: Bool
        var rest: Substring
        if lower.hasPrefix("https://") {
            secure = true
            rest = text.dropFirst(8)
        } else if lower.hasPrefix("http://") {
            secure = false
            rest = text.dropFirst(7)
        } else {
            return .failure(.scheme)
        }
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        var target = String(rest[authorityEnd...])
        if target.isEmpty || target.first == "?" { target = "/" + target }
        guard !authority.contains("@") else { return .failure(.userInfo) }
        var host: Substring
        var portText: Substring?
        if authority.first == "[" {
            guard let close = authority.firstIndex(of: "]") else { return .failure(.host) }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.first == ":" else { return .failure(.host) }
                portText = after.dropFirst()
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        guard !host.isEmpty, host.allSatisfy({ $0.isASCII && !$0.isWhitespace && $0 != "/" }) else { return .failure(.host) }
        var port = secure ? 443 : 80
        if let portText, !portText.isEmpty {
            guard let p = Int(portText), (1...65535).contains(p) else { return .failure(.port) }
            port = p
        }
        guard target.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return .failure(.target) }
        return .success(HTTPURL(secure: secure, host: host.lowercased(), port: port, target: target))
    }

    public enum URLProblem: Error, Sendable {
        case scheme, userInfo, host, port, target

        public var description: String {
            switch self {
            case .scheme: "not an http:// or https:// URL"
            case .userInfo: "user:password@ in a URL is not sent; put the credential in a header"
            case .host: "no valid host"
            case .port: "the port is not a number from 1 to 65535"
            case .target: "spaces or control characters in the path; percent-encode them"
            }
        }
    }

    /// scheme://host:port — what a secret is bound to.
    public var origin: String { "\(secure ? "https" : "http")://\(hostInURL):\(port)" }

    var hostInURL: String { host.contains(":") ? "[\(host)]" : host }

    /// Whether `host` is an IPv4 or IPv6 address (no resolver needed, no SNI sent).
    public static func isIPAddress(_ host: String) -> Bool {
        var v4 = in_addr(), v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    /// The Host header: the port only when it is not the scheme's own.
    public var hostHeader: String { port == (secure ? 443 : 80) ? hostInURL : "\(hostInURL):\(port)" }

    /// `localhost`, or an address in 127.0.0.0/8 or ::1 — parsed, not matched as text
    /// (`127.example.com` is a name anyone can point anywhere).
    public var isLoopback: Bool {
        if host == "localhost" { return true }
        var v4 = in_addr(), v6 = in6_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
        if inet_pton(AF_INET6, host, &v6) == 1 { return host == "::1" || withUnsafeBytes(of: v6) { $0.dropLast().allSatisfy { $0 == 0 } && $0.last == 1 } }
        return false
    }

    /// `reference` (a Location header, an SSE endpoint) resolved against this URL
    /// (RFC 3986 §5.2, for the forms servers send: absolute, //authority, /path, path).
    public func resolving(_ reference: String) -> Result<HTTPURL, URLProblem> {
        let lower = reference.lowercased()
        if lower.hasPrefix("http://") || lower.hasPrefix("https://") { return HTTPURL.parse(reference) }
        if reference.hasPrefix("//") { return HTTPURL.parse((secure ? "https:" : "http:") + reference) }
        if let colon = reference.firstIndex(of: ":"), !reference[..<colon].contains("/"), !reference[..<colon].contains("?") {
            return .failure(.scheme)  // another scheme
        }
        var ref = Substring(reference)
        if let hash = ref.firstIndex(of: "#") { ref = ref[..<hash] }
        guard ref.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return .failure(.target) }
        var out = self
        if ref.hasPrefix("/") {
            out.target = String(ref)
        } else if ref.hasPrefix("?") {
            out.target = String(target.prefix { $0 != "?" }) + ref
        } else {
            let path = target.prefix { $0 != "?" }
            let directory = path[...(path.lastIndex(of: "/") ?? path.startIndex)]
            out.target = String(directory) + ref
        }
        return .success(out)
    }

    /// The URL with `pairs` appended to its query, percent-encoded (RFC 3986 unreserved
    /// characters stay as they are).
    public func appendingQuery(_ pairs: [(name: String, value: [UInt8])]) -> HTTPURL {
        guard !pairs.isEmpty else { return self }
        var out = self
        var query = target.contains("?") ? (target.hasSuffix("?") || target.hasSuffix("&") ? "" : "&") : "?"
        for (i, pair) in pairs.enumerated() {
            if i > 0 { query += "&" }
            query += Self.percentEncoded(Array(pair.name.utf8)) + "=" + Self.percentEncoded(pair.value)
        }
        out.target += query
        return out
    }

    static func percentEncoded(_ bytes: [UInt8]) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        for b in bytes {
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.append(b)
            default:
                out += [UInt8(ascii: "%"), hex[Int(b >> 4)], hex[Int(b & 0xF)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
