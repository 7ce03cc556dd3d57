import Crypto
import StigmerSystem
#if canImport(Glibc)
import Glibc
#endif

/// HMAC-SHA256 (RFC 2104) and HKDF-SHA256 (RFC 5869) written out over swift-crypto's
/// concrete `SHA256`. swift-crypto's generic `HMAC<SHA256>` and `HKDF<SHA256>` instantiate
/// generic metadata and look up protocol conformances at run time on first use: 1.4 M
/// instructions of a launch's 4.6 M (callgrind), for checking one context's tag. The same
/// bytes as swift-crypto's (a unit test compares them, and RFC 4231's vectors).
struct HMACSHA256 {
    var inner = SHA256()
    var outerPad = [UInt8](repeating: 0x5c, count: 64)

    init(key: UnsafeRawBufferPointer) {
        var block = [UInt8](repeating: 0, count: 64)
        if key.count > 64 {
            var h = SHA256()
            h.update(bufferPointer: key)
            h.finalize().withUnsafeBytes { digest in for i in 0..<digest.count { block[i] = digest[i] } }
        } else {
            for i in 0..<key.count { block[i] = key[i] }
        }
        var innerPad = [UInt8](repeating: 0x36, count: 64)
        for i in 0..<64 {
            innerPad[i] ^= block[i]
            outerPad[i] ^= block[i]
        }
        innerPad.withUnsafeBytes { inner.update(bufferPointer: $0) }
        block.wipe()
        innerPad.wipe()
    }

    mutating func update(_ bytes: UnsafeRawBufferPointer) { inner.update(bufferPointer: bytes) }

    mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { inner.update(bufferPointer: $0) } }

    consuming func finalize() -> [UInt8] {
        var innerDigest = [UInt8](repeating: 0, count: 32)
        inner.finalize().withUnsafeBytes { d in for i in 0..<32 { innerDigest[i] = d[i] } }
        var outer = SHA256()
        outerPad.withUnsafeBytes { outer.update(bufferPointer: $0) }
        innerDigest.withUnsafeBytes { outer.update(bufferPointer: $0) }
        var out = [UInt8](repeating: 0, count: 32)
        outer.finalize().withUnsafeBytes { d in for i in 0..<32 { out[i] = d[i] } }
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
