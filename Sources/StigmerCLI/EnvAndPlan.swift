import ArgumentParser
import Logging
import StigmerCore
import StigmerCrypto
import StigmerEngine
import StigmerManifests
import StigmerStore

/// What `env list|get|delete` and `plan` print, in one place for both executables: the
/// launcher's (SQLite) and the companion's (PostgreSQL) must answer alike.
public enum EnvOutput {
    public static let abstract = "List, show and delete stored Environments (secret values are never shown)."

    public static func list(_ environments: [Environment]) -> String {
        let rows = environments.map { env in
            [env.name, "\(env.spec.data.count)", "\(env.spec.data.entries.filter { $0.value.isSecret }.count)",
             printable(env.spec.summary ?? "")]
        }
        return Table.render(["NAME", "VARIABLES", "SECRETS", "DESCRIPTION"], rows)
    }

    /// An Environment's variables; a secret's value prints as `<secret>`, whatever is stored.
    public static func show(_ env: Environment) -> String {
        let rows = env.spec.data.entries.map { (variable, value) -> [String] in
            let shown: String
            switch value.content {
            case .plain(let text) where !value.isSecret: shown = printable(text)
            default: shown = "<secret>"
            }
            return [variable, value.isSecret ? "yes" : "no", shown]
        }
        return Table.render(["NAME", "SECRET", "VALUE"], rows)
    }

    public static func deleted(_ name: String) -> String { "Environment/\(name) deleted\n" }

    public static func notFound(_ name: String) -> StigmerError {
        .notFound("Environment \(quoted(name)) not found; see `stigmer-exec env list`")
    }
}

/// `plan`'s flags: manifests instead of the store, the sources and the runtime input.
public struct PlanOptions: ParsableArguments {
    public init() {}

    public static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Merge resources and runtime input as `context create` would; print each variable's name, secret flag and layer (never values).")

    @Option(name: [.customShort("f"), .customLong("file")], help: ArgumentHelp("Take resources from these manifests instead of the store (repeatable).", valueName: "FILE"))
    public var files: [String] = []

    @OptionGroup public var sources: SourceOptions
    @OptionGroup public var runtime: RuntimeOptions

    /// The resources of `-f FILE…`; nil without files (then the store's are used).
    public func manifests() throws(StigmerError) -> ResourceCatalog? {
        guard !files.isEmpty else { return nil }
        var resources: [Resource] = []
        for path in files { resources += try Loader.resources(path: path) }
        return try ResourceCatalog(manifests: resources)
    }

    /// Whether the store must be read: no manifests, and something named to read.
    public var needsStore: Bool { files.isEmpty && !sources.isEmpty }

    /// What `context create` would hold — names, secret flag, layer; never values — merged
    /// by `engine` from `manifests`, else from `stored` (what the companion read ahead from
    /// PostgreSQL), else from the engine's store. Every sealed value that made it into the
    /// result is opened (and dropped), to prove the key and bindings first.
    public func table(_ engine: Engine, manifests: ResourceCatalog?, stored: ResourceCatalog? = nil, global: GlobalOptions,
                      logger: Logger) throws(StigmerError) -> String {
        let input = try engine.mergeInput(agent: sources.agent, instance: sources.instance, envRefs: sources.envRefs,
                                          runtime: try runtime.layer(), from: manifests ?? stored)
        let merged = try Merge.merge(input)
        let sealed = merged.entries.filter { if case .sealed = $0.value.content { true } else { false } }
        if !sealed.isEmpty {
            let ring = try global.keyRing(logger)
            // Manifests may carry a value sealed for another variable: tell that from tamper.
            let known = (manifests?.sealedBindings ?? []).map { Binding.environment($0.environment, $0.name) }
            for (name, value) in sealed {
                guard case .sealed(let text) = value.content, case .environment(let env) = value.layer else { continue }
                try Sealer.check(text, for: .environment(env, name), with: ring, candidates: known)
            }
            logger.debug("opened sealed values", metadata: ["count": "\(sealed.count)"])
        }
        return Table.render(["NAME", "SECRET", "LAYER"],
                            merged.sortedEntries.map { [$0.name, $0.value.isSecret ? "yes" : "no", "\($0.value.layer)"] })
    }
}
