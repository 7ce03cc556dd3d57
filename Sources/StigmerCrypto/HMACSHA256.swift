import StigmerSystem
#if canImport(Glibc)
import Glibc
#endif

/// HMAC-SHA256 (RFC 2104) and HKDF-SHA256 (RFC 5869) written out over BoringSSL's SHA-256
/// (`SHA256Hasher`). swift-crypto's generic `HMAC<SHA256>` and `HKDF<SHA256>` instantiate
/// generic metadata and look up protocol conformances at run time on first use: 1.4 M
/// instructions of a launch's 4.6 M (callgrind), for checking one context's tag. The same
/// bytes as swift-crypto's (a unit test compares them, and RFC 4231's vectors).
struct HMACSHA256 {
    var inner = SHA256Hasher()
    var outerPad = [UInt8](repeating: 0x5c, count: 64)

    init(key: UnsafeRawBufferPointer) {
        var block = [UInt8](repeating: 0, count: 64)
        if key.count > 64 {
            var h = SHA256Hasher()
            h.update(key)
            var digest = h.finalize()
            for i in 0..<digest.count { block[i] = digest[i] }
            digest.wipe()
        } else {
            for i in 0..<key.count { block[i] = key[i] }
        }
        var innerPad = [UInt8](repeating: 0x36, count: 64)
        for i in 0..<64 {
            innerPad[i] ^= block[i]
            outerPad[i] ^= block[i]
        }
        inner.update(innerPad)
        block.wipe()
        innerPad.wipe()
    }

    mutating func update(_ bytes: UnsafeRawBufferPointer) { inner.update(bytes) }

    mutating func update(_ bytes: [UInt8]) { inner.update(bytes) }

    consuming func finalize() -> [UInt8] {
        var innerDigest = inner.finalize()
        var outer = SHA256Hasher()
        outer.update(outerPad)
        outer.update(innerDigest)
        let out = outer.finalize()
        outerPad.wipe()
        innerDigest.wipe()
        return out
    }

    static func mac(key: [UInt8], _ message: [UInt8]) -> [UInt8] {
        var h = key.withUnsafeBytes { HMACSHA256(key: $0) }
        h.update(message)
        return h.finalize()
    }

    /// HKDF-SHA256 with a 32-byte output (one expand block).
    static func hkdf(inputKeyMaterial ikm: UnsafeRawBufferPointer, salt: [UInt8], info: [UInt8]) -> [UInt8] {
        var extract = salt.withUnsafeBytes { HMACSHA256(key: $0) }
        extract.update(ikm)
        var prk = extract.finalize()
        defer { prk.wipe() }
        return mac(key: prk, info + [1])
    }
}
