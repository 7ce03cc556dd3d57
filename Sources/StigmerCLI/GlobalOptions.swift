import ArgumentParser
import Logging
import StigmerCore
import StigmerCrypto
import StigmerEngine
import StigmerStore
import StigmerSystem

/// Options every command shares: where the home is, where the key comes from, how much
/// to log. The behaviour lives in `Settings`, which the `run` fast path fills by hand.
public struct GlobalOptions: ParsableArguments {
    public init() {}

    @Option(name: .long, help: ArgumentHelp("The stigmer-exec home (key, store). Default: $STIGMER_HOME, else ~/.stigmer.", valueName: "DIR"))
    public var home: String?

    @Option(name: .customLong("key-fd"), help: ArgumentHelp("Read the encryption key from this descriptor (then close it). Overrides STIGMER_ENCRYPTION_KEY and the key file.", valueName: "N"))
    public var keyFD: Int32?

    @Option(name: .customLong("error-fd"), help: ArgumentHelp("On a failure of stigmer-exec itself (not of the command it runs), also write one JSON line to this descriptor: {\"status\", \"code\", \"message\", \"names\"}. Closed when the child starts: no line means the exit status is the child's.", valueName: "N"))
    public var errorFD: Int32?

    @Option(name: .customLong("log-level"), help: ArgumentHelp("trace, debug, info, notice, warning, error or critical. Default: $STIGMER_LOG_LEVEL, else warning.", valueName: "LEVEL"))
    public var logLevel: Logger.Level?

    public func validate() throws {
        if let keyFD, keyFD < 0 { throw ValidationError("--key-fd must be a descriptor number (0 or more)") }
        if let errorFD {
            guard errorFD > 2 else { throw ValidationError("--error-fd must be a descriptor number of 3 or more") }
            guard errorFD != keyFD else { throw ValidationError("--error-fd and --key-fd must be different descriptors") }
            ErrorReport.use(errorFD)
        }
    }

    public var settings: Settings { Settings(home: home, keyFD: keyFD, logLevel: logLevel, errorFD: errorFD) }

    public func logger() throws(StigmerError) -> Logger { try settings.logger() }
    public func resolvedHome() throws(StigmerError) -> StigmerHome { try settings.resolvedHome() }
    public func engine(_ store: (any Store)?, _ logger: Logger) -> Engine { settings.engine(store, logger) }
    public func keyRing(_ logger: Logger) throws(StigmerError) -> KeyRing { try settings.keyRing(logger) }
}

public struct Settings: Equatable {
    public var home: String?
    public var keyFD: Int32?
    public var logLevel: Logger.Level?
    public var errorFD: Int32?

    public init(home: String? = nil, keyFD: Int32? = nil, logLevel: Logger.Level? = nil, errorFD: Int32? = nil) {
        self.home = home
        self.keyFD = keyFD
        self.logLevel = logLevel
        self.errorFD = errorFD
    }

    public func logger() throws(StigmerError) -> Logger {
        var level = logLevel ?? .warning
        if logLevel == nil, let text = ControlVariable.logLevel.value {
            guard let parsed = Logger.Level(rawValue: text.lowercased()) else {
                throw .usage("STIGMER_LOG_LEVEL=\(quoted(text)) is not a level; use trace, debug, info, notice, warning, error or critical")
            }
            level = parsed
        }
        return Log.bootstrap(level)
    }

    public func resolvedHome() throws(StigmerError) -> StigmerHome {
        try StigmerHome.resolve(home)
    }

    /// The engine over `store`, loading keys only when a secret needs them.
    public func engine(_ store: (any Store)?, _ logger: Logger) -> Engine {
        Engine(store: store, keys: keys(logger))
    }

    public func keys(_ logger: Logger) -> KeyLoader {
        KeyLoader(keyFD: keyFD, home: home) { message in logger.debug("\(message())") }
    }

    public func keyRing(_ logger: Logger) throws(StigmerError) -> KeyRing { try keys(logger).load() }
}
