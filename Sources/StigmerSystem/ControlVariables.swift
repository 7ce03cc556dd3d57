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

    /// `option` when given, else the variable.
    public func or(_ option: String?) -> String? {
        if let option { return option }
        return value
    }
}
