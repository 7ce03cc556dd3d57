import FuzzSupport
import StigmerCore

/// Env files (`--env-file`, `--secret-file`; DESIGN.md §8). A `--secret-file` holds nothing
/// but secrets: no error may show a value, and what parses writes back and reads the same.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzEnvFile(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = Fuzz.bytes(data, size)
    let text = Fuzz.text(bytes)
    check(text)
    if let planted = Fuzz.planted(bytes) { check(planted) }
    // The canary also goes straight after each line's first `=`, where a value starts.
    var afterEquals: [UInt8] = []
    var lineHasEquals = false
    for b in bytes {
        afterEquals.append(b)
        if b == 0x0A { lineHasEquals = false }
        if b == UInt8(ascii: "="), !lineHasEquals { lineHasEquals = true; afterEquals += Fuzz.canary.utf8 }
    }
    if afterEquals.count != bytes.count { check(Fuzz.text(afterEquals)) }
    return 0
}

func check(_ text: String) {
    let entries: [EnvFileEntry]
    do { entries = try EnvFile.parse(text, file: "fuzz.env") } catch {
        Fuzz.expectNoCanary(error, "env file")
        return
    }
    let lines = text.utf8.count { $0 == 0x0A } + 1
    var previous = 0
    for entry in entries {
        Fuzz.expect(VariableName.isValid(entry.name), "an entry with an invalid name")
        Fuzz.expect(!entry.value.utf8.contains(0), "a value with a NUL byte")
        Fuzz.expect(entry.line >= max(1, previous) && entry.line <= lines, "line \(entry.line) out of order or past the end (\(lines) lines)")
        previous = entry.line
        Fuzz.expectNoCanary(in: "\(entry)", "an entry's description")
    }
    // Written back in the dialect's own quoting, the entries read the same. A CR before a LF
    // cannot be written inside double quotes (CRLF there is one line break), so such a
    // value — only reachable through an unknown escape — is left out.
    let written = entries.filter { entry in !zip(entry.value.utf8, entry.value.utf8.dropFirst()).contains { $0 == (0x0D, 0x0A) } }
    var out = ""
    for entry in written {
        var value = ""
        for ch in entry.value.unicodeScalars {
            switch ch {
            case "\\": value += "\\\\"
            case "\"": value += "\\\""
            case "$": value += "\\$"
            case "\n": value += "\\n"
            default: value.unicodeScalars.append(ch)
            }
        }
        out += "\(entry.name)=\"\(value)\"\n"
    }
    do {
        let again = try EnvFile.parse(out, file: "fuzz.env")
        Fuzz.expect(again.map(\.name) == written.map(\.name) && again.map(\.value) == written.map(\.value), "entries written back read differently")
    } catch {
        Fuzz.violation("entries written back do not parse: \(error)")
    }
}
