import ArgumentParser
import StigmerCLI

/// Shows what an ExecutionContext would hold — names, secret flag, layer; never values —
/// from manifest files (`-f`) or the embedded store, without writing anything: a dry run of
/// `context create` (PlanOptions.table). On a PostgreSQL store, the companion's.
struct PlanCommand: ParsableCommand {
    static let configuration = PlanOptions.configuration

    @OptionGroup var global: GlobalOptions
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var plan: PlanOptions

    func run() throws {
        let logger = try global.logger()
        let manifests = try plan.manifests()
        let store = plan.needsStore ? try storeOptions.open(home: try global.resolvedHome(), create: false, readOnly: true) : nil
        try Stdout.write(try plan.table(global.engine(store, logger), manifests: manifests, global: global, logger: logger))
    }
}
