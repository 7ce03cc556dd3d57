import ArgumentParser
import Logging
import StigmerSystem

/// Log lines on stderr, `stigmer-exec: <level>: <message> key=value…`. Messages and
/// metadata are written by this program from names and counts only: no call site passes a
/// value, and tests scan the most verbose output for canaries.
struct StderrLogHandler: LogHandler {
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var line = "stigmer-exec: \(event.level): \(event.message)"
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        for key in merged.keys.sorted() { line += " \(key)=\(merged[key]!)" }
        Stderr.line(line)
    }
}

enum Log {
    /// Configured once, from `--log-level` or `STIGMER_LOG_LEVEL` (default: warning).
    static func bootstrap(_ level: Logger.Level) -> Logger {
        LoggingSystem.bootstrap { _ in StderrLogHandler(logLevel: level) }
        return Logger(label: "stigmer-exec")
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
