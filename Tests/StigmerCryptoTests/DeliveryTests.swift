import Testing
import StigmerCore
import StigmerSystem
@testable import StigmerCrypto

@Suite("HPKE delivery")
struct DeliveryTests {
    func values() throws -> SecretBytes {
        var v = try SecretBytes()
        try v.append("TOKEN", isSecret: true, Array("s3cr3t".utf8))
        try v.append("ORG", isSecret: false, Array("acme".utf8))
        return v
    }

    @Test func roundTripOnlyToTheRecipient() throws {
        let recipient = Delivery.Recipient()
        let sealed = try Delivery.seal(try values(), executionID: "e1", to: recipient.publicKey)
        var out = try SecretBytes()
        try recipient.open(encapsulatedKey: sealed.encapsulatedKey, executionID: "e1",
                           values: [("TOKEN", true, sealed.ciphertexts[0]), ("ORG", false, sealed.ciphertexts[1])], into: &out)
        #expect(out.withBytes(out.entry("TOKEN")!) { Array($0) } == Array("s3cr3t".utf8))
        // Another execution's binding does not open.
        var wrong = try SecretBytes()
        #expect(throws: StigmerError.self) {
            try recipient.open(encapsulatedKey: sealed.encapsulatedKey, executionID: "e2",
                               values: [("TOKEN", true, sealed.ciphertexts[0])], into: &wrong)
        }
    }

    /// RFC 9180 §7.1.4: sealing to a low-order point would let anyone open the values.
    @Test func lowOrderRecipientKeysAreRefused() throws {
        let lowOrder: [[UInt8]] = [
            [UInt8](repeating: 0, count: 32),
            [1] + [UInt8](repeating: 0, count: 31),
        ]
        for key in lowOrder {
            #expect(throws: StigmerError.self) { try Delivery.seal(try values(), executionID: "e1", to: key) }
        }
    }
}
