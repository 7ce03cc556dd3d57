import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import StigmerCore
import StigmerSystem

/// Sealed delivery (DESIGN.md §7, §9): a remote launcher holds no master key. It makes an
/// ephemeral X25519 key pair, sends the public half, and the server returns the context as
/// one message sealed to it with HPKE in Auth mode (RFC 9180 §5.1.3: DHKEM(X25519,
/// HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305), authenticated by the server identity the
/// launcher pinned. The message holds the execution id, creation and expiry, and every
/// delivered name, flag, layer and value, in order — so nothing can be added, dropped,
/// reordered or relabelled, and only the pinned server could have sealed it. TLS may end
/// early; the context stays sealed end to end.
///
///     Canonical("stigmer-exec/v1 delivery") execution_id created_at expires_at count,
///     then per value: name is_secret layer value
///
/// (associated data: Canonical("stigmer-exec/v1 delivery") execution_id).
public enum Delivery {
    public static let suite = HPKE.Ciphersuite.Curve25519_SHA256_ChachaPoly
    public static let info = Array("stigmer-exec/v1 context".utf8)
    static let label = "stigmer-exec/v1 delivery"

    static func associatedData(_ executionID: String) -> [UInt8] {
        var c = Canonical(label)
        c.add(executionID)
        return c.bytes
    }

    /// The launcher's side: a fresh key pair per fetch; the private half never leaves.
    public struct Recipient: Redacted {
        let privateKey = Curve25519.KeyAgreement.PrivateKey()
        public init() {}
        public var publicKey: [UInt8] { Array(privateKey.publicKey.rawRepresentation) }
        public var redactedDescription: String { "Delivery.Recipient" }

        /// Opens a delivery sealed by `serverKey` (the pinned identity) for `executionID`,
        /// its values straight into `out`; returns its creation and expiry.
        public func open(_ sealed: [UInt8], encapsulatedKey: [UInt8], serverKey: [UInt8], executionID: String,
                         into out: inout SecretBytes) throws(StigmerError) -> (createdAt: Int64, expiresAt: Int64) {
            let refused = StigmerError.notPermitted("the context delivered for execution \(quoted(executionID)) failed authentication: not sealed by the pinned server key, tampered with in transit, or not sealed to this launch; refusing to use it")
            var plain: Data
            do {
                let sender = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: serverKey)
                var recipient = try HPKE.Recipient(privateKey: privateKey, ciphersuite: Delivery.suite, info: Data(Delivery.info),
                                                   encapsulatedKey: Data(encapsulatedKey), authenticatedBy: sender)
                plain = try recipient.open(Data(sealed), authenticating: Data(Delivery.associatedData(executionID)))
            } catch {
                throw refused
            }
            defer { plain.withUnsafeMutableBytes { raw in if let base = raw.baseAddress { explicit_bzero(base, raw.count) } } }
            let result = plain.withUnsafeBytes { raw in
                catching { () throws(StigmerError) -> (Int64, Int64) in
                    var reader = CanonicalReader(raw, malformed: refused)
                    guard try reader.string() == Delivery.label, try reader.string() == executionID else { throw refused }
                    let times = (try reader.int64(), try reader.int64())
                    let count = try reader.int64()
                    guard count >= 0, count <= 100_000 else { throw refused }
                    for _ in 0..<count {
                        let name = try reader.string()
                        let isSecret = try reader.bool()
                        _ = try reader.string()  // the layer: provenance, not needed to launch
                        try out.append(name, isSecret: isSecret, try reader.bytes())
                    }
                    guard reader.atEnd else { throw refused }
                    return times
                }
            }
            return try result.get()
        }
    }

    /// The server's side: seals `values` (with their `layers`, in order) for `executionID`
    /// to `recipientKey`, authenticated by `identity`. The message is built in locked memory.
    public static func seal(_ values: borrowing SecretBytes, layers: [String], executionID: String, createdAt: Int64, expiresAt: Int64,
                            to recipientKey: [UInt8], from identity: ServerIdentity) throws(StigmerError) -> (encapsulatedKey: [UInt8], sealed: [UInt8]) {
        var sender: HPKE.Sender
        do {
            let key = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: recipientKey)
            // RFC 9180 §7.1.4: a low-order point (all zeros, say) gives an all-zero shared
            // secret whatever our key, so anything "sealed" to it is readable by anyone.
            // X25519 clamps every private key to a multiple of 8: a probe with a fresh key
            // tells such a point from a real one.
            let probe = try Curve25519.KeyAgreement.PrivateKey().sharedSecretFromKeyAgreement(with: key)
            guard probe.withUnsafeBytes({ raw in raw.contains { $0 != 0 } }) else { throw LowOrder() }
            sender = try HPKE.Sender(recipientKey: key, ciphersuite: suite, info: Data(info), authenticatedBy: identity.privateKey)
        } catch is LowOrder {
            throw .data("the recipient key is a low-order X25519 point (e.g. all zeros): values sealed to it would be readable by anyone; refusing")
        } catch {
            throw .data("the recipient key is not a valid X25519 public key (32 bytes)")
        }
        var message = try SecretBytes(capacity: values.count + 64 * (values.entries.count + 1) + executionID.utf8.count)
        var header = Canonical(label)
        header.add(executionID)
        header.add(createdAt)
        header.add(expiresAt)
        header.add(Int64(values.entries.count))
        try message.append("", isSecret: false, header.bytes)
        for (entry, layer) in zip(values.entries, layers) {
            var fields = Canonical(entry.name)  // name, flag, layer, then the value
            fields.add(entry.isSecret)
            fields.add(layer)
            var length: [UInt8] = []
            withUnsafeBytes(of: UInt32(entry.range.count).bigEndian) { length += $0 }
            try message.append("", isSecret: false, fields.bytes + length)
            try values.withBytes(entry) { (raw) throws(StigmerError) in try message.append("", isSecret: true, raw) }
        }
        let sealed: Data? = message.withAllBytes { raw in try? sender.seal(raw, authenticating: Data(associatedData(executionID))) }
        guard let sealed else { throw StigmerError(.internalError, "cannot seal the context for delivery") }
        return (Array(sender.encapsulatedKey), Array(sealed))
    }
}

/// Reads what `Canonical` wrote; any shortfall is `malformed`.
struct CanonicalReader {
    let input: UnsafeRawBufferPointer
    var offset = 0
    let malformed: StigmerError

    init(_ input: UnsafeRawBufferPointer, malformed: StigmerError) {
        self.input = input
        self.malformed = malformed
    }

    var atEnd: Bool { offset == input.count }

    mutating func take(_ n: Int) throws(StigmerError) -> UnsafeRawBufferPointer {
        guard n >= 0, n <= input.count - offset else { throw malformed }
        defer { offset += n }
        return UnsafeRawBufferPointer(rebasing: input[offset..<(offset + n)])
    }

    mutating func int64() throws(StigmerError) -> Int64 {
        Int64(bitPattern: try take(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
    }

    mutating func bool() throws(StigmerError) -> Bool {
        let b = try take(1)[0]
        guard b <= 1 else { throw malformed }
        return b == 1
    }

    /// A length-prefixed field, left where it lies (a value is copied once, by the caller).
    mutating func bytes() throws(StigmerError) -> UnsafeRawBufferPointer {
        let n = Int(try take(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
        return try take(n)
    }

    mutating func string() throws(StigmerError) -> String {
        guard let s = String(validating: try bytes(), as: UTF8.self) else { throw malformed }
        return s
    }
}

struct LowOrder: Error {}

/// The operator token's hash and constant-time comparison (execution tokens are
/// `ExecutionToken`s).
public enum Tokens {
    /// Hex SHA-256 of a token.
    public static func hash(_ token: String) -> String {
        Hex.encode(SHA256.hash(data: Array(token.utf8)))
    }

    /// Constant-time equality of two strings (the time depends on the length only).
    public static func equal(_ a: String, _ b: String) -> Bool { equal(Array(a.utf8), Array(b.utf8)) }

    public static func equal(_ x: [UInt8], _ y: [UInt8]) -> Bool {
        var diff = UInt8(truncatingIfNeeded: x.count ^ y.count)
        for i in 0..<max(x.count, y.count) {
            diff |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0)
        }
        return diff == 0
    }
}
