import ArgumentParser
import StigmerCore
import StigmerStore
import StigmerSystem

/// Which store: `--store`, else `STIGMER_STORE`, else `$STIGMER_HOME/stigmer.db`.
public struct StoreOptions: ParsableArguments {
    public init() {}

    @Option(name: .long, help: ArgumentHelp("The store: a SQLite path (or sqlite:PATH). Default: $STIGMER_STORE, else $STIGMER_HOME/stigmer.db.", valueName: "STORE"))
    public var store: String?

    public func open(home: StigmerHome, create: Bool, readOnly: Bool = false) throws(StigmerError) -> SQLiteStore? {
        try location.open(home: home, create: create, readOnly: readOnly)
    }

    public var location: StoreLocation { StoreLocation(store) }

    public func validate() throws { location.warnIfPasswordInArgv() }
}

