import ArgumentParser
import StigmerCLI
import StigmerCore
import StigmerRemote
import StigmerStore

/// `env list|get|delete` on a PostgreSQL store: what the launcher does on SQLite, with the
/// same output and errors (EnvOutput).
struct EnvCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "env", abstract: EnvOutput.abstract, subcommands: [List.self, Get.self, Delete.self])

    /// The PostgreSQL store of `--store`/`STIGMER_STORE`: the launcher hands only those over.
    struct Target: ParsableArguments {
        @OptionGroup var global: GlobalOptions
        @OptionGroup var storeOptions: StoreOptions

        func with<T: Sendable>(_ body: @Sendable @escaping (any AsyncStore) async throws -> T) async throws -> T {
            let logger = try global.logger()
            guard let location = storeOptions.location.location, StoreLocation.isPostgres(location) else {
                throw StigmerError.usage("the companion's env is for --store postgres://…")
            }
            return try await StoreFactory.with(location, logger: logger, body)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List Environments.")
        @OptionGroup var target: Target

        func run() async throws {
            try Stdout.write(EnvOutput.list(try await target.with { store in try await store.environments() }))
        }
    }

    /// An Environment by name: what `body` finds for it, or "not found" (66).
    struct Named: ParsableArguments {
        @OptionGroup var target: Target
        @Argument(help: "The Environment's name.") var name: String

        func found<T: Sendable>(_ body: @Sendable @escaping (any AsyncStore, String) async throws -> T?) async throws -> T {
            let name = self.name
            guard let found = try await target.with({ store in try await body(store, name) }) else { throw EnvOutput.notFound(name) }
            return found
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show an Environment's variables; secret values print as <secret>.")
        @OptionGroup var named: Named

        func run() async throws {
            try Stdout.write(EnvOutput.show(try await named.found { store, name in try await store.environment(name) }))
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete an Environment.")
        @OptionGroup var named: Named

        func run() async throws {
            _ = try await named.found { store, name in try await store.deleteEnvironment(name) ? true : nil }
            try Stdout.write(EnvOutput.deleted(named.name))
        }
    }
}

/// `plan` on a PostgreSQL store: the resources it names are read ahead (as `context create`
/// does here), then merged and printed exactly as the launcher does on SQLite.
struct PlanCommand: AsyncParsableCommand {
    static let configuration = PlanOptions.configuration

    @OptionGroup var global: GlobalOptions
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var plan: PlanOptions

    func run() async throws {
        let logger = try global.logger()
        let manifests = try plan.manifests()
        var stored: ResourceCatalog?
        if plan.needsStore {
            guard let location = storeOptions.location.location, StoreLocation.isPostgres(location) else {
                throw StigmerError.usage("the companion's plan is for --store postgres://…")
            }
            let (agent, instance, refs) = (plan.sources.agent, plan.sources.instance, plan.sources.envRefs)
            stored = try await StoreFactory.with(location, logger: logger) { store in
                try await ResourceCatalog.load(agent: agent, instance: instance, envRefs: refs, from: store)
            }
        }
        try Stdout.write(try plan.table(global.engine(nil, logger), manifests: manifests, stored: stored, global: global, logger: logger))
    }
}
