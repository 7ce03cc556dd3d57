/// Standard base64 (RFC 4648 §4, with padding), strict on decode: no whitespace, no URL
/// alphabet, correct padding. Small enough to audit; keeps Foundation off the launch path.
public enum Base64 {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    public static func encode(_ bytes: some Collection<UInt8>) -> String {
        let input = Array(bytes)
        var out: [UInt8] = []
        out.reserveCapacity((input.count + 2) / 3 * 4)
        var i = 0
        while i + 2 < input.count {
            let v = UInt32(input[i]) << 16 | UInt32(input[i + 1]) << 8 | UInt32(input[i + 2])
            out += [alphabet[Int(v >> 18 & 63)], alphabet[Int(v >> 12 & 63)], alphabet[Int(v >> 6 & 63)], alphabet[Int(v & 63)]]
            i += 3
        }
        let rest = input.count - i
        if rest == 1 {
            let v = UInt32(input[i]) << 16
            out += [alphabet[Int(v >> 18 & 63)], alphabet[Int(v >> 12 & 63)], 0x3D, 0x3D]
        } else if rest == 2 {
            let v = UInt32(input[i]) << 16 | UInt32(input[i + 1]) << 8
            out += [alphabet[Int(v >> 18 & 63)], alphabet[Int(v >> 12 & 63)], alphabet[Int(v >> 6 & 63)], 0x3D]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// nil for anything that is not canonical standard base64.
    public static func decode(_ text: some StringProtocol) -> [UInt8]? {
        decode(array: Array(text.utf8))
    }

    /// Concrete, so the launch path does not instantiate generic collection metadata.
    public static func decode(array input: [UInt8]) -> [UInt8]? {
        guard input.count % 4 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(input.count / 4 * 3)
        var i = 0
        while i < input.count {
            let last = i + 4 == input.count
            var v: UInt32 = 0
            var pad = 0
            for j in 0..<4 {
                let c = input[i + j]
                let d: UInt32
                switch c {
                case 0x41...0x5A: d = UInt32(c - 0x41)
                case 0x61...0x7A: d = UInt32(c - 0x61 + 26)
                case 0x30...0x39: d = UInt32(c - 0x30 + 52)
                case 0x2B: d = 62
                case 0x2F: d = 63
                case 0x3D:
                    // Padding only at the end, only in the last two places.
                    guard last, j >= 2 else { return nil }
                    pad += 1
                    d = 0
                default: return nil
                }
                if pad > 0 && c != 0x3D { return nil }
                v = v << 6 | d
            }
            out.append(UInt8(v >> 16 & 0xFF))
            if pad < 2 { out.append(UInt8(v >> 8 & 0xFF)) }
            if pad < 1 { out.append(UInt8(v & 0xFF)) }
            // Non-canonical encodings (non-zero unused bits) are refused.
            if pad == 1 && v & 0xFF != 0 { return nil }
            if pad == 2 && v & 0xFFFF != 0 { return nil }
            i += 4
        }
        return out
    }
}
