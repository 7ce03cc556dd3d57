import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import StigmerCore
import StigmerSystem

/// An unambiguous byte string for what is signed, sealed or tagged: a label, then every
/// field length-prefixed (u32, big-endian) or fixed-width, so no two inputs encode alike.
public struct Canonical {
    public private(set) var bytes: [UInt8] = []

    public init(_ label: String, capacity: Int = 0) {
        bytes.reserveCapacity(capacity)
        add(label)
    }

    public mutating func add(_ text: String) {
        withUnsafeBytes(of: UInt32(text.utf8.count).bigEndian) { bytes += $0 }
        bytes += text.utf8
    }
    public mutating func add(_ data: [UInt8]) {
        withUnsafeBytes(of: UInt32(data.count).bigEndian) { bytes += $0 }
        bytes += data
    }
    public mutating func add(_ number: Int64) { withUnsafeBytes(of: number.bigEndian) { bytes += $0 } }
    public mutating func add(_ flag: Bool) { bytes.append(flag ? 1 : 0) }
}

/// Lower-case hex, for digests and ids.
public enum Hex {
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in bytes { out += [digits[Int(b >> 4)], digits[Int(b & 15)]] }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Keys derived from a master key for one purpose each (HKDF-SHA256, salt
/// "stigmer-exec/v1"), so no purpose can be turned against another.
enum Derived {
    static func bytes(_ master: EncryptionKey, _ purpose: String) -> [UInt8] {
        master.withUnsafeBytes { HMACSHA256.hkdf(inputKeyMaterial: $0, salt: Array("stigmer-exec/v1".utf8), info: Array(purpose.utf8)) }
    }
}

/// The server's identity (DESIGN.md §9): an X25519 key derived from a master key. The
/// server seals every delivery in HPKE Auth mode with it, and a launcher opens only what
/// was sealed by the key it pinned — so a fake server, or anything between, cannot hand a
/// launcher values of its own (an `LD_PRELOAD`, a changed API URL). Derived, not stored:
/// replicas that share the master key share the identity, and rotation adds one.
public struct ServerIdentity: Sendable, Redacted {
    let privateKey: Curve25519.KeyAgreement.PrivateKey

    public init(_ master: EncryptionKey) {
        var seed = Derived.bytes(master, "server identity")
        defer { seed.wipe() }
        // Force-try is sound: any 32 bytes are an X25519 private key (it is clamped).
        privateKey = try! Curve25519.KeyAgreement.PrivateKey(rawRepresentation: seed)
    }

    public var publicKey: [UInt8] { Array(privateKey.publicKey.rawRepresentation) }

    /// One identity per key of the ring, newest first.
    public static func all(_ ring: KeyRing) -> [ServerIdentity] { ring.keys.reversed().map(ServerIdentity.init) }

    /// The identity a request pinned (its public half), among `identities`; none pinned:
    /// the newest.
    public static func matching(_ pinned: [UInt8], in identities: [ServerIdentity]) -> ServerIdentity? {
        guard !pinned.isEmpty else { return identities.first }
        return identities.first { $0.publicKey == pinned }
    }

    public var redactedDescription: String { "ServerIdentity(\(Base64.encode(publicKey)))" }

    /// A pinned key given as text (`--server-key`, `STIGMER_SERVER_KEY`): base64 of 32 bytes.
    public static func parsePublicKey(_ text: String, source: String) throws(StigmerError) -> [UInt8] {
        let trimmed = text.utf8.filter { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }
        guard let key = Base64.decode(array: trimmed), key.count == 32 else {
            throw .usage("\(source) is not a server key: expected the 44 characters of base64 that `stigmer-exec-full serve` prints as its server key")
        }
        return key
    }
}

/// An execution token (DESIGN.md §9): `stx2_` then base64url of an Ed25519 private key
/// (32 bytes) and the server key it pins (32 bytes). The server stores only the SHA-256 of
/// the public half. A fetch is *signed* over the execution id, the launcher's fresh
/// recipient key, the pinned server key, the time and the names — never sent — so a
/// request seen where TLS ends early cannot be turned into one that yields anything
/// readable: replayed, it yields values sealed to a key only the first launcher holds.
public struct ExecutionToken: Redacted {
    public static let prefix = "stx2_"
    let signingKey: Curve25519.Signing.PrivateKey
    /// The server identity this token trusts.
    public let serverKey: [UInt8]

    /// A new token for a context on the server whose identity is `serverKey`.
    public static func issue(serverKey: [UInt8]) -> (token: String, keyHash: String) {
        let key = Curve25519.Signing.PrivateKey()
        let raw = Array(key.rawRepresentation) + serverKey
        let text = prefix + Base64.encode(raw).replacing("+", with: "-").replacing("/", with: "_").replacing("=", with: "")
        return (text, keyHash(Array(key.publicKey.rawRepresentation)))
    }

    /// What the server stores and looks up by: hex SHA-256 of the public key.
    public static func keyHash(_ publicKey: [UInt8]) -> String { Hex.encode(SHA256.hash(data: publicKey)) }

    public init(_ text: String) throws(StigmerError) {
        guard text.hasPrefix(Self.prefix) else {
            if text.hasPrefix("stx_") {
                throw .notPermitted("this execution token (stx_…) is a bearer token from an older server, which anyone who sees a request could replay; create the context again for a signing token (stx2_…)")
            }
            throw .notPermitted("this is not an execution token (stx2_…); pass the token `context create --server` printed")
        }
        var b64 = String(text.dropFirst(Self.prefix.count)).replacing("-", with: "+").replacing("_", with: "/")
        while b64.utf8.count % 4 != 0 { b64 += "=" }
        guard let raw = Base64.decode(b64), raw.count == 64,
              let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: raw[0..<32]) else {
            throw .notPermitted("the execution token is damaged (expected stx2_ and 86 characters); pass it whole")
        }
        signingKey = key
        serverKey = Array(raw[32...])
    }

    public var publicKey: [UInt8] { Array(signingKey.publicKey.rawRepresentation) }

    public func sign(_ proof: FetchProof) throws(StigmerError) -> [UInt8] {
        do { return Array(try signingKey.signature(for: proof.message)) } catch {
            throw StigmerError(.internalError, "cannot sign the fetch request")
        }
    }

    public var redactedDescription: String { "ExecutionToken(\(redactedMarker))" }
}

/// What a fetch signs: which context, for which recipient key, trusting which server key,
/// when, and which names.
public struct FetchProof {
    /// How far a request's time may be from the server's, either way.
    public static let window: Int64 = 300

    public var executionID: String
    public var recipientKey: [UInt8]
    public var serverKey: [UInt8]
    public var time: Int64
    public var names: [String]

    public init(executionID: String, recipientKey: [UInt8], serverKey: [UInt8], time: Int64, names: [String]) {
        self.executionID = executionID
        self.recipientKey = recipientKey
        self.serverKey = serverKey
        self.time = time
        self.names = names
    }

    public var message: [UInt8] {
        var c = Canonical("stigmer-exec/v1 fetch")
        c.add(executionID)
        c.add(recipientKey)
        c.add(serverKey)
        c.add(time)
        c.add(Int64(names.count))
        for name in names { c.add(name) }
        return c.bytes
    }

    /// Whether `signature` is the token's (public half `publicKey`) over this request, made
    /// within the window around `now`.
    public func verify(signature: [UInt8], publicKey: [UInt8], now: Int64) -> Bool {
        guard let key = try? Curve25519.Signing.PublicKey(rawRepresentation: publicKey) else { return false }
        return key.isValidSignature(signature, for: message) && skew(now: now) != nil
    }

    /// How far the request's time is from `now`, in seconds; nil when outside the window.
    public func skew(now: Int64) -> Int64? {
        let (skew, overflow) = now.subtractingReportingOverflow(time)
        return !overflow && skew.magnitude <= UInt64(Self.window) ? skew : nil
    }
}

/// Integrity tags on what the store holds (DESIGN.md §7): HMAC-SHA256 under a key derived
/// from the master key for one purpose, over a `Canonical` message, stored as
/// `m1:<key-id>:<base64>`. AES-GCM binds each secret; a tag binds the rest, so whoever can
/// write the store but holds no key (a shared PostgreSQL) cannot add an `LD_PRELOAD`,
/// change a plain value, drop a variable, extend a lifetime or swap in a token.
public enum IntegrityTag {
    static func mac(_ message: [UInt8], _ purpose: String, _ master: EncryptionKey) -> [UInt8] {
        var key = Derived.bytes(master, purpose)
        defer { key.wipe() }
        return HMACSHA256.mac(key: key, message)
    }

    public static func make(_ message: [UInt8], purpose: String, with ring: KeyRing) -> String {
        "m1:\(ring.newest.id):\(Base64.encode(mac(message, purpose, ring.newest)))"
    }

    /// Refuses a missing tag, one from a key not loaded, or one that does not match.
    /// `what` names the thing ("the context for execution \"x\""), `again` how to remake it.
    public static func verify(_ tag: String?, _ message: [UInt8], purpose: String, with ring: KeyRing,
                              what: String, again: String) throws(StigmerError) {
        guard let tag else {
            throw .notPermitted("\(what) has no integrity tag: it was written by an older stigmer-exec, or by something else; \(again)")
        }
        let parts = tag.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "m1", let expected = Base64.decode(parts[2]) else {
            throw .notPermitted("\(what) has a malformed integrity tag; the store was written by something other than stigmer-exec — refusing to use it")
        }
        let candidates = ring.keys.count == 1 ? ring.keys : ring.keys.filter { $0.id == parts[1] }
        guard let key = candidates.first else {
            throw .notPermitted("\(what) was tagged with key \(parts[1]), which is not loaded (loaded: \(ring.keys.map(\.id).joined(separator: ", ")) from \(ring.source))")
        }
        guard Tokens.equal(mac(message, purpose, key), expected) else {
            throw .notPermitted("\(what) fails its integrity check: the store was changed by something other than stigmer-exec (a name, flag, value, lifetime or token) — refusing to use it")
        }
    }
}

/// A stored context's tag (`IntegrityTag`) covers everything a launch trusts: execution
/// id, creation and expiry, the token's key hash, and every entry's name, flags, layer and
/// stored text, in order.
public enum ContextTag {
    public struct Entry {
        public var name: String
        public var isSecret: Bool
        public var sealed: Bool
        public var layer: String
        public var text: [UInt8]

        public init(name: String, isSecret: Bool, sealed: Bool, layer: String, text: [UInt8]) {
            self.name = name
            self.isSecret = isSecret
            self.sealed = sealed
            self.layer = layer
            self.text = text
        }
    }

    public struct Header {
        public var executionID: String
        public var createdAt: Int64
        public var expiresAt: Int64
        public var tokenHash: String?

        public init(executionID: String, createdAt: Int64, expiresAt: Int64, tokenHash: String?) {
            self.executionID = executionID
            self.createdAt = createdAt
            self.expiresAt = expiresAt
            self.tokenHash = tokenHash
        }
    }

    static let purpose = "context tag"

    static func message(_ header: Header, _ entries: [Entry]) -> [UInt8] {
        // Sized up front: the message is the whole context, appended field by field.
        let size = entries.reduce(128 + header.executionID.utf8.count) { $0 + 18 + $1.name.utf8.count + $1.layer.utf8.count + $1.text.count }
        var c = Canonical("stigmer-exec/v1 context", capacity: size)
        c.add(header.executionID)
        c.add(header.createdAt)
        c.add(header.expiresAt)
        c.add(header.tokenHash != nil)
        c.add(header.tokenHash ?? "")
        c.add(Int64(entries.count))
        for entry in entries {
            c.add(entry.name)
            c.add(entry.isSecret)
            c.add(entry.sealed)
            c.add(entry.layer)
            c.add(entry.text)
        }
        return c.bytes
    }

    public static func tag(_ header: Header, _ entries: [Entry], with ring: KeyRing) -> String {
        IntegrityTag.make(message(header, entries), purpose: purpose, with: ring)
    }

    public static func verify(_ tag: String?, _ header: Header, _ entries: [Entry], with ring: KeyRing) throws(StigmerError) {
        try IntegrityTag.verify(tag, message(header, entries), purpose: purpose, with: ring,
                                what: "the context for execution \(quoted(header.executionID))", again: "create it again")
    }
}
