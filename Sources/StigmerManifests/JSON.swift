import StigmerCore

/// A strict RFC 8259 JSON reader producing a `Document` with line and column for every
/// node (libyaml's YAML 1.1 rejects some valid JSON, such as tab indentation). Duplicate
/// keys are an error: which one wins differs between readers, and that is how a reviewed
/// value gets silently replaced.
struct JSONReader {
    /// The text's own UTF-8 storage (no copy), valid for `document`'s call.
    let bytes: UnsafeBufferPointer<UInt8>
    let file: String
    var i = 0
    var line = 1
    var lineStart = 0
    var depth = 0
    /// How far the current line's columns are counted, and the column there: each byte is
    /// counted once, so a minified file (one long line) reads in linear time.
    var countedTo = 0
    var countedColumn = 1

    init(_ bytes: UnsafeBufferPointer<UInt8>, file: String) {
        self.bytes = bytes
        self.file = file
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { i = 3; lineStart = 3 }
    }

    static func document(_ text: String, file: String) throws(StigmerError) -> Document {
        var text = text
        return try text.withUTF8 { bytes in
            Result { () throws(StigmerError) in
                var reader = JSONReader(bytes, file: file)
                reader.skipSpace()
                let doc = try reader.value()
                reader.skipSpace()
                guard reader.i == reader.bytes.count else { throw reader.error("unexpected text after the JSON value") }
                return doc
            }
        }.get()
    }

    /// The column of `i`: Unicode scalars from the line start, as libyaml counts.
    mutating func column() -> Int {
        if countedTo < lineStart { countedTo = lineStart; countedColumn = 1 }
        for b in bytes[countedTo..<i] where b & 0xC0 != 0x80 { countedColumn += 1 }
        countedTo = i
        return countedColumn
    }

    /// For an error, once: counted from the line start.
    var errorColumn: Int {
        var c = 1
        for b in bytes[lineStart..<i] where b & 0xC0 != 0x80 { c += 1 }
        return c
    }

    func error(_ problem: String) -> StigmerError {
        .data("\(file):\(line):\(errorColumn): invalid JSON: \(problem)")
    }

    mutating func skipSpace() {
        while i < bytes.count {
            switch bytes[i] {
            case 0x20, 0x09, 0x0D: i += 1
            case 0x0A: i += 1; line += 1; lineStart = i
            default: return
            }
        }
    }

    mutating func value() throws(StigmerError) -> Document {
        guard i < bytes.count else { throw error("unexpected end of input") }
        let (l, c) = (line, column())
        switch bytes[i] {
        case UInt8(ascii: "{"):
            depth += 1
            guard depth <= 512 else { throw error("nested too deeply") }
            i += 1
            var entries: [Document.Entry] = []
            var seen = Set<String>()
            skipSpace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; depth -= 1; return Document(.mapping([]), line: l, column: c) }
            while true {
                skipSpace()
                let (kl, kc) = (line, column())
                guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw error("expected a string key") }
                let key = try string()
                guard seen.insert(key).inserted else {
                    throw .data("\(file):\(kl):\(kc): duplicate key \(quoted(key)); keep one")
                }
                skipSpace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw error("expected ':' after a key") }
                i += 1
                skipSpace()
                entries.append(Document.Entry(key: key, keyLine: kl, keyColumn: kc, value: try value()))
                skipSpace()
                guard i < bytes.count else { throw error("unexpected end of input in an object") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "}") { i += 1; break }
                throw error("expected ',' or '}'")
            }
            depth -= 1
            return Document(.mapping(entries), line: l, column: c)
        case UInt8(ascii: "["):
            depth += 1
            guard depth <= 512 else { throw error("nested too deeply") }
            i += 1
            var items: [Document] = []
            skipSpace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; depth -= 1; return Document(.sequence([]), line: l, column: c) }
            while true {
                skipSpace()
                items.append(try value())
                skipSpace()
                guard i < bytes.count else { throw error("unexpected end of input in a list") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "]") { i += 1; break }
                throw error("expected ',' or ']'")
            }
            depth -= 1
            return Document(.sequence(items), line: l, column: c)
        case UInt8(ascii: "\""):
            return Document(.scalar(try string(), plain: false), line: l, column: c)
        default:
            let start = i
            while i < bytes.count, !([0x20, 0x09, 0x0A, 0x0D, 0x2C, 0x5D, 0x7D, 0x3A] as [UInt8]).contains(bytes[i]) { i += 1 }
            let word = String(decoding: bytes[start..<i], as: UTF8.self)
            if word == "null" { return Document(.null, line: l, column: c) }
            if word == "true" || word == "false" || Self.isNumber(word) {
                return Document(.scalar(word, plain: true), line: l, column: c)
            }
            i = start
            throw error("unexpected character; expected a value")
        }
    }

    /// Where a string's plain run may end, from `from`: the first eight bytes holding a
    /// quote, a backslash or a control character, looked at eight at a time (the byte-wise
    /// loop after it finds the exact one). Strings are most of a config's bytes.
    static func stringEnd(_ bytes: UnsafeBufferPointer<UInt8>, from: Int) -> Int {
        guard let base = bytes.baseAddress else { return from }
        let raw = UnsafeRawPointer(base)
        let ones: UInt64 = 0x0101_0101_0101_0101, high: UInt64 = 0x8080_8080_8080_8080
        var j = from
        while j + 8 <= bytes.count {
            let w = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: j, as: UInt64.self))
            let quote = w ^ (ones &* 0x22), backslash = w ^ (ones &* 0x5C)
            // A zero byte of quote or backslash, or a byte below 0x20 in w.
            let stop = ((quote &- ones) & ~quote | (backslash &- ones) & ~backslash | (w &- ones &* 0x20) & ~w) & high
            if stop != 0 { return j }
            j += 8
        }
        return j
    }

    mutating func string() throws(StigmerError) -> String {
        i += 1  // opening quote
        // The common case, no escape: one copy, straight from the input.
        var j = Self.stringEnd(bytes, from: i)
        while j < bytes.count {
            let b = bytes[j]
            if b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") || b < 0x20 { break }
            j += 1
        }
        if j < bytes.count, bytes[j] == UInt8(ascii: "\"") {
            defer { i = j + 1 }
            return String(decoding: bytes[i..<j], as: UTF8.self)
        }
        var out = Array(bytes[i..<j])
        i = j
        while i < bytes.count {
            let b = bytes[i]
            switch b {
            case UInt8(ascii: "\""):
                i += 1
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard i + 1 < bytes.count else { throw error("unterminated string") }
                let e = bytes[i + 1]
                i += 2
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if scalar >= 0xD800 && scalar < 0xDC00 {
                        guard i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                            throw error("unpaired surrogate in \\u escape")
                        }
                        i += 2
                        let low = try hex4()
                        guard low >= 0xDC00 && low < 0xE000 else { throw error("unpaired surrogate in \\u escape") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if scalar >= 0xDC00 && scalar < 0xE000 {
                        throw error("unpaired surrogate in \\u escape")
                    }
                    guard let u = Unicode.Scalar(scalar) else { throw error("invalid \\u escape") }
                    out.append(contentsOf: Array(String(Character(u)).utf8))
                default:
                    throw error("invalid escape in string")
                }
            case 0x00..<0x20:
                throw error("control character in string; escape it")
            default:
                out.append(b)
                i += 1
            }
        }
        throw error("unterminated string")
    }

    mutating func hex4() throws(StigmerError) -> UInt32 {
        guard i + 4 <= bytes.count else { throw error("short \\u escape") }
        var v: UInt32 = 0
        for b in bytes[i..<(i + 4)] {
            v <<= 4
            switch b {
            case 0x30...0x39: v |= UInt32(b - 0x30)
            case 0x41...0x46: v |= UInt32(b - 0x41 + 10)
            case 0x61...0x66: v |= UInt32(b - 0x61 + 10)
            default: throw error("invalid \\u escape")
            }
        }
        i += 4
        return v
    }

    static func isNumber(_ word: String) -> Bool {
        var s = Substring(word)
        if s.first == "-" { s = s.dropFirst() }
        guard let first = s.first, first.isASCII, first.isNumber else { return false }
        if first == "0", s.count > 1, let second = s.dropFirst().first, second.isNumber { return false }
        var seenDot = false, seenExp = false, lastWasDigit = false
        var previous: Character = " "
        for ch in s {
            if ch.isASCII && ch.isNumber { lastWasDigit = true; previous = ch; continue }
            if ch == "." && !seenDot && !seenExp && lastWasDigit { seenDot = true }
            else if (ch == "e" || ch == "E") && !seenExp && lastWasDigit { seenExp = true }
            else if (ch == "+" || ch == "-") && (previous == "e" || previous == "E") {}
            else { return false }
            lastWasDigit = false
            previous = ch
        }
        return lastWasDigit
    }
}
