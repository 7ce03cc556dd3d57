import ArgumentParser
import Logging
import StigmerSystem

/// Log lines on stderr, `stigmer-exec: <level>: <message> key=value…`. Messages and
/// metadata are written by this program from names and counts only: no call site passes a
/// value, and tests scan the most verbose output for canaries.
public struct StderrLogHandler: LogHandler {
    public init(logLevel: Logger.Level) { self.logLevel = logLevel }

    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = "stigmer-exec: \(event.level): \(event.message)"
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        for key in merged.keys.sorted() { line += " \(key)=\(merged[key]!)" }
        Stderr.line(line)
    }
}

public enum Log {
    /// Set by the companion, whose libraries log through `LoggingSystem`: theirs then get
    /// this handler and level too. The launcher's logger is made directly; bootstrapping
    /// the global system (its boxes, locks and generic metadata) cost more than the rest of
    /// its logging on every launch.
    nonisolated(unsafe) public static var bootstrapsSystem = false

    /// Configured once, from `--log-level` or `STIGMER_LOG_LEVEL` (default: warning).
    public static func bootstrap(_ level: Logger.Level) -> Logger {
        guard bootstrapsSystem else {
            return Logger(label: "stigmer-exec") { _ in StderrLogHandler(logLevel: level) }
        }
        LoggingSystem.bootstrap { _ in StderrLogHandler(logLevel: level) }
        return Logger(label: "stigmer-exec")
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
