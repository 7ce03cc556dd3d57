import ArgumentParser
import StigmerCore
import StigmerEngine
import StigmerManifests
import StigmerStore

/// `apply -f …`, the same in both executables: what is read, what is checked, what is
/// printed.
public struct ManifestOptions: ParsableArguments {
    public init() {}

    @Option(name: [.customShort("f"), .customLong("file")], help: ArgumentHelp("A manifest file, a directory of .yaml/.yml/.json files, or - for stdin (repeatable).", valueName: "PATH"))
    public var files: [String] = []

    public func validate() throws {
        if files.isEmpty { throw ValidationError("give at least one manifest with -f FILE (or a directory, or - for stdin)") }
    }

    /// Every manifest read and parsed, names unique across them, every secret sealed (or
    /// its sealed form checked against its binding) — before any store is touched.
    public func prepared(_ engine: Engine) throws(StigmerError) -> [Resource] {
        var resources: [Resource] = []
        for path in files { resources += try Loader.resources(path: path) }
        _ = try ResourceCatalog(manifests: resources)
        return try engine.prepareForStore(resources)
    }

    public static func report(_ applied: [Resource]) -> String {
        applied.map { "\($0.kind)/\($0.name) applied\n" }.joined()
    }
}
