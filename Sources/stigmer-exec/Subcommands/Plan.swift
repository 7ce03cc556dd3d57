import ArgumentParser
import StigmerCLI
import StigmerCore
import StigmerCrypto
import StigmerManifests
import StigmerStore
import StigmerSystem

/// Shows what an ExecutionContext would hold — names, secret flag, layer; never values —
/// from manifest files (`-f`) or the store, without writing anything: a dry run of
/// `context create`. Every sealed value is opened (and dropped) to prove the key and
/// bindings are right before anything depends on them.
struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Merge resources and runtime input as `context create` would; print each variable's name, secret flag and layer (never values).")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var storeOptions: StoreOptions

    @Option(name: [.customShort("f"), .customLong("file")], help: ArgumentHelp("Take resources from these manifests instead of the store (repeatable).", valueName: "FILE"))
    var files: [String] = []

    @OptionGroup var sources: SourceOptions
    @OptionGroup var runtime: RuntimeOptions

    func run() throws {
        let logger = try global.logger()
        var catalog: ResourceCatalog?
        if !files.isEmpty {
            var resources: [Resource] = []
            for path in files { resources += try Loader.resources(path: path) }
            catalog = try ResourceCatalog(manifests: resources)
        }
        let store = catalog == nil && !sources.isEmpty
            ? try storeOptions.open(home: try global.resolvedHome(), create: false, readOnly: true) : nil
        let engine = global.engine(store, logger)
        let input = try engine.mergeInput(agent: sources.agent, instance: sources.instance, envRefs: sources.envRefs,
                                          runtime: try runtime.layer(), from: catalog)
        let merged = try Merge.merge(input)

        // Open every sealed value that made it into the result (and drop the plaintext).
        let sealed = merged.entries.filter { if case .sealed = $0.value.content { true } else { false } }
        if !sealed.isEmpty {
            let ring = try global.keyRing(logger)
            let known = (catalog?.sealedBindings ?? []).map { Binding.environment($0.environment, $0.name) }
            for (name, value) in sealed {
                guard case .sealed(let text) = value.content, case .environment(let env) = value.layer else { continue }
                try Sealer.check(text, for: .environment(env, name), with: ring, candidates: known)
            }
            logger.debug("opened sealed values", metadata: ["count": "\(sealed.count)"])
        }
        try Stdout.write(Table.render(["NAME", "SECRET", "LAYER"],
                                      merged.sortedEntries.map { [$0.name, $0.value.isSecret ? "yes" : "no", "\($0.value.layer)"] }))
    }
}
