import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import StigmerCore
import StigmerSystem

/// Aligned columns for listings; cells never hold secret values (callers pass names,
/// flags, layers and `<secret>`).
public enum Table {
    public static func render(_ header: [String], _ rows: [[String]]) -> String {
        // The last column is not padded: its cells are not measured (a character count
        // walks the whole text, and `mcp check`'s last column lists every name).
        var widths = header.map(\.count)
        for row in rows { for (i, cell) in row.enumerated() where i < row.count - 1 { widths[i] = max(widths[i], cell.count) } }
        func line(_ cells: [String]) -> String {
            var out = ""
            for (i, cell) in cells.enumerated() {
                out += i == cells.count - 1 ? cell : cell + String(repeating: " ", count: widths[i] - cell.count + 2)
            }
            return out + "\n"
        }
        return line(header) + rows.map(line).joined()
    }

    /// Words separated by one space, copied as bytes into one buffer sized up front
    /// (`joined(separator:)` and `+=` cost ~700 instructions a word: a tenth of `mcp check`).
    public static func words(_ words: [String]) -> String {
        let size = words.reduce(0) { $0 + $1.utf8.count + 1 }
        return String(unsafeUninitializedCapacity: size) { buffer in
            var at = 0
            for var word in words {
                if at > 0 {
                    buffer[at] = UInt8(ascii: " ")
                    at += 1
                }
                word.withUTF8 { utf8 in
                    _ = UnsafeMutableBufferPointer(rebasing: buffer[at...]).initialize(fromContentsOf: utf8)
                    at += utf8.count
                }
            }
            return at
        }
    }
}

public enum Stdout {
    public static func write(_ text: String) throws(StigmerError) {
        do { try IO.writeAll(1, text) } catch {
            throw StigmerError(.ioError, "cannot write to stdout", cause: error.description)
        }
    }
}

/// A value shown to a user on one line: control characters escaped.
public func printable(_ text: String) -> String {
    var out = ""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case "\r": out += "\\r"
        default:
            if scalar.value < 0x20 || scalar.value == 0x7F { out += "\\u{\(String(scalar.value, radix: 16))}" } else { out.unicodeScalars.append(scalar) }
        }
    }
    return out
}

/// Runs a check in `validate()`: its StigmerError becomes ArgumentParser's usage error,
/// so it leaves as one line and exit 64 like any other bad flag.
public func usageCheck(_ body: () throws(StigmerError) -> Void) throws {
    do { try body() } catch { throw ValidationError(error.message) }
}

extension ParsableCommand {
    /// How both executables leave on an error, in one place: a StigmerError as one line
    /// and its documented status (nothing when another process already reported it);
    /// help and --version as usual; any other usage error as one line and 64.
    public static func exitReporting(_ error: any Error) -> Never {
        if let error = error as? StigmerError {
            if !error.alreadyReported { Stderr.line("stigmer-exec: \(error)") }
            ErrorReport.write(status: error.exitStatus, code: "\(error.code)", message: error.alreadyReported ? "" : "\(error)", names: error.names)
            Glibc.exit(error.exitStatus)
        }
        let code = exitCode(for: error)
        guard code != .success else { exit(withError: error) }
        let text = message(for: error).split(separator: "\n").first.map(String.init) ?? "invalid usage"
        Stderr.line("stigmer-exec: \(text); see --help")
        ErrorReport.write(status: code.rawValue, code: "usage", message: "\(text); see --help", names: [])
        Glibc.exit(code.rawValue)
    }
}

/// `--error-fd N`: a failure of stigmer-exec itself, as one JSON line a caller can tell
/// from the child's own exit status (the descriptor is close-on-exec: a child that
/// started leaves it empty). The message is the stderr line's: names, never values.
public enum ErrorReport {
    nonisolated(unsafe) static var fd: Int32 = -1

    /// Marks `fd` close-on-exec and remembers it. A descriptor that is not open is
    /// ignored (the caller then just sees no line).
    public static func use(_ descriptor: Int32) {
        guard fcntl(descriptor, F_SETFD, FD_CLOEXEC) == 0 else { return }
        fd = descriptor
    }

    static func write(status: Int32, code: String, message: String, names: [String]) {
        guard fd >= 0 else { return }
        var line = "{\"status\":\(status),\"code\":\(JSONWriter.quote(code)),\"message\":\(JSONWriter.quote(message)),\"names\":["
        line += names.map(JSONWriter.quote).joined(separator: ",") + "]}\n"
        try? IO.writeAll(fd, line)
    }
}
