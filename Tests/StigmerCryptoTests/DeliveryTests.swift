import Crypto
import Testing
import StigmerCore
import StigmerSystem
@testable import StigmerCrypto

@Suite("HPKE delivery, execution tokens, context tags")
struct DeliveryTests {
    func values() throws -> SecretBytes {
        var v = try SecretBytes()
        try v.append("TOKEN", isSecret: true, Array("s3cr3t".utf8))
        try v.append("ORG", isSecret: false, Array("acme".utf8))
        return v
    }

    static let server = ServerIdentity(try! EncryptionKey(bytes: [UInt8](repeating: 7, count: 32)))

    func seal(_ values: borrowing SecretBytes, to recipient: [UInt8], from identity: ServerIdentity = server,
              executionID: String = "e1") throws -> (encapsulatedKey: [UInt8], sealed: [UInt8]) {
        try Delivery.seal(values, layers: ["runtime", "environment:prod"], executionID: executionID, createdAt: 10, expiresAt: 20,
                          to: recipient, from: identity)
    }

    func open(_ recipient: Delivery.Recipient, _ delivery: (encapsulatedKey: [UInt8], sealed: [UInt8]),
              serverKey: [UInt8] = server.publicKey, executionID: String = "e1") throws -> SecretBytes {
        var out = try SecretBytes()
        let times = try recipient.open(delivery.sealed, encapsulatedKey: delivery.encapsulatedKey, serverKey: serverKey,
                                       executionID: executionID, into: &out)
        #expect(times == (10, 20))
        return out
    }

    @Test func oneMessageOnlyToTheRecipientFromThePinnedServer() throws {
        let recipient = Delivery.Recipient()
        let delivery = try seal(try values(), to: recipient.publicKey)
        let out = try open(recipient, delivery)
        #expect(out.names == ["TOKEN", "ORG"])
        #expect(out.withBytes(out.entry("TOKEN")!) { Array($0) } == Array("s3cr3t".utf8))
        #expect(out.entry("TOKEN")?.isSecret == true && out.entry("ORG")?.isSecret == false)
        // Another recipient, another pinned server, another execution, a flipped bit: refused.
        #expect(throws: StigmerError.self) { _ = try open(Delivery.Recipient(), delivery) }
        let other = ServerIdentity(try EncryptionKey(bytes: [UInt8](repeating: 8, count: 32)))
        #expect(throws: StigmerError.self) { _ = try open(recipient, delivery, serverKey: other.publicKey) }
        #expect(throws: StigmerError.self) { _ = try open(recipient, delivery, executionID: "e2") }
        var flipped = delivery
        flipped.sealed[flipped.sealed.count / 2] ^= 1
        #expect(throws: StigmerError.self) { _ = try open(recipient, flipped) }
        // A fake server seals to the launcher's key with its own identity: refused.
        let forged = try seal(try values(), to: recipient.publicKey, from: other)
        #expect(throws: StigmerError.self) { _ = try open(recipient, forged) }
    }

    /// RFC 9180 §7.1.4: sealing to a low-order point would let anyone open the values.
    @Test func lowOrderRecipientKeysAreRefused() throws {
        let lowOrder: [[UInt8]] = [
            [UInt8](repeating: 0, count: 32),
            [1] + [UInt8](repeating: 0, count: 31),
        ]
        for key in lowOrder {
            #expect(throws: StigmerError.self) { try seal(try values(), to: key) }
        }
    }

    @Test func executionTokensSignWhatTheyFetch() throws {
        let (text, hash) = ExecutionToken.issue(serverKey: Self.server.publicKey)
        #expect(text.hasPrefix("stx2_") && text.count == 5 + 86)
        let token = try ExecutionToken(text)
        #expect(token.serverKey == Self.server.publicKey)
        #expect(ExecutionToken.keyHash(token.publicKey) == hash)
        let proof = FetchProof(executionID: "e1", recipientKey: [UInt8](repeating: 9, count: 32), serverKey: Self.server.publicKey,
                               time: 1000, names: ["A"])
        let signature = try token.sign(proof)
        #expect(proof.verify(signature: signature, publicKey: token.publicKey, now: 1000 + FetchProof.window))
        #expect(!proof.verify(signature: signature, publicKey: token.publicKey, now: 1001 + FetchProof.window))
        var otherRecipient = proof
        otherRecipient.recipientKey = [UInt8](repeating: 10, count: 32)
        #expect(!otherRecipient.verify(signature: signature, publicKey: token.publicKey, now: 1000))
        var moreNames = proof
        moreNames.names.append("B")
        #expect(!moreNames.verify(signature: signature, publicKey: token.publicKey, now: 1000))
        #expect(throws: StigmerError.self) { _ = try ExecutionToken("stx_" + String(repeating: "a", count: 43)) }
        #expect(throws: StigmerError.self) { _ = try ExecutionToken("stx2_short") }
    }

    @Test func contextTagsBindEverything() throws {
        let ring = KeyRing(keys: [try EncryptionKey(bytes: [UInt8](repeating: 1, count: 32))], source: "test")
        let header = ContextTag.Header(executionID: "e1", createdAt: 1, expiresAt: 2, tokenHash: "h")
        let entries = [ContextTag.Entry(name: "A", isSecret: false, sealed: false, layer: "runtime", text: Array("a".utf8)),
                       ContextTag.Entry(name: "S", isSecret: true, sealed: true, layer: "runtime", text: Array("v1:x".utf8))]
        let tag = ContextTag.tag(header, entries, with: ring)
        try ContextTag.verify(tag, header, entries, with: ring)
        var changes: [(ContextTag.Header, [ContextTag.Entry])] = []
        var h = header; h.expiresAt = 3; changes.append((h, entries))
        h = header; h.tokenHash = nil; changes.append((h, entries))
        h = header; h.executionID = "e2"; changes.append((h, entries))
        var e = entries; e[0].text = Array("b".utf8); changes.append((header, e))
        e = entries; e[1].isSecret = false; changes.append((header, e))
        e = entries; e[0].layer = "template"; changes.append((header, e))
        e = entries; e.removeLast(); changes.append((header, e))
        e = entries; e.append(.init(name: "LD_PRELOAD", isSecret: false, sealed: false, layer: "runtime", text: Array("/x.so".utf8)))
        changes.append((header, e))
        for (h, e) in changes {
            #expect(throws: StigmerError.self) { try ContextTag.verify(tag, h, e, with: ring) }
        }
        #expect(throws: StigmerError.self) { try ContextTag.verify(nil, header, entries, with: ring) }
    }

    /// The launch path's own HMAC/HKDF give swift-crypto's bytes, and RFC 4231's.
    @Test func hmacAndHkdfMatchSwiftCrypto() throws {
        // RFC 4231, test case 1.
        let key = [UInt8](repeating: 0x0b, count: 20)
        let expected = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        #expect(Hex.encode(HMACSHA256.mac(key: key, Array("Hi There".utf8))) == expected)
        for length in [0, 1, 32, 64, 65, 200] {
            let k = (0..<length).map { UInt8(truncatingIfNeeded: $0 * 7 + 1) }
            let m = (0..<(length * 3)).map { UInt8(truncatingIfNeeded: $0) }
            #expect(HMACSHA256.mac(key: k, m) == Array(HMAC<SHA256>.authenticationCode(for: m, using: SymmetricKey(data: k))))
            let ours = k.withUnsafeBytes { HMACSHA256.hkdf(inputKeyMaterial: $0, salt: Array("salt".utf8), info: m) }
            let theirs = HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: k), salt: Array("salt".utf8), info: m, outputByteCount: 32)
            #expect(ours == theirs.withUnsafeBytes { Array($0) })
        }
    }

    /// BoringSSL's SHA-256 and AES-256-GCM, called directly, agree with swift-crypto: the
    /// same digests, and every swift-crypto seal opens; a flipped bit, a wrong associated
    /// data or key, or a short input never does.
    @Test func boringSSLPrimitivesMatchSwiftCrypto() throws {
        for length in [0, 1, 55, 56, 63, 64, 65, 1000] {
            let m = (0..<length).map { UInt8(truncatingIfNeeded: $0 * 13 + 5) }
            var h = SHA256Hasher()
            h.update(Array(m.prefix(length / 2)))
            h.update(Array(m.dropFirst(length / 2)))
            #expect(h.finalize() == Array(SHA256.hash(data: m)))
            let key = SymmetricKey(size: .bits256)
            let ad = Array("stigmer-exec/v1\u{0}scope\u{0}NAME".utf8)
            let combined = Array(try AES.GCM.seal(m, using: key, authenticating: ad).combined!)
            let opened = key.withUnsafeBytes { AESGCM.open(key: $0, combined: combined, associatedData: ad) }
            #expect(opened == m)
            var flipped = combined
            flipped[flipped.count / 2] ^= 1
            #expect(key.withUnsafeBytes { AESGCM.open(key: $0, combined: flipped, associatedData: ad) } == nil)
            #expect(key.withUnsafeBytes { AESGCM.open(key: $0, combined: combined, associatedData: ad + [0]) } == nil)
            #expect(SymmetricKey(size: .bits256).withUnsafeBytes { AESGCM.open(key: $0, combined: combined, associatedData: ad) } == nil)
            #expect(key.withUnsafeBytes { AESGCM.open(key: $0, combined: Array(combined.prefix(27)), associatedData: ad) } == nil)
        }
    }
}
