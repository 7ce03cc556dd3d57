#if canImport(Glibc)
import Glibc
#endif
import StigmerCore

/// Every `STIGMER_*` control variable, read here and nowhere else (DESIGN.md §8). An empty
/// value means unset, the same in both executables. None of them ever reaches a child.
public enum ControlVariable: String, CaseIterable, Sendable {
    case home = "STIGMER_HOME"
    case store = "STIGMER_STORE"
    case server = "STIGMER_SERVER"
    case executionID = "STIGMER_EXECUTION_ID"
    case token = "STIGMER_TOKEN"
    /// The server identity a launcher pins (base64); an execution token carries its own.
    case serverKey = "STIGMER_SERVER_KEY"
    case operatorToken = "STIGMER_OPERATOR_TOKEN"
    case encryptionKey = "STIGMER_ENCRYPTION_KEY"
    case logLevel = "STIGMER_LOG_LEVEL"
    /// Where the companion is, when not beside the launcher (tests, unusual installs).
    case companion = "STIGMER_EXEC_FULL"

    /// The variable's value; nil when unset or empty.
    public var value: String? {
        guard let raw = Glibc.getenv(rawValue), raw.pointee != 0 else { return nil }
        return String(cString: raw)
    }

    /// Zeroes the values of `variables` in this process's own environment block (in place,
    /// `explicit_bzero`): read and used, they need not stay readable in /proc/PID/environ.
    /// They read as unset afterwards.
    public static func wipe(_ variables: [ControlVariable]) {
        var cursor = environ
        while let entry = cursor.pointee {
            defer { cursor += 1 }
            guard entry[0] == 0x53 else { continue }  // "S": the others cannot be ours
            for variable in variables {
                let name = variable.rawValue
                let matches = name.withCString { strncmp(entry, $0, name.utf8.count) == 0 } && entry[name.utf8.count] == 0x3D  // "="
                if matches {
                    let value = entry + name.utf8.count + 1
                    explicit_bzero(value, strlen(value))
                }
            }
        }
    }

    /// `option` when given, else the variable.
    public func or(_ option: String?) -> String? {
        if let option { return option }
        return value
    }
}
