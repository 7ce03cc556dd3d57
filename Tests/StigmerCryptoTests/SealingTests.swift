import Crypto
import Testing
import StigmerCore
import StigmerSystem
@testable import StigmerCrypto

/// Opens into a SecretBytes and copies the value out (tests only).
func opened(_ sealed: String, for binding: Binding, with ring: KeyRing, candidates: [Binding] = []) throws(StigmerError) -> [UInt8] {
    var out = try SecretBytes()
    try Sealer.open(sealed, for: binding, with: ring, candidates: candidates, into: &out)
    return out.withBytes(out.entries[0]) { Array($0) }
}

@Suite("Sealing")
struct SealingTests {
    let ring = KeyRing(keys: [EncryptionKey.generate()], source: "test")
    let binding = Binding.environment("prod", "TOKEN")

    @Test func roundTripAndFormat() throws {
        let plaintext = Array("héllo \u{0} wörld".utf8)
        let sealed = try Sealer.seal(plaintext, for: binding, with: ring)
        let parts = sealed.split(separator: ":")
        #expect(parts.count == 3)
        #expect(parts[0] == "v1")
        #expect(String(parts[1]) == ring.newest.id)
        #expect(ring.newest.id.count == 16)
        #expect(Base64.decode(parts[2])?.count == 12 + plaintext.count + 16)
        #expect(try opened(sealed, for: binding, with: ring) == plaintext)
        // A fresh nonce every time.
        #expect(try Sealer.seal(plaintext, for: binding, with: ring) != sealed)
        #expect(try opened(try Sealer.seal([], for: binding, with: ring), for: binding, with: ring) == [])
    }

    @Test func associatedDataIsExact() throws {
        #expect(Binding.execution("run-1", "A").associatedData == Array("stigmer-exec/v1\u{0}execution:run-1\u{0}A".utf8))
        // Open with swift-crypto directly, using the documented AD, as another tool would.
        let sealed = try Sealer.seal(Array("v".utf8), for: binding, with: ring)
        let payload = Base64.decode(sealed.split(separator: ":")[2])!
        let box = try AES.GCM.SealedBox(combined: payload)
        let ad = Array("stigmer-exec/v1\u{0}environment:prod\u{0}TOKEN".utf8)
        #expect(Array(try AES.GCM.open(box, using: ring.newest.key, authenticating: ad)) == Array("v".utf8))
    }

    func expectError(_ sealed: String, _ binding: Binding, ring: KeyRing? = nil, candidates: [Binding] = [],
                     code: StigmerError.Code, containing: String) {
        do {
            _ = try opened(sealed, for: binding, with: ring ?? self.ring, candidates: candidates)
            Issue.record("opened")
        } catch {
            #expect(error.code == code)
            #expect(error.message.contains(containing), "\(error.message)")
        }
    }

    @Test func wrongBindingTamperAndWrongKeyAreDistinct() throws {
        let sealed = try Sealer.seal(Array("secret".utf8), for: binding, with: ring)
        // Wrong name / scope, with the real binding among the candidates: named as moved.
        expectError(sealed, .environment("prod", "OTHER"), candidates: [binding], code: .notPermitted,
                    containing: "was sealed for TOKEN in environment:prod")
        expectError(sealed, .execution("x", "TOKEN"), candidates: [binding], code: .notPermitted,
                    containing: "was sealed for TOKEN in environment:prod")
        // Without candidates it cannot be told from tampering, and says so.
        expectError(sealed, .environment("prod", "OTHER"), code: .notPermitted, containing: "failed authentication")
        // Tampered: every byte flipped in turn fails, even with candidates.
        let payload = Base64.decode(sealed.split(separator: ":")[2])!
        for i in payload.indices {
            var bad = payload
            bad[i] ^= 0x01
            expectError("v1:\(ring.newest.id):\(Base64.encode(bad))", binding, candidates: [binding],
                        code: .notPermitted, containing: "failed authentication")
        }
        expectError("v1:\(ring.newest.id):\(Base64.encode(payload.prefix(20)))", binding,
                    code: .notPermitted, containing: "too short")
        // Wrong key: named by id.
        let other = KeyRing(keys: [EncryptionKey.generate()], source: "other")
        expectError(sealed, binding, ring: other, code: .notPermitted, containing: "which is not loaded")
        // Malformed.
        expectError("v1:abc:%%%", binding, code: .dataError, containing: "malformed")
        expectError("not base64!", binding, code: .dataError, containing: "neither")
    }

    /// Found by fuzzing (Fuzz/sealed, FUZZING.md): whatever stood where the key id goes was
    /// shown in the "not loaded" error, so a secret pasted as `v1:<secret>:…` reached stderr.
    @Test func keyIDSlotIsShownOnlyWhenItIsAKeyID() throws {
        let other = KeyRing(keys: [EncryptionKey.generate(), EncryptionKey.generate()], source: "other")
        let payload = Base64.encode([UInt8](repeating: 0, count: 40))
        do {
            _ = try opened("v1:sk-live-notakeyid:\(payload)", for: binding, with: other)
            Issue.record("opened")
        } catch {
            #expect(error.code == .notPermitted)
            #expect(!error.description.contains("sk-live"), "\(error)")
            #expect(error.message.contains("not a key id"), "\(error)")
        }
        // A real key id that is not loaded is still named: it tells which key to load.
        expectError("v1:0123456789abcdef:\(payload)", binding, ring: other, code: .notPermitted, containing: "key 0123456789abcdef, which is not loaded")
    }

    @Test func legacyFormOpensWithoutAssociatedData() throws {
        let box = try AES.GCM.seal(Array("legacy".utf8), using: ring.newest.key)
        let legacy = Base64.encode(box.combined!)
        #expect(try opened(legacy, for: binding, with: ring) == Array("legacy".utf8))
        let other = KeyRing(keys: [EncryptionKey.generate()], source: "other")
        expectError(legacy, binding, ring: other, code: .notPermitted, containing: "cannot be opened with any loaded key")
    }

    @Test func rotationOpensWithAnyLoadedKeySealsWithNewest() throws {
        let old = EncryptionKey.generate(), new = EncryptionKey.generate()
        let before = KeyRing(keys: [old], source: "t")
        let after = KeyRing(keys: [old, new], source: "t")
        let sealedOld = try Sealer.seal(Array("x".utf8), for: binding, with: before)
        #expect(try opened(sealedOld, for: binding, with: after) == Array("x".utf8))
        #expect(try Sealer.seal(Array("x".utf8), for: binding, with: after).contains(new.id))
    }

    @Test func scopes() {
        #expect(throws: Never.self) { try Binding.validateScope("environment:prod") }
        #expect(throws: Never.self) { try Binding.validateScope("execution:run-42") }
        for bad in ["prod", "environment:", "agent:x", "execution:"] {
            #expect(throws: StigmerError.self) { try Binding.validateScope(bad) }
        }
    }
}

@Suite("Base64")
struct Base64Tests {
    @Test func vectors() {
        let vectors = ["": "", "f": "Zg==", "fo": "Zm8=", "foo": "Zm9v", "foob": "Zm9vYg==", "fooba": "Zm9vYmE=", "foobar": "Zm9vYmFy"]
        for (plain, encoded) in vectors {
            #expect(Base64.encode(Array(plain.utf8)) == encoded)
            #expect(Base64.decode(encoded) == Array(plain.utf8))
        }
        let all = (0...255).map { UInt8($0) }
        #expect(Base64.decode(Base64.encode(all)) == all)
    }

    @Test func strict() {
        for bad in ["Zg", "Zg=", "Z===", "Zm9v\n", "Zm 9", "Zm-_", "Zh==", "=Zg=", "Zg==Zg=="] {
            #expect(Base64.decode(bad) == nil, "\(bad)")
        }
    }
}
