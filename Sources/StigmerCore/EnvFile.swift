/// Env files (`--env-file`, `--secret-file`; DESIGN.md §8), in one documented dialect:
///
///     # a comment line
///     KEY=value                  unquoted: trimmed; " #" starts a comment
///     export KEY=value           optional `export ` prefix
///     KEY='literal $text'        single quotes: literal, one line
///     KEY="a\nb \"q\" \$HOME"    double quotes: \n \t \\ \" \$ understood; may span lines
///     KEY=                       empty value
///
/// There is no variable expansion: a `$` is always literal (dialects differ; this one never
/// reaches into the environment). Errors name the file and line, never a value.
public struct EnvFileEntry: Sendable, Equatable, Redacted {
    public var name: String
    public var value: String
    /// 1-based line where the entry starts.
    public var line: Int

    public init(name: String, value: String, line: Int) {
        self.name = name
        self.value = value
        self.line = line
    }

    public var redactedDescription: String { "\(name)=\(redactedMarker)" }
}

public enum EnvFile {
    /// Parses `text`; `file` is used only to locate errors. Later entries for the same name
    /// are kept too — callers apply them in order, so the last one wins.
    public static func parse(_ text: String, file: String) throws(StigmerError) -> [EnvFileEntry] {
        var bytes = Array(text.utf8)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }  // UTF-8 BOM
        var entries: [EnvFileEntry] = []
        var i = 0
        var line = 1
        let n = bytes.count

        func error(_ at: Int, _ problem: String) -> StigmerError {
            .data("\(file):\(at): \(problem)")
        }
        func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 }
        func isEOL(_ b: UInt8) -> Bool { b == 0x0A || b == 0x0D }
        func skipToEOL() {
            while i < n, bytes[i] != 0x0A { i += 1 }
        }
        /// After a value: only blanks and an optional comment may follow on the line.
        func finishLine(_ start: Int) throws(StigmerError) {
            while i < n, isSpace(bytes[i]) { i += 1 }
            if i < n, bytes[i] == UInt8(ascii: "#") { skipToEOL() }
            if i < n, bytes[i] == 0x0D { i += 1 }
            if i < n, bytes[i] != 0x0A {
                throw error(start, "unexpected text after the closing quote; put a comment after whitespace and #")
            }
        }

        while i < n {
            let start = line
            while i < n, isSpace(bytes[i]) { i += 1 }
            if i >= n { break }
            if bytes[i] == 0x0A { i += 1; line += 1; continue }
            if bytes[i] == 0x0D { i += 1; continue }
            if bytes[i] == UInt8(ascii: "#") { skipToEOL(); continue }

            // Optional `export ` prefix.
            let export = Array("export".utf8)
            if bytes[i...].starts(with: export), i + export.count < n, isSpace(bytes[i + export.count]) {
                i += export.count
                while i < n, isSpace(bytes[i]) { i += 1 }
            }
            let keyStart = i
            while i < n, bytes[i] != UInt8(ascii: "="), !isEOL(bytes[i]) { i += 1 }
            var keyEnd = i
            while keyEnd > keyStart, isSpace(bytes[keyEnd - 1]) { keyEnd -= 1 }
            let key = String(decoding: bytes[keyStart..<keyEnd], as: UTF8.self)
            guard i < n, bytes[i] == UInt8(ascii: "=") else {
                // The line is not echoed: in a --secret-file it may be the secret itself.
                throw error(start, "expected KEY=VALUE; a line without = is not supported (write NAME= for an empty value)")
            }
            guard VariableName.isValid(key) else {
                throw error(start, "invalid variable name before =: names must match [A-Za-z_][A-Za-z0-9_]* (the line is not shown: it may hold a value)")
            }
            i += 1  // '='
            while i < n, isSpace(bytes[i]) { i += 1 }

            var value: [UInt8] = []
            if i < n, bytes[i] == UInt8(ascii: "'") {
                i += 1
                while i < n, bytes[i] != UInt8(ascii: "'"), bytes[i] != 0x0A { value.append(bytes[i]); i += 1 }
                guard i < n, bytes[i] == UInt8(ascii: "'") else {
                    throw error(start, "unterminated single quote for \(key); single-quoted values end on the same line")
                }
                i += 1
                try finishLine(start)
            } else if i < n, bytes[i] == UInt8(ascii: "\"") {
                i += 1
                var closed = false
                while i < n {
                    let b = bytes[i]
                    if b == UInt8(ascii: "\"") { closed = true; i += 1; break }
                    if b == UInt8(ascii: "\\"), i + 1 < n {
                        let next = bytes[i + 1]
                        switch next {
                        case UInt8(ascii: "n"): value.append(0x0A)
                        case UInt8(ascii: "t"): value.append(0x09)
                        case UInt8(ascii: "\\"), UInt8(ascii: "\""), UInt8(ascii: "$"): value.append(next)
                        default: value.append(contentsOf: [b, next])  // unknown escape: kept as written
                        }
                        if next == 0x0A { line += 1 }
                        i += 2
                        continue
                    }
                    if b == 0x0A { line += 1 }
                    if b == 0x0D, i + 1 < n, bytes[i + 1] == 0x0A { i += 1; continue }  // CRLF inside quotes
                    value.append(b)
                    i += 1
                }
                guard closed else {
                    throw error(start, "unterminated double quote for \(key); close it with \"")
                }
                try finishLine(start)
            } else {
                // Unquoted: up to end of line or a " #" comment; trimmed.
                while i < n, !isEOL(bytes[i]) {
                    if bytes[i] == UInt8(ascii: "#"), isSpace(bytes[i - 1]) { skipToEOL(); break }
                    value.append(bytes[i])
                    i += 1
                }
                while let last = value.last, isSpace(last) { value.removeLast() }
            }
            // A NUL would silently cut the value short in the child's environment.
            guard !value.contains(0) else { throw error(start, "the value of \(key) holds a NUL byte, which no environment variable can carry; remove it") }
            entries.append(EnvFileEntry(name: key, value: String(decoding: value, as: UTF8.self), line: start))
        }
        return entries
    }
}
