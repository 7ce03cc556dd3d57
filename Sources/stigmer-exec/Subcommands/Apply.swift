import ArgumentParser
import StigmerCLI
import StigmerCore
import StigmerEngine
import StigmerManifests
import StigmerSystem

struct ApplyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Store Environments, Agents and AgentInstances from manifests (idempotent; all or nothing).",
        discussion: """
            Secret values are sealed under environment:<name> before they are stored; an \
            encrypted_value must open with its binding or nothing is applied.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var storeOptions: StoreOptions

    @Option(name: [.customShort("f"), .customLong("file")], help: ArgumentHelp("A manifest file (repeatable).", valueName: "FILE"))
    var files: [String] = []

    func validate() throws {
        if files.isEmpty { throw ValidationError("give at least one manifest with -f FILE") }
    }

    func run() throws {
        let logger = try global.logger()
        // Every file parses and every value seals or opens before the store is touched.
        var resources: [Resource] = []
        for path in files { resources += try Loader.resources(path: path) }
        _ = try Catalog(resources)
        let prepared = try global.engine(nil, logger).prepareForStore(resources)
        guard let store = try storeOptions.open(home: try global.resolvedHome(), create: true) else { return }
        try store.apply(prepared)
        logger.info("applied resources", metadata: ["count": "\(prepared.count)"])
        try Stdout.write(prepared.map { "\($0.kind)/\($0.name) applied\n" }.joined())
    }
}
