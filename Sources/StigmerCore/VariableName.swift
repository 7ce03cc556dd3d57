/// POSIX environment variable names: `[A-Za-z_][A-Za-z0-9_]*` (DESIGN.md §2).
public enum VariableName {
    // Inlinable: specialised where it is called. Unspecialised, the generic `Collection`
    // costs the runtime a demangle of its associated types (0.24 M instructions, a sixth
    // of a launch, for one `--file-var`).
    @inlinable public static func isValid(_ name: some StringProtocol) -> Bool {
        isValid(utf8: name.utf8)
    }

    @inlinable public static func isValid(utf8 bytes: some Collection<UInt8>) -> Bool {
        guard let first = bytes.first, isStart(first) else { return false }
        return bytes.dropFirst().allSatisfy(isContinuation)
    }

    @inlinable @inline(__always) static func isStart(_ b: UInt8) -> Bool {
        (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x5F
    }

    @inlinable @inline(__always) static func isContinuation(_ b: UInt8) -> Bool {
        isStart(b) || (b >= 0x30 && b <= 0x39)
    }

    /// The standard complaint, with a fix. `name` is a key from the input, never a value.
    public static func problem(_ name: String) -> String {
        "invalid variable name \(quoted(name)): names must match [A-Za-z_][A-Za-z0-9_]*"
    }
}

/// Quotes a name or path for an error message, escaping control characters so input cannot
/// forge extra lines or terminal escapes, and shortening very long ones.
public func quoted(_ text: String) -> String {
    var out = "\""
    var count = 0
    for scalar in text.unicodeScalars {
        count += 1
        if count > 120 { out += "…"; break }
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case "\r": out += "\\r"
        default:
            if scalar.value < 0x20 || scalar.value == 0x7F {
                out += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}
