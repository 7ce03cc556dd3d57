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
/// sealed to it with HPKE (RFC 9180: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
/// ChaCha20-Poly1305) — one encapsulation per response, values sealed in order, each bound
/// to its execution and name. TLS may end early; the values stay sealed end to end.
public enum Delivery {
    public static let suite = HPKE.Ciphersuite.Curve25519_SHA256_ChachaPoly
    public static let info = Array("stigmer-exec/v1 context".utf8)

    public static func associatedData(executionID: String, name: String) -> [UInt8] {
        Array("stigmer-exec/v1".utf8) + [0] + Array(executionID.utf8) + [0] + Array(name.utf8)
    }

    /// The launcher's side: a fresh key pair per fetch; the private half never leaves.
    public struct Recipient: Redacted {
        let privateKey = Curve25519.KeyAgreement.PrivateKey()
        public init() {}
        public var publicKey: [UInt8] { Array(privateKey.publicKey.rawRepresentation) }
        public var redactedDescription: String { "Delivery.Recipient" }

        /// Opens `values` (in order) from a response, straight into `out`.
        public func open(encapsulatedKey: [UInt8], executionID: String,
                         values: [(name: String, isSecret: Bool, ciphertext: [UInt8])], into out: inout SecretBytes) throws(StigmerError) {
            var failed = false
            do {
                var recipient = try HPKE.Recipient(privateKey: privateKey, ciphersuite: Delivery.suite, info: Data(Delivery.info),
                                                   encapsulatedKey: Data(encapsulatedKey))
                for value in values {
                    var plain = try recipient.open(Data(value.ciphertext),
                                                   authenticating: Data(Delivery.associatedData(executionID: executionID, name: value.name)))
                    defer { plain.withUnsafeMutableBytes { raw in if let base = raw.baseAddress { explicit_bzero(base, raw.count) } } }
                    try plain.withUnsafeBytes { raw in catching { () throws(StigmerError) in try out.append(value.name, isSecret: value.isSecret, raw) } }.get()
                }
            } catch let error as StigmerError {
                throw error
            } catch {
                failed = true
            }
            if failed {
                throw .notPermitted("the values delivered for execution \(quoted(executionID)) failed authentication (tampered in transit, or not sealed to this launcher's key); refusing to use them")
            }
        }
    }

    /// The server's side: seals every value of `values` (in order) to `recipientKey`.
    public static func seal(_ values: borrowing SecretBytes, executionID: String,
                            to recipientKey: [UInt8]) throws(StigmerError) -> (encapsulatedKey: [UInt8], ciphertexts: [[UInt8]]) {
        var sender: HPKE.Sender
        do {
            let key = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: recipientKey)
            // RFC 9180 §7.1.4: a low-order point (all zeros, say) gives an all-zero shared
            // secret whatever our key, so anything "sealed" to it is readable by anyone.
            // X25519 clamps every private key to a multiple of 8: a probe with a fresh key
            // tells such a point from a real one.
            let probe = try Curve25519.KeyAgreement.PrivateKey().sharedSecretFromKeyAgreement(with: key)
            guard probe.withUnsafeBytes({ raw in raw.contains { $0 != 0 } }) else { throw LowOrder() }
            sender = try HPKE.Sender(recipientKey: key, ciphersuite: suite, info: Data(info))
        } catch is LowOrder {
            throw .data("the recipient key is a low-order X25519 point (e.g. all zeros): values sealed to it would be readable by anyone; refusing")
        } catch {
            throw .data("the recipient key is not a valid X25519 public key (32 bytes)")
        }
        var out: [[UInt8]] = []
        for entry in values.entries {
            let sealed: Data? = values.withBytes(entry) { raw in
                try? sender.seal(raw, authenticating: Data(associatedData(executionID: executionID, name: entry.name)))
            }
            guard let sealed else { throw StigmerError(.internalError, "cannot seal \(entry.name) for delivery") }
            out.append(Array(sealed))
        }
        return (Array(sender.encapsulatedKey), out)
    }
}

struct LowOrder: Error {}

/// Execution-scoped tokens: random, shown once, stored as SHA-256, compared in constant
/// time.
public enum Tokens {
    public static func generate() -> String {
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let url = Base64.encode(bytes).replacing("+", with: "-").replacing("/", with: "_").replacing("=", with: "")
        return "stx_" + url
    }

    /// Hex SHA-256 of a token.
    public static func hash(_ token: String) -> String {
        let digest = SHA256.hash(data: Array(token.utf8))
        let hex = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in digest { out += [hex[Int(b >> 4)], hex[Int(b & 15)]] }
        return String(decoding: out, as: UTF8.self)
    }

    /// Constant-time equality of two strings (the time depends on the length only).
    public static func equal(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        var diff = UInt8(truncatingIfNeeded: x.count ^ y.count)
        for i in 0..<max(x.count, y.count) {
            diff |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0)
        }
        return diff == 0
    }
}
