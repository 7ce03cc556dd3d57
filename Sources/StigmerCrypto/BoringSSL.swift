// swift-crypto's own BoringSSL (the C module under its Crypto product). Reached directly for
// the two primitives of every launch: swift-crypto's Swift layer is generic over
// `DataProtocol`/`HashFunction`, and its first use instantiates generic metadata and looks up
// conformances at run time — most of what opening 20 values and checking one tag cost
// (callgrind, benchmarks/RESULTS.md). Unit tests check both against swift-crypto.
import CCryptoBoringSSL
import StigmerSystem

/// SHA-256 (FIPS 180-4), incremental.
struct SHA256Hasher {
    private var state = SHA256_CTX()

    init() { CCryptoBoringSSL_SHA256_Init(&state) }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        CCryptoBoringSSL_SHA256_Update(&state, base, bytes.count)
    }

    mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    /// The digest; the state is wiped.
    mutating func finalize() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        out.withUnsafeMutableBufferPointer { _ = CCryptoBoringSSL_SHA256_Final($0.baseAddress, &state) }
        withUnsafeMutableBytes(of: &state) { CCryptoBoringSSL_OPENSSL_cleanse($0.baseAddress, $0.count) }
        return out
    }
}

enum AESGCM {
    static let nonceSize = 12, tagSize = 16

    /// Opens `combined` (nonce ‖ ciphertext ‖ tag) under a 32-byte key, authenticating
    /// `associatedData`, into a new array the caller wipes; nil when authentication fails.
    static func open(key: UnsafeRawBufferPointer, combined: [UInt8], associatedData: [UInt8]) -> [UInt8]? {
        guard key.count == 32, combined.count >= nonceSize + tagSize, let keyBase = key.baseAddress else { return nil }
        var context = EVP_AEAD_CTX()
        guard CCryptoBoringSSL_EVP_AEAD_CTX_init(&context, CCryptoBoringSSL_EVP_aead_aes_256_gcm(),
                                                 keyBase.assumingMemoryBound(to: UInt8.self), 32, tagSize, nil) == 1 else { return nil }
        defer { CCryptoBoringSSL_EVP_AEAD_CTX_cleanup(&context) }
        var out = [UInt8](repeating: 0, count: combined.count - nonceSize - tagSize)
        var written = 0
        let opened = combined.withUnsafeBufferPointer { input in
            associatedData.withUnsafeBufferPointer { ad in
                out.withUnsafeMutableBufferPointer { output in
                    CCryptoBoringSSL_EVP_AEAD_CTX_open(&context, output.baseAddress, &written, output.count,
                                                       input.baseAddress, nonceSize,
                                                       input.baseAddress! + nonceSize, input.count - nonceSize,
                                                       ad.baseAddress, ad.count)
                }
            }
        }
        guard opened == 1, written == out.count else {
            out.wipe()
            return nil
        }
        return out
    }
}
