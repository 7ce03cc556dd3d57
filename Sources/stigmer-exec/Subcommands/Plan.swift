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
        var catalog: Catalog?
        if !files.isEmpty {
            var resources: [Resource] = []
            for path in files { resources += try Loader.resources(path: path) }
            catalog = try Catalog(resources)
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
            let known = catalog?.sealedBindings ?? []
            for (name, value) in sealed {
                guard case .sealed(let text) = value.content, case .environment(let env) = value.layer else { continue }
                var plaintext = try Sealer.open(text, for: .environment(env, name), with: ring, candidates: known)
                for i in plaintext.indices { plaintext[i] = 0 }
            }
            logger.debug("opened sealed values", metadata: ["count": "\(sealed.count)"])
        }
        try Stdout.write(Table.render(["NAME", "SECRET", "LAYER"],
                                      merged.sortedEntries.map { [$0.name, $0.value.isSecret ? "yes" : "no", "\($0.value.layer)"] }))
    }
}

/// Resources by kind and name, from manifests; a name defined twice is an error.
struct Catalog: ResourceLookup {
    var environments: [String: Environment] = [:]
    var agents: [String: Agent] = [:]
    var instances: [String: AgentInstance] = [:]

    init(_ resources: [Resource]) throws(StigmerError) {
        for resource in resources {
            let duplicate: Bool
            switch resource {
            case .environment(let e): duplicate = environments.updateValue(e, forKey: e.name) != nil
            case .agent(let a), .mcpServer(let a): duplicate = agents.updateValue(a, forKey: a.name) != nil
            case .agentInstance(let i): duplicate = instances.updateValue(i, forKey: i.name) != nil
            }
            if duplicate { throw .data("\(resource) is defined more than once in the given manifests; keep one") }
        }
    }

    func environment(_ name: String) throws(StigmerError) -> Environment? { environments[name] }
    func agent(_ name: String) throws(StigmerError) -> Agent? { agents[name] }
    func instance(_ name: String) throws(StigmerError) -> AgentInstance? { instances[name] }
    var missingHint: String { "it is not in the given manifests; add its file with -f" }

    /// Every (environment, name) that holds a sealed value: candidates for telling a value
    /// moved between variables apart from a tampered one.
    var sealedBindings: [Binding] {
        environments.values.flatMap { env in
            env.spec.data.entries.compactMap { entry -> Binding? in
                if case .sealed = entry.value.content { return .environment(env.name, entry.name) }
                return nil
            }
        }
    }
}
