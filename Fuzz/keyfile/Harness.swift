import FuzzSupport
import StigmerCore
import StigmerCrypto

/// Key material (`--key-fd`, STIGMER_ENCRYPTION_KEY, `$STIGMER_HOME/encryption.key`):
/// 32 raw bytes, or base64 lines with comments.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzKeyFile(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = Fuzz.bytes(data, size)
    let ring: KeyRing
    do { ring = try KeyRing.parse(bytes, source: "fuzz.key") } catch {
        // No line of key-like text from the input is ever shown.
        for line in bytes.split(whereSeparator: { $0 == 0x0A || $0 == 0x0D || $0 == 0x20 || $0 == 0x09 }) where line.count >= 12 {
            let base64ish = line.allSatisfy { b in (b | 0x20 >= 0x61 && b | 0x20 <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == 0x2B || b == 0x2F || b == 0x3D }
            if base64ish { Fuzz.expect(!error.description.contains(Fuzz.text(Array(line))), "an error shows key material: \(error)") }
        }
        Fuzz.expect(error.code == .notPermitted, "a bad key is not a 77: \(error)")
        return 0
    }
    Fuzz.expect(!ring.keys.isEmpty, "an empty key ring")
    Fuzz.expect(!"\(ring)".contains(ring.newest.base64), "a key ring's description shows a key")
    // Written back as `key init` and `key rotate` write it, the ring reads the same.
    let written = ring.keys.map(\.base64).joined(separator: "\n") + "\n"
    do {
        let again = try KeyRing.parse(Array(written.utf8), source: "fuzz.key")
        Fuzz.expect(again.keys.map(\.id) == ring.keys.map(\.id), "a written key ring reads back differently")
    } catch {
        Fuzz.violation("a written key ring does not read back: \(error)")
    }
    return 0
}
