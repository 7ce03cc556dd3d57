import Crypto
#if canImport(Glibc)
import Glibc
#endif
import StigmerCore

/// A 256-bit AES key and its public id. The id is the first 8 bytes of
/// SHA-256("stigmer-exec/key-id" ‖ 0 ‖ key), in hex: it names the key in `v1:<key-id>:…`
/// values so a wrong key is told apart from a tampered value, and reveals nothing usable.
public struct EncryptionKey: Sendable, Redacted {
    /// The 32 bytes, in memory of their own that is wiped when the last copy of the key
    /// goes (as swift-crypto's SymmetricKey does). Not a SymmetricKey: building one goes
    /// through FoundationEssentials' generic ContiguousBytes, 1.3 % of a launch, which
    /// opens with BoringSSL directly and never needs it.
    final class Storage: @unchecked Sendable {
        let base: UnsafeMutableRawPointer

        init(_ bytes: [UInt8]) {
            base = UnsafeMutableRawPointer.allocate(byteCount: 32, alignment: 16)
            bytes.withUnsafeBytes { base.copyMemory(from: $0.baseAddress!, byteCount: 32) }
        }

        deinit {
            explicit_bzero(base, 32)
            base.deallocate()
        }
    }

    let storage: Storage

    public init(bytes: [UInt8]) throws(StigmerError) {
        guard bytes.count == 32 else {
            throw .notPermitted("encryption key is \(bytes.count) bytes; AES-256 needs exactly 32")
        }
        storage = Storage(bytes)
    }

    /// The key bytes, for BoringSSL and HKDF; do not copy them out.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: storage.base, count: 32))
    }

    /// For swift-crypto's APIs (sealing, which writers do).
    public var key: SymmetricKey { withUnsafeBytes { SymmetricKey(data: $0) } }

    /// Computed when asked, not at load: the launch path opens with a single key first
    /// and needs the id only to explain a failure (SHA-256's first use costs ~0.1 ms).
    public var id: String {
        var hasher = SHA256Hasher()
        hasher.update(Array("stigmer-exec/key-id".utf8) + [0])
        withUnsafeBytes { hasher.update($0) }
        return Hex.encode(hasher.finalize().prefix(8))
    }

    /// A new random key (BoringSSL's RNG, backed by getrandom).
    public static func generate() -> EncryptionKey {
        let key = SymmetricKey(size: .bits256)
        // Force-try is sound here: a freshly generated 256-bit key is always 32 bytes.
        return key.withUnsafeBytes { buffer in try! EncryptionKey(bytes: Array(buffer)) }
    }

    /// The key as standard base64 text: the format of the key file and STIGMER_ENCRYPTION_KEY.
    public var base64: String { withUnsafeBytes { Base64.encode($0) } }

    public var redactedDescription: String { "EncryptionKey(\(id))" }
}

/// The loaded keys, oldest first. New values are sealed with the newest (DESIGN.md §5,
/// rotation); any loaded key may open.
public struct KeyRing: Sendable, Redacted {
    public let keys: [EncryptionKey]
    /// Where the keys came from, for messages: "--key-fd 3", "STIGMER_ENCRYPTION_KEY", a path.
    public let source: String

    public init(keys: [EncryptionKey], source: String) {
        precondition(!keys.isEmpty, "a key ring holds at least one key")
        self.keys = keys
        self.source = source
    }

    public var newest: EncryptionKey { keys[keys.count - 1] }

    public func key(id: String) -> EncryptionKey? { keys.first { $0.id == id } }

    public var redactedDescription: String { "KeyRing(\(keys.map(\.id).joined(separator: ", ")) from \(source))" }

    /// Parses key material: exactly 32 raw bytes, or base64 text with one key per line
    /// (newest last; blank lines and `#` comments allowed). `source` locates errors.
    public static func parse(_ bytes: [UInt8], source: String) throws(StigmerError) -> KeyRing {
        // Bytes only (no Character or Unicode tables): this runs on every launch.
        if bytes.count == 32, !isText(bytes) || Base64.decode(String(decoding: bytes, as: UTF8.self)) == nil {
            return KeyRing(keys: [try EncryptionKey(bytes: bytes)], source: source)
        }
        guard isText(bytes) else {
            throw .notPermitted("encryption key from \(source) is \(bytes.count) bytes of binary data; give exactly 32 raw bytes or base64 text (as `stigmer-exec key init` writes)")
        }
        var keys: [EncryptionKey] = []
        var lineNumber = 0
        for line in bytes.split(separator: 0x0A, omittingEmptySubsequences: false) {
            lineNumber += 1
            let blank: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }
            guard let first = line.firstIndex(where: { !blank($0) }), let last = line.lastIndex(where: { !blank($0) }) else { continue }
            let text = line[first...last]
            if text.first == UInt8(ascii: "#") { continue }
            let at = lineNumber > 1 ? " line \(lineNumber)" : ""
            guard let decoded = Base64.decode(array: Array(text)) else {
                throw .notPermitted("encryption key from \(source)\(at) is not valid base64; expected 44 characters of standard base64 encoding 32 random bytes (create one with `stigmer-exec key init`)")
            }
            guard decoded.count == 32 else {
                throw .notPermitted("encryption key from \(source)\(at) decodes to \(decoded.count) bytes; AES-256 needs exactly 32 (create one with `stigmer-exec key init`)")
            }
            keys.append(try EncryptionKey(bytes: decoded))
        }
        guard !keys.isEmpty else {
            throw .notPermitted("encryption key from \(source) is empty; create one with `stigmer-exec key init`")
        }
        return KeyRing(keys: keys, source: source)
    }

    static func isText(_ bytes: [UInt8]) -> Bool {
        bytes.allSatisfy { $0 == 0x0A || $0 == 0x0D || $0 == 0x09 || ($0 >= 0x20 && $0 < 0x7F) }
    }
}
