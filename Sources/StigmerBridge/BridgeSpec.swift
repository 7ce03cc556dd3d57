#if canImport(Glibc)
import Glibc
#endif
import StigmerCore
import StigmerSystem

/// What the launcher handed the bridge over its pipe (StigmerLaunch's `Handoff`): the
/// server's url, headers and query parameters, resolved, each marked when a secret went
/// into it. Read once at start-up, then the descriptor is closed.
public struct BridgeSpec: Sendable, Redacted {
    public struct Field: Sendable {
        public var name: String
        public var value: [UInt8]
        /// A secret went into it: sent only to the url's origin.
        public var secret: Bool
    }

    public var url: HTTPURL
    public var urlIsSecret: Bool
    public var headers: [Field]
    public var query: [Field]
    /// Every secret that went into the fields, and the forms a server could echo it in
    /// (as sent, percent-encoded, JSON-escaped, base64), longest first: what `conceal`
    /// replaces in text the server chose.
    public var concealedForms: [[UInt8]] = []

    public var redactedDescription: String {
        "BridgeSpec(headers \(redactedList(headers.map(\.name))), query \(redactedList(query.map(\.name))))"
    }

    /// Reads and checks the handoff on `fd`, then closes it. `server` names it in messages.
    public static func read(fd: Int32, server: String, allowInsecureHTTP: Bool) throws(StigmerError) -> BridgeSpec {
        let bytes: [UInt8]
        do { bytes = try IO.readAll(fd, limit: 1 << 20) } catch {
            Sys.close(fd)
            throw StigmerError(.ioError, "cannot read the server's url and headers from descriptor \(fd)", cause: error.description)
        }
        Sys.close(fd)
        return try decode(bytes, server: server, allowInsecureHTTP: allowInsecureHTTP)
    }

    static func decode(_ bytes: [UInt8], server: String, allowInsecureHTTP: Bool) throws(StigmerError) -> BridgeSpec {
        var i = 0
        func take(_ n: Int) throws(StigmerError) -> ArraySlice<UInt8> {
            guard n >= 0, bytes.count - i >= n else { throw StigmerError(.dataError, "the handoff from the launcher is cut short; start the bridge through `stigmer-exec mcp run`") }
            defer { i += n }
            return bytes[i..<(i + n)]
        }
        func length() throws(StigmerError) -> Int {
            let b = try take(4)
            return b.reversed().reduce(0) { $0 << 8 | Int($1) }
        }
        var url: (String, Bool)?
        var headers: [Field] = [], query: [Field] = []
        var secretValues: [[UInt8]] = []
        while i < bytes.count {
            let head = try take(2)
            let kind = head.first!, secret = head.last! == 1
            let name = String(decoding: try take(try length()), as: UTF8.self)
            let value = Array(try take(try length()))
            switch kind {
            case UInt8(ascii: "U"): url = (String(decoding: value, as: UTF8.self), secret)
            case UInt8(ascii: "H"): headers.append(Field(name: name, value: value, secret: secret))
            case UInt8(ascii: "Q"): query.append(Field(name: name, value: value, secret: secret))
            case UInt8(ascii: "S"): secretValues.append(value)
            default: throw StigmerError(.dataError, "the handoff from the launcher holds an unknown field; start the bridge through `stigmer-exec mcp run`")
            }
        }
        guard let (text, urlIsSecret) = url else {
            throw StigmerError(.dataError, "the handoff from the launcher has no url; start the bridge through `stigmer-exec mcp run`")
        }
        let parsed: HTTPURL
        switch HTTPURL.parse(text) {
        case .success(let u): parsed = u
        case .failure(let problem):
            // The url may hold a secret: it is not repeated.
            throw StigmerError(.dataError, "server \(quoted(server))'s url: \(problem.description)")
        }
        for header in headers {
            guard !header.name.isEmpty, header.name.utf8.allSatisfy(isTokenByte) else {
                throw StigmerError(.dataError, "server \(quoted(server)): header name \(quoted(header.name)) is not a valid HTTP field name")
            }
            // The bridge frames requests and keeps the session: these are its own.
            guard !reservedHeaders.contains(header.name.lowercased()) else {
                throw StigmerError(.dataError, "server \(quoted(server)): header \(header.name) is set by the bridge itself; remove it from the config")
            }
            // A CR or LF would start a header of its own (request splitting).
            guard !header.value.contains(where: { $0 == 0x0D || $0 == 0x0A || $0 == 0 }) else {
                throw StigmerError(.dataError, "server \(quoted(server)): header \(header.name)'s value holds a line break or NUL once resolved; such a value cannot be sent")
            }
        }
        let secrets = urlIsSecret || headers.contains(where: \.secret) || query.contains(where: \.secret)
        if !parsed.secure && secrets && !parsed.isLoopback && !allowInsecureHTTP {
            throw StigmerError.usage("server \(quoted(server)) would send a secret over plain http:// to \(urlIsSecret ? "its host" : parsed.host); use https://, or pass --allow-insecure-http if the network path is trusted")
        }
        var spec = BridgeSpec(url: parsed, urlIsSecret: urlIsSecret, headers: headers, query: query)
        spec.concealedForms = forms(secretValues + (headers + query).filter(\.secret).map(\.value))
        return spec
    }

    /// Text the server chose (an error page) with every form of every secret we hold
    /// replaced: as sent (a header's whole value, a secret within it), percent-encoded,
    /// JSON-escaped, base64.
    public func conceal(_ text: String) -> String {
        var bytes = Array(text.utf8)
        for form in concealedForms {
            var i = 0
            var out: [UInt8] = []
            out.reserveCapacity(bytes.count)
            while i < bytes.count {
                if i + form.count <= bytes.count, bytes[i..<(i + form.count)].elementsEqual(form) {
                    out += Array("<concealed>".utf8)
                    i += form.count
                } else {
                    out.append(bytes[i])
                    i += 1
                }
            }
            bytes = out
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The server's own error text for a message: one line of at most `limit` characters,
    /// concealed before it is cut, and cut before any tail that could begin a secret.
    public func serverText(_ raw: [UInt8], limit: Int = 200) -> String {
        let printable = String(decoding: raw, as: UTF8.self).filter { !$0.isNewline && ($0.asciiValue.map { $0 >= 0x20 } ?? true) }
        var text = Array(String(conceal(printable).prefix(limit)).utf8)
        for form in concealedForms {
            for k in stride(from: min(form.count - 1, text.count), through: 3, by: -1) where text.suffix(k).elementsEqual(form.prefix(k)) {
                text.removeLast(k)
                break
            }
        }
        return String(decoding: text, as: UTF8.self)
    }

    static let reservedHeaders: Set<String> = [
        "host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer", "keep-alive",
        "mcp-session-id", "mcp-protocol-version", "last-event-id",
    ]

    /// The forms of each secret a server might echo; none shorter than 4 bytes (shorter
    /// ones would conceal ordinary words, and reveal little).
    static func forms(_ secrets: [[UInt8]]) -> [[UInt8]] {
        var out = Set<[UInt8]>()
        for secret in secrets where !secret.isEmpty {
            let encoded = Array(HTTPURL.percentEncoded(secret).utf8)
            let json = Array(JSONWriter.quote(String(decoding: secret, as: UTF8.self)).utf8.dropFirst().dropLast())
            for form in [secret, encoded, encoded.map { $0 >= 0x41 && $0 <= 0x46 ? $0 | 0x20 : $0 },
                         json, json.flatMap { $0 == UInt8(ascii: "/") ? [UInt8(ascii: "\\"), $0] : [$0] },
                         Array(Base64.encode(secret).utf8)] where form.count >= 4 {
                out.insert(form)
            }
        }
        return out.sorted { $0.count > $1.count }
    }

    /// RFC 9110 tchar.
    static func isTokenByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        default: Array("!#$%&'*+-.^_`|~".utf8).contains(b)
        }
    }

}
