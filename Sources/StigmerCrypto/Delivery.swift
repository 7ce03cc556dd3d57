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
/// ephemeral X25519 key pair, sends the public half, and the server returns the values
/// sealed to it with HPKE in Auth mode (RFC 9180 §5.1.3: DHKEM(X25519, HKDF-SHA256),
/// HKDF-SHA256, ChaCha20-Poly1305), authenticated by the server identity the launcher
/// pinned — one encapsulation per response, values sealed in order, each bound to its
/// execution and name, then a summary (execution, times, every name, flag and layer, in
/// order) sealed last, so nothing can be added, dropped, reordered or relabelled. TLS may
/// end early; the values stay sealed end to end, and only the pinned server could seal them.
public enum Delivery {
    public static let suite = HPKE.Ciphersuite.Curve25519_SHA256_ChachaPoly
    public static let info = Array("stigmer-exec/v1 context".utf8)

    public static func associatedData(executionID: String, name: String) -> [UInt8] {
        Array("stigmer-exec/v1".utf8) + [0] + Array(executionID.utf8) + [0] + Array(name.utf8)
    }

    /// What the summary binds: the response's execution, times, and every delivered
    /// value's name, flag and layer, in order.
    public struct Summary: Sendable {
        public var executionID: String
        public var createdAt: Int64
        public var expiresAt: Int64
        public var entries: [(name: String, isSecret: Bool, layer: String)]

        public init(executionID: String, createdAt: Int64, expiresAt: Int64, entries: [(name: String, isSecret: Bool, layer: String)]) {
            self.executionID = executionID
            self.createdAt = createdAt
            self.expiresAt = expiresAt
            self.entries = entries
        }

        public var bytes: [UInt8] {
            var c = Canonical("stigmer-exec/v1 summary")
            c.add(executionID)
            c.add(createdAt)
            c.add(expiresAt)
            c.add(Int64(entries.count))
            for e in entries { c.add(e.name); c.add(e.isSecret); c.add(e.layer) }
            return c.bytes
        }

        var associatedData: [UInt8] {
            var c = Canonical("stigmer-exec/v1 summary")
            c.add(executionID)
            return c.bytes
        }
    }

    /// The launcher's side: a fresh key pair per fetch; the private half never leaves.
    public struct Recipient: Redacted {
        let privateKey = Curve25519.KeyAgreement.PrivateKey()
        public init() {}
        public var publicKey: [UInt8] { Array(privateKey.publicKey.rawRepresentation) }
        public var redactedDescription: String { "Delivery.Recipient" }

        /// Opens `values` (in order) from a response sealed by `serverKey` (the pinned
        /// identity), straight into `out`, then checks the sealed summary against `summary`.
        public func open(encapsulatedKey: [UInt8], serverKey: [UInt8], summary: Summary, sealedSummary: [UInt8],
                         values: [(name: String, isSecret: Bool, ciphertext: [UInt8])], into out: inout SecretBytes) throws(StigmerError) {
            let executionID = summary.executionID
            var failed = false
            do {
                let sender = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: serverKey)
                var recipient = try HPKE.Recipient(privateKey: privateKey, ciphersuite: Delivery.suite, info: Data(Delivery.info),
                                                   encapsulatedKey: Data(encapsulatedKey), authenticatedBy: sender)
                for value in values {
                    var plain = try recipient.open(Data(value.ciphertext),
                                                   authenticating: Data(Delivery.associatedData(executionID: executionID, name: value.name)))
                    defer { plain.withUnsafeMutableBytes { raw in if let base = raw.baseAddress { explicit_bzero(base, raw.count) } } }
                    try plain.withUnsafeBytes { raw in catching { () throws(StigmerError) in try out.append(value.name, isSecret: value.isSecret, raw) } }.get()
                }
                let bound = try recipient.open(Data(sealedSummary), authenticating: Data(summary.associatedData))
                failed = Array(bound) != summary.bytes
            } catch let error as StigmerError {
                throw error
            } catch {
                failed = true
            }
            if failed {
                throw .notPermitted("the values delivered for execution \(quoted(executionID)) failed authentication: not sealed by the pinned server key, tampered with in transit, or not sealed to this launch; refusing to use them")
            }
        }
    }

    /// The server's side: seals every value of `values` (in order) to `recipientKey`,
    /// authenticated by `identity`, then the summary.
    public static func seal(_ values: borrowing SecretBytes, summary: Summary, to recipientKey: [UInt8],
                            from identity: ServerIdentity) throws(StigmerError) -> (encapsulatedKey: [UInt8], ciphertexts: [[UInt8]], summary: [UInt8]) {
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
        var out: [[UInt8]] = []
        for entry in values.entries {
            let sealed: Data? = values.withBytes(entry) { raw in
                try? sender.seal(raw, authenticating: Data(associatedData(executionID: summary.executionID, name: entry.name)))
            }
            guard let sealed else { throw StigmerError(.internalError, "cannot seal \(entry.name) for delivery") }
            out.append(Array(sealed))
        }
        guard let sealedSummary = try? sender.seal(Data(summary.bytes), authenticating: Data(summary.associatedData)) else {
            throw StigmerError(.internalError, "cannot seal the delivery summary")
        }
        return (Array(sender.encapsulatedKey), out, Array(sealedSummary))
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
