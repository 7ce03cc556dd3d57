/// The one error type of the package. Every failure a user can see is a `StigmerError`:
/// a stable `code` (which decides the exit status, in exactly one place: `exitStatus`),
/// a one-line `message` that says what went wrong, where, and how to fix it, and an
/// optional `cause` (an errno name, a parser's problem text) — never a secret value.
public struct StigmerError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, Equatable {
        /// Wrong command-line usage (64).
        case usage
        /// Bad input data: manifest, config, env file, sealed-value syntax (65).
        case dataError
        /// The thing to create exists already, e.g. a context id (65).
        case conflict
        /// A context or resource that does not exist (66).
        case notFound
        /// The store or server cannot be reached (69).
        case unavailable
        /// An I/O failure of the launcher itself: cannot write, cannot create (74).
        case ioError
        /// Not permitted: auth, key, permissions, decryption or tamper (77).
        case notPermitted
        /// Missing variables or unresolvable placeholders (78).
        case unresolved
        /// The command exists but cannot be executed (126).
        case notExecutable
        /// The command was not found (127).
        case commandNotFound
        /// A defect in stigmer-exec itself (70).
        case internalError
    }

    public var code: Code
    public var message: String
    public var cause: String?
    /// Set when another process (the fetch helper) already printed the line: only its
    /// exit status is passed on.
    public var alreadyReported = false
    /// The variable names an `unresolved` (78) error is about — names, never values — for
    /// `--error-fd`'s record.
    public var names: [String] = []

    public init(_ code: Code, _ message: String, cause: String? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    /// An error another process has already reported, carrying its exit status.
    public static func reported(exitStatus: Int32) -> StigmerError {
        let code: Code = switch exitStatus {
        case 64: .usage
        case 65: .dataError
        case 66: .notFound
        case 69: .unavailable
        case 74: .ioError
        case 77: .notPermitted
        case 78: .unresolved
        default: .internalError
        }
        var error = StigmerError(code, "the fetch helper failed (exit \(exitStatus))")
        error.alreadyReported = true
        return error
    }

    /// The process exit status for this error (DESIGN.md §8). The only mapping in the package.
    public var exitStatus: Int32 {
        switch code {
        case .usage: 64
        case .dataError, .conflict: 65
        case .notFound: 66
        case .unavailable: 69
        case .internalError: 70
        case .ioError: 74
        case .notPermitted: 77
        case .unresolved: 78
        case .notExecutable: 126
        case .commandNotFound: 127
        }
    }

    /// One line, suitable for stderr: the message, then the cause in parentheses.
    public var description: String {
        var line = message
        if let cause, !cause.isEmpty { line += " (\(cause))" }
        // One line, always: a newline in a message (from a file name, say) would let input
        // forge extra log lines.
        return line.replacing("\n", with: "\\n").replacing("\r", with: "\\r")
    }
}

extension StigmerError {
    public static func usage(_ message: String) -> StigmerError { .init(.usage, message) }
    public static func data(_ message: String, cause: String? = nil) -> StigmerError {
        .init(.dataError, message, cause: cause)
    }
    public static func notPermitted(_ message: String, cause: String? = nil) -> StigmerError {
        .init(.notPermitted, message, cause: cause)
    }
    public static func unresolved(_ message: String) -> StigmerError { .init(.unresolved, message) }
    public static func notFound(_ message: String) -> StigmerError { .init(.notFound, message) }
}
