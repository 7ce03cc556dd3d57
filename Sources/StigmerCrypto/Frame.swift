import StigmerCore

/// What the fetch helper (`stigmer-exec-full fetch`, the process with the network stack)
/// hands the launcher over a pipe: never plaintext secrets — values HPKE-sealed to the
/// launcher's ephemeral key (remote), or the store's own ciphertext (PostgreSQL).
/// A small length-prefixed binary format, little-endian, so the launcher needs no
/// protobuf runtime:
///
///     "STGX" u8 version(2)
///     str execution_id   i64 created_at   i64 expires_at   bytes encapsulated_key
///     bytes server_key   bytes authenticator   u8 has_token_hash   str token_hash
///     u32 count, then per value: str name  u8 is_secret  str layer  u8 kind  bytes data
///
/// `str`/`bytes` are a u32 length then the bytes; kind 0 = plain, 1 = sealed at rest
/// (`v1:…`, opened with the execution binding). Remote: no values; `server_key` is the
/// pinned server identity and `authenticator` the sealed delivery (`Delivery`).
/// PostgreSQL: every row of the context, `authenticator` its integrity tag, and its token
/// hash.
public struct FetchFrame: Sendable, Redacted {
    public enum Kind: UInt8, Sendable { case plain = 0, sealed = 1 }

    public struct Value: Sendable {
        public var name: String
        public var isSecret: Bool
        public var layer: String
        public var kind: Kind
        public var data: [UInt8]

        public init(name: String, isSecret: Bool, layer: String, kind: Kind, data: [UInt8]) {
            self.name = name
            self.isSecret = isSecret
            self.layer = layer
            self.kind = kind
            self.data = data
        }
    }

    public var executionID: String
    public var createdAt: Int64
    public var expiresAt: Int64
    public var encapsulatedKey: [UInt8]
    public var serverKey: [UInt8]
    public var authenticator: [UInt8]
    public var tokenHash: String?
    public var values: [Value]

    public init(executionID: String, createdAt: Int64, expiresAt: Int64, encapsulatedKey: [UInt8] = [], serverKey: [UInt8] = [],
                authenticator: [UInt8], tokenHash: String? = nil, values: [Value]) {
        self.executionID = executionID
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.encapsulatedKey = encapsulatedKey
        self.serverKey = serverKey
        self.authenticator = authenticator
        self.tokenHash = tokenHash
        self.values = values
    }

    public var redactedDescription: String { "FetchFrame(\(executionID): \(redactedList(values.map(\.name))))" }

    public func encode() -> [UInt8] {
        var out = Array("STGX".utf8) + [2]
        func u32(_ n: Int) { withUnsafeBytes(of: UInt32(n).littleEndian) { out += $0 } }
        func i64(_ n: Int64) { withUnsafeBytes(of: n.littleEndian) { out += $0 } }
        func bytes(_ b: [UInt8]) { u32(b.count); out += b }
        bytes(Array(executionID.utf8)); i64(createdAt); i64(expiresAt); bytes(encapsulatedKey)
        bytes(serverKey); bytes(authenticator); out.append(tokenHash == nil ? 0 : 1); bytes(Array((tokenHash ?? "").utf8))
        u32(values.count)
        for v in values {
            bytes(Array(v.name.utf8)); out.append(v.isSecret ? 1 : 0); bytes(Array(v.layer.utf8)); out.append(v.kind.rawValue); bytes(v.data)
        }
        return out
    }

    public static func decode(_ input: [UInt8]) throws(StigmerError) -> FetchFrame {
        var i = 0
        let bad = StigmerError(.unavailable, "the fetch helper returned a malformed answer; check that stigmer-exec-full is the same version as stigmer-exec")
        func take(_ n: Int) throws(StigmerError) -> ArraySlice<UInt8> {
            guard n >= 0, i + n <= input.count else { throw bad }
            defer { i += n }
            return input[i..<(i + n)]
        }
        func u32() throws(StigmerError) -> Int { Int(try take(4).reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }) }
        func i64() throws(StigmerError) -> Int64 { Int64(bitPattern: try take(8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }) }
        func bytes() throws(StigmerError) -> [UInt8] { Array(try take(try u32())) }
        func string() throws(StigmerError) -> String {
            guard let s = String(validating: try bytes(), as: UTF8.self) else { throw bad }
            return s
        }
        guard try Array(take(5)) == Array("STGX".utf8) + [2] else { throw bad }
        var frame = FetchFrame(executionID: try string(), createdAt: try i64(), expiresAt: try i64(), encapsulatedKey: try bytes(),
                               serverKey: try bytes(), authenticator: try bytes(), values: [])
        let hasTokenHash = try take(1).first! != 0
        let tokenHash = try string()
        frame.tokenHash = hasTokenHash ? tokenHash : nil
        let count = try u32()
        guard count <= 100_000 else { throw bad }
        for _ in 0..<count {
            let name = try string()
            let secret = try take(1).first! != 0
            let layer = try string()
            guard let kind = Kind(rawValue: try take(1).first!) else { throw bad }
            frame.values.append(Value(name: name, isSecret: secret, layer: layer, kind: kind, data: try bytes()))
        }
        guard i == input.count else { throw bad }
        return frame
    }
}
