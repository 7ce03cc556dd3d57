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
    static let summary = Delivery.Summary(executionID: "e1", createdAt: 10, expiresAt: 20,
                                          entries: [("TOKEN", true, "runtime"), ("ORG", false, "runtime")])

    func open(_ recipient: Delivery.Recipient, _ sealed: (encapsulatedKey: [UInt8], ciphertexts: [[UInt8]], summary: [UInt8]),
              serverKey: [UInt8] = server.publicKey, summary: Delivery.Summary = summary, drop: Bool = false) throws -> SecretBytes {
        var out = try SecretBytes()
        var values = [("TOKEN", true, sealed.ciphertexts[0]), ("ORG", false, sealed.ciphertexts[1])]
        if drop { values.removeLast() }
        try recipient.open(encapsulatedKey: sealed.encapsulatedKey, serverKey: serverKey, summary: summary,
                           sealedSummary: sealed.summary, values: values, into: &out)
        return out
    }

    @Test func roundTripOnlyToTheRecipientFromThePinnedServer() throws {
        let recipient = Delivery.Recipient()
        let sealed = try Delivery.seal(try values(), summary: Self.summary, to: recipient.publicKey, from: Self.server)
        let out = try open(recipient, sealed)
        #expect(out.withBytes(out.entry("TOKEN")!) { Array($0) } == Array("s3cr3t".utf8))
        // Another recipient, another pinned server, a changed flag or time, a dropped value: refused.
        #expect(throws: StigmerError.self) { _ = try open(Delivery.Recipient(), sealed) }
        let other = ServerIdentity(try EncryptionKey(bytes: [UInt8](repeating: 8, count: 32)))
        #expect(throws: StigmerError.self) { _ = try open(recipient, sealed, serverKey: other.publicKey) }
        var relabelled = Self.summary
        relabelled.entries[1].isSecret = true
        #expect(throws: StigmerError.self) { _ = try open(recipient, sealed, summary: relabelled) }
        var extended = Self.summary
        extended.expiresAt = .max
        #expect(throws: StigmerError.self) { _ = try open(recipient, sealed, summary: extended) }
        #expect(throws: StigmerError.self) { _ = try open(recipient, sealed, drop: true) }
        // A fake server seals to the launcher's key with its own identity: refused.
        let forged = try Delivery.seal(try values(), summary: Self.summary, to: recipient.publicKey, from: other)
        #expect(throws: StigmerError.self) { _ = try open(recipient, forged) }
    }

    /// RFC 9180 §7.1.4: sealing to a low-order point would let anyone open the values.
    @Test func lowOrderRecipientKeysAreRefused() throws {
        let lowOrder: [[UInt8]] = [
            [UInt8](repeating: 0, count: 32),
            [1] + [UInt8](repeating: 0, count: 31),
        ]
        for key in lowOrder {
            #expect(throws: StigmerError.self) { try Delivery.seal(try values(), summary: Self.summary, to: key, from: Self.server) }
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
}
