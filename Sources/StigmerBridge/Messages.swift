/// Server-sent events (the WHATWG EventSource format), parsed incrementally: chunks may end
/// anywhere, even between a CR and its LF.
struct SSEParser {
    struct Event: Equatable {
        var type: String
        var data: [UInt8]
        var id: String?
    }

    private var line: [UInt8] = []
    private var afterCR = false
    private var data: [UInt8] = []
    private var hasData = false
    private var type = ""
    private(set) var lastEventID: String?
    /// The stream's `retry:` (reconnection delay).
    private(set) var retryMilliseconds: Int?
    /// A line or an event's data grew past `limit`: the rest is not parsed.
    private(set) var overflowed = false
    let limit: Int

    init(limit: Int = 64 << 20) { self.limit = limit }

    mutating func feed(_ bytes: some Sequence<UInt8>) -> [Event] {
        var events: [Event] = []
        guard !overflowed else { return events }
        for b in bytes {
            if afterCR {
                afterCR = false
                if b == 0x0A { continue }
            }
            if b == 0x0A || b == 0x0D {
                afterCR = b == 0x0D
                if let event = endLine() { events.append(event) }
            } else {
                line.append(b)
            }
            if line.count + data.count > limit {
                overflowed = true
                return events
            }
        }
        return events
    }

    private mutating func endLine() -> Event? {
        defer { line.removeAll(keepingCapacity: true) }
        if line.isEmpty {
            // A blank line dispatches the event (one without data is dropped).
            defer { data.removeAll(); hasData = false; type = "" }
            guard hasData else { return nil }
            return Event(type: type.isEmpty ? "message" : type, data: data, id: lastEventID)
        }
        if line.first == UInt8(ascii: ":") { return nil }  // a comment (keep-alive)
        let colon = line.firstIndex(of: UInt8(ascii: ":")) ?? line.endIndex
        let field = String(decoding: line[..<colon], as: UTF8.self)
        var value = colon < line.endIndex ? line[(colon + 1)...] : []
        if value.first == UInt8(ascii: " ") { value = value.dropFirst() }
        switch field {
        case "data":
            if hasData { data.append(0x0A) }
            data += value
            hasData = true
        case "event": type = String(decoding: value, as: UTF8.self)
        case "id" where !value.contains(0): lastEventID = String(decoding: value, as: UTF8.self)
        case "retry": if let ms = Int(String(decoding: value, as: UTF8.self)), ms >= 0, ms <= 3_600_000 { retryMilliseconds = ms }
        default: break
        }
        return nil
    }
}

/// What the bridge needs to know of a JSON-RPC message without parsing it into values: its
/// `method`, its `id` as written, and for an initialize result the protocol version. The
/// message itself passes through as bytes.
struct JSONRPCPeek {
    var method: String?
    /// The id's JSON text (`7`, `"a"`), to answer with an error.
    var id: [UInt8]?
    var hasResult = false
    var protocolVersion: String?

    var isRequest: Bool { method != nil && id != nil }

    /// nil when `bytes` is not one JSON object (a batch is passed through, not peeked).
    init?(_ bytes: [UInt8]) {
        var scanner = JSONScanner(bytes)
        guard let members = scanner.objectMembers(), scanner.atEnd else { return nil }
        for (key, range) in members {
            switch key {
            case "method": method = JSONScanner.string(bytes[range])
            case "id": id = Array(bytes[range])
            case "result":
                hasResult = true
                var inner = JSONScanner(Array(bytes[range]))
                if let result = inner.objectMembers(), let version = result.first(where: { $0.key == "protocolVersion" }) {
                    protocolVersion = JSONScanner.string(inner.bytes[version.value])
                }
            default: break
            }
        }
    }
}

/// Just enough JSON to find an object's members and their spans: strings with escapes,
/// nesting. It validates structure, not numbers or literals.
struct JSONScanner {
    let bytes: [UInt8]
    var i = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var atEnd: Bool {
        mutating get { skipSpace(); return i == bytes.count }
    }

    mutating func skipSpace() {
        while i < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[i]) { i += 1 }
    }

    /// The members of the object at `i`: decoded key, value span.
    mutating func objectMembers() -> [(key: String, value: Range<Int>)]? {
        skipSpace()
        guard i < bytes.count, bytes[i] == UInt8(ascii: "{") else { return nil }
        i += 1
        var out: [(key: String, value: Range<Int>)] = []
        skipSpace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return out }
        while true {
            skipSpace()
            let keyStart = i
            guard skipValue(), bytes[keyStart] == UInt8(ascii: "\""), let key = Self.string(bytes[keyStart..<i]) else { return nil }
            skipSpace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { return nil }
            i += 1
            skipSpace()
            let start = i
            guard skipValue() else { return nil }
            out.append((key, start..<i))
            skipSpace()
            guard i < bytes.count else { return nil }
            if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
            guard bytes[i] == UInt8(ascii: "}") else { return nil }
            i += 1
            return out
        }
    }

    /// Moves past one value; false when it is malformed.
    mutating func skipValue() -> Bool {
        guard i < bytes.count else { return false }
        switch bytes[i] {
        case UInt8(ascii: "\""):
            i += 1
            while i < bytes.count {
                switch bytes[i] {
                case UInt8(ascii: "\\"): i += 2
                case UInt8(ascii: "\""): i += 1; return true
                default: i += 1
                }
            }
            return false
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            var depth = 0
            while i < bytes.count {
                switch bytes[i] {
                case UInt8(ascii: "\""): guard skipValue() else { return false }; continue
                case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth == 0 { i += 1; return true }
                default: break
                }
                i += 1
            }
            return false
        default:
            let start = i
            while i < bytes.count, ![UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), 0x20, 0x09, 0x0A, 0x0D].contains(bytes[i]) { i += 1 }
            return i > start
        }
    }

    /// A JSON string's value (simple escapes; \u only for ASCII), or nil.
    static func string(_ span: ArraySlice<UInt8>) -> String? {
        guard span.count >= 2, span.first == UInt8(ascii: "\""), span.last == UInt8(ascii: "\"") else { return nil }
        var out: [UInt8] = []
        var j = span.startIndex + 1
        while j < span.endIndex - 1 {
            let b = span[j]
            if b == UInt8(ascii: "\\"), j + 1 < span.endIndex - 1 {
                let e = span[j + 1]
                switch e {
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "u"):
                    guard j + 5 < span.endIndex, let v = UInt8(String(decoding: span[(j + 2)...(j + 5)], as: UTF8.self), radix: 16) else { return nil }
                    out.append(v)
                    j += 4
                default: out.append(e)
                }
                j += 2
            } else {
                out.append(b)
                j += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
