import FuzzSupport
import StigmerCore
import StigmerCrypto

/// Sealed values (`v1:<key-id>:<base64>` and the legacy bare base64; DESIGN.md §5), as
/// `apply` and the launch open them: with the right key, the wrong binding, or a ring
/// without the key.
let key = try! EncryptionKey(bytes: Array(0..<32))  // fixed: a seed can hold a value sealed with it
let other = try! EncryptionKey(bytes: Array(32..<64))
let ring = KeyRing(keys: [key], source: "fuzz")
let rings = [ring, KeyRing(keys: [other, key], source: "fuzz"), KeyRing(keys: [other], source: "fuzz")]
let binding = Binding.environment("fuzz", "TOKEN")
let elsewhere = Binding.environment("fuzz", "OTHER")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSealed(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = Fuzz.bytes(data, size)
    let text = Fuzz.text(bytes)
    // The input as a sealed value: opening never crashes, and a failure never echoes it
    // (a plaintext pasted where a sealed value belongs must not reach a log).
    for ring in rings {
        do { try Sealer.check(text, for: binding, with: ring, candidates: [elsewhere]) } catch {
            if text.utf8.count >= 8 { Fuzz.expect(!error.description.contains(text), "an error shows the sealed input: \(error)") }
        }
    }
    // What stands where a key id goes is shown only when it is one (16 hex digits): the
    // error is the same whatever else was written there.
    let utf8 = Array(text.utf8)
    if utf8.starts(with: Array("v1:".utf8)), let colon = utf8[3...].firstIndex(of: UInt8(ascii: ":")) {
        let id = utf8[3..<colon]
        let isKeyID = id.count == 16 && id.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
        if !isKeyID {
            let stand = [UInt8](repeating: id.allSatisfy { $0 == UInt8(ascii: "z") } ? UInt8(ascii: "y") : UInt8(ascii: "z"), count: id.count)
            let swapped = Fuzz.text(Array(utf8[..<3]) + stand + Array(utf8[colon...]))
            for ring in rings {
                let a = Result { () throws(StigmerError) in try Sealer.check(text, for: binding, with: ring) }
                let b = Result { () throws(StigmerError) in try Sealer.check(swapped, for: binding, with: ring) }
                switch (a, b) {
                case (.failure(let a), .failure(let b)):
                    Fuzz.expect(a == b, "an error depends on the text where a key id goes: \(a) / \(b)")
                case (.success, .success): break
                default: Fuzz.violation("the text where a key id goes decides whether a value opens")
                }
            }
        }
    }
    // The input as a plaintext: sealed, it opens under its binding only; any one changed
    // byte of the sealed form is refused.
    do {
        let sealed = try Sealer.seal(bytes, for: binding, with: ring)
        try Sealer.check(sealed, for: binding, with: ring)
        do {
            try Sealer.check(sealed, for: elsewhere, with: ring, candidates: [binding])
            Fuzz.violation("a value opened under another binding")
        } catch {
            Fuzz.expect(error.code == .notPermitted, "moved value: \(error)")
        }
        // The key id is a hint, not authenticated (one loaded key is tried whatever it
        // says): the payload is what must not change.
        var tampered = Array(sealed.utf8)
        let payload = tampered.lastIndex(of: UInt8(ascii: ":"))! + 1
        let at = payload + (bytes.first.map(Int.init) ?? 0) % (tampered.count - payload)
        tampered[at] = tampered[at] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        do {
            try Sealer.check(Fuzz.text(tampered), for: binding, with: ring)
            Fuzz.violation("a tampered value opened")
        } catch {
            Fuzz.expect(!error.description.contains(text) || text.utf8.count < 8, "an error shows the plaintext: \(error)")
        }
    } catch {
        Fuzz.violation("sealing or opening its own output failed: \(error)")
    }
    return 0
}
