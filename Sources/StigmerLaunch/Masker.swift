#if canImport(Glibc)
import Glibc
#endif
import StigmerCore
import StigmerSystem

/// `--mask-output`: replaces every secret value in the child's output — and its base64,
/// URL-encoded and JSON-escaped forms — with `<concealed>`. The patterns live in a
/// `SecretArena` (locked, never dumped) for as long as the child runs.
public final class Masker {
    public static let replacement = Array("<concealed>".utf8)
    /// Shorter values are not masked: replacing every "a" would destroy the output
    /// without protecting anything.
    public static let minimumLength = 4

    let arena: SecretArena
    /// (start, length), longest first, so a value wins over its own prefix.
    var patterns: [(UnsafePointer<UInt8>, Int)] = []
    var firstBytes = [Bool](repeating: false, count: 256)
    public private(set) var longest = 0

    /// Patterns for every secret entry of `values` (plain values pass through).
    public convenience init(secretsOf values: borrowing SecretBytes) throws(StigmerError) {
        var secrets: [[UInt8]] = []
        for entry in values.entries where entry.isSecret { secrets.append(values.withBytes(entry) { Array($0) }) }
        defer { for i in secrets.indices { secrets[i].wipe() } }
        try self.init(values: secrets)
    }

    public init(values: [[UInt8]]) throws(StigmerError) {
        var forms: [[UInt8]] = []
        for value in values where value.count >= Self.minimumLength {
            forms.append(value)
            let b64 = Array(Base64.encode(value).utf8)
            forms.append(b64)
            // Unpadded and URL-safe base64 (JWTs, URLs).
            let unpadded = Array(b64.prefix { $0 != UInt8(ascii: "=") })
            forms.append(unpadded)
            forms.append(unpadded.map { $0 == UInt8(ascii: "+") ? UInt8(ascii: "-") : $0 == UInt8(ascii: "/") ? UInt8(ascii: "_") : $0 })
            forms.append(Self.percentEncoded(value, upper: true))
            forms.append(Self.percentEncoded(value, upper: false))
            forms.append(Self.jsonEscaped(value))
        }
        var unique: [[UInt8]] = []
        for form in forms where form.count >= Self.minimumLength && !unique.contains(form) { unique.append(form) }
        unique.sort { $0.count > $1.count }
        let size = unique.reduce(0) { $0 + $1.count } + 64
        // Held for the child's whole life: out of the kernel's direct map too.
        arena = try SecretArena(capacity: size, secretMemory: true)
        for form in unique {
            let p = try arena.cString(form)
            patterns.append((UnsafeRawPointer(p).assumingMemoryBound(to: UInt8.self), form.count))
            firstBytes[Int(form[0])] = true
            longest = max(longest, form.count)
        }
        for i in forms.indices { forms[i].wipe() }
        for i in unique.indices { unique[i].wipe() }
    }

    static func percentEncoded(_ bytes: [UInt8], upper: Bool) -> [UInt8] {
        let hex = Array((upper ? "0123456789ABCDEF" : "0123456789abcdef").utf8)
        var out: [UInt8] = []
        for b in bytes {
            let unreserved = (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39)
                || b == 0x2D || b == 0x2E || b == 0x5F || b == 0x7E
            if unreserved { out.append(b) } else { out += [UInt8(ascii: "%"), hex[Int(b >> 4)], hex[Int(b & 15)]] }
        }
        return out
    }

    static func jsonEscaped(_ bytes: [UInt8]) -> [UInt8] {
        let hex = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in bytes {
            switch b {
            case 0x22: out += Array("\\\"".utf8)
            case 0x5C: out += Array("\\\\".utf8)
            case 0x0A: out += Array("\\n".utf8)
            case 0x0D: out += Array("\\r".utf8)
            case 0x09: out += Array("\\t".utf8)
            case 0x08: out += Array("\\b".utf8)
            case 0x0C: out += Array("\\f".utf8)
            case 0x00..<0x20: out += Array("\\u00".utf8) + [hex[Int(b >> 4)], hex[Int(b & 15)]]
            default: out.append(b)
            }
        }
        return out
    }

    func matchLength(_ buffer: UnsafeBufferPointer<UInt8>, at i: Int) -> Int {
        guard firstBytes[Int(buffer[i])] else { return 0 }
        let remaining = buffer.count - i
        for (p, n) in patterns where n <= remaining && memcmp(buffer.baseAddress! + i, p, n) == 0 { return n }
        return 0
    }

    /// Masks `buffer[..<end]` into `out` and returns how much was consumed. Unless
    /// `final`, it stops at the first position from which some pattern could still match
    /// with bytes not yet read (checked before a shorter complete match is taken): those
    /// bytes wait for more input, so a value split across reads is still caught whole.
    func mask(_ buffer: UnsafeBufferPointer<UInt8>, end: Int, final: Bool, into out: inout [UInt8]) -> Int {
        let window = UnsafeBufferPointer(rebasing: buffer[..<end])
        let partialFrom = final ? end : max(0, end - (longest - 1))
        var i = 0
        while i < end {
            if i >= partialFrom && couldStillMatch(window, at: i) { return i }
            let n = matchLength(window, at: i)
            if n > 0 {
                out += Self.replacement
                i += n
            } else {
                out.append(buffer[i])
                i += 1
            }
        }
        return end
    }

    /// Whether `buffer[i...]` is a proper prefix of some pattern.
    func couldStillMatch(_ buffer: UnsafeBufferPointer<UInt8>, at i: Int) -> Bool {
        guard firstBytes[Int(buffer[i])] else { return false }
        let k = buffer.count - i
        for (p, n) in patterns where n > k && memcmp(buffer.baseAddress! + i, p, k) == 0 { return true }
        return false
    }

    /// One output stream: line-buffered, with a held-back tail so a value split across
    /// reads (or lines) is still caught.
    public struct Stream {
        public var pending: [UInt8] = []
        let limit = 64 << 10

        public init() {}

        /// Adds `bytes`; returns what can be written now (complete lines, masked).
        public mutating func feed(_ bytes: ArraySlice<UInt8>, _ masker: Masker) -> [UInt8] {
            pending += bytes
            guard let newline = pending.lastIndex(of: 0x0A) else {
                return pending.count > limit ? flush(masker, final: false) : []
            }
            return emit(masker, upTo: newline + 1, final: false)
        }

        /// Writes everything that is safe: on `final` (EOF), all of it.
        public mutating func flush(_ masker: Masker, final: Bool) -> [UInt8] {
            emit(masker, upTo: pending.count, final: final)
        }

        mutating func emit(_ masker: Masker, upTo requested: Int, final: Bool) -> [UInt8] {
            var out: [UInt8] = []
            let consumed: Int = pending.withUnsafeBufferPointer { buffer in
                masker.mask(buffer, end: requested, final: final, into: &out)
            }
            // The consumed input held plaintext: clear it before it is dropped.
            pending.withUnsafeMutableBytes { raw in if let base = raw.baseAddress { explicit_bzero(base, consumed) } }
            pending.removeFirst(consumed)
            return out
        }
    }
}
