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

    @OptionGroup var manifests: ManifestOptions

    func run() throws {
        let logger = try global.logger()
        let prepared = try manifests.prepared(global.engine(nil, logger))
        guard let store = try storeOptions.open(home: try global.resolvedHome(), create: true) else { return }
        try store.apply(prepared)
        logger.info("applied resources", metadata: ["count": "\(prepared.count)"])
        try Stdout.write(ManifestOptions.report(prepared))
    }
}
