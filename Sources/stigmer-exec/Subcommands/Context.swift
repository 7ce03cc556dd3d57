import ArgumentParser
import StigmerCLI
import StigmerCore
import StigmerEngine
import StigmerSystem

struct ContextCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "context",
        abstract: "Create, inspect and delete ExecutionContexts (values are never shown).",
        subcommands: [Create.self, Get.self, Delete.self, GC.self])

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Merge template < environments < runtime into a stored context; secrets are re-sealed under execution:<id>.")

        @OptionGroup var global: GlobalOptions
        @OptionGroup var storeOptions: StoreOptions

        @Option(name: .customLong("execution-id"), help: ArgumentHelp("The execution's id. Default: $STIGMER_EXECUTION_ID.", valueName: "ID"))
        var executionIDOption: String?

        @OptionGroup var sources: SourceOptions
        @OptionGroup var runtime: RuntimeOptions

        @Option(help: ArgumentHelp("How long the context lives (90s, 30m, 24h, 7d).", valueName: "DURATION"))
        var ttl: String = "24h"

        @Flag(help: "Replace an existing context with the same id.")
        var replace = false

        func run() throws {
            let logger = try global.logger()
            guard let id = ControlVariable.executionID.or(executionIDOption) else {
                throw StigmerError.usage("give --execution-id ID (or set STIGMER_EXECUTION_ID)")
            }
            try Engine.checkExecutionID(id)
            let ttlSeconds = try DurationText.seconds(ttl)
            let home = try global.resolvedHome()
            // Resources are read before anything is written; the runtime layer (and any
            // prompt) comes after the lookups, so a typo never costs a typed secret.
            let reader = try storeOptions.open(home: home, create: false)
            let engine = global.engine(reader, logger)
            let input = try engine.mergeInput(agent: sources.agent, instance: sources.instance, envRefs: sources.envRefs, runtime: RuntimeLayer())
            var full = input
            full.runtime = try runtime.layer().values
            let store = try reader ?? storeOptions.open(home: home, create: true)
            let context = try global.engine(store, logger).createContext(executionID: id, input: full, ttlSeconds: ttlSeconds, replace: replace)
            let secrets = context.data.entries.filter { $0.value.isSecret }.count
            logger.info("created context", metadata: ["execution_id": "\(id)", "variables": "\(context.data.count)", "secrets": "\(secrets)"])
            Stderr.line("stigmer-exec: context \(id) created: \(context.data.count) variables (\(secrets) secret), expires \(Time.iso8601(context.expiresAt))")
        }
    }

    struct Get: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a context's names, secret flags and layers; never values.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var storeOptions: StoreOptions
        @Argument(help: "The execution id.") var id: String

        func run() throws {
            let logger = try global.logger()
            let store = try storeOptions.open(home: try global.resolvedHome(), create: false)
            let context = try global.engine(store, logger).storedContext(id)
            var out = "execution  \(context.executionID)\ncreated    \(Time.iso8601(context.createdAt))\nexpires    \(Time.iso8601(context.expiresAt))\n\n"
            out += Table.render(["NAME", "SECRET", "LAYER"], context.data.entries.map { [$0.name, $0.value.isSecret ? "yes" : "no", "\($0.value.layer)"] })
            try Stdout.write(out)
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a context.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var storeOptions: StoreOptions
        @Argument(help: "The execution id.") var id: String

        func run() throws {
            _ = try global.logger()
            try Engine.checkExecutionID(id)
            guard let store = try storeOptions.open(home: try global.resolvedHome(), create: false), try store.deleteContext(id) else {
                throw StigmerError.notFound("no context for execution \(quoted(id))")
            }
            Stderr.line("stigmer-exec: context \(id) deleted")
        }
    }

    struct GC: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "gc", abstract: "Delete expired contexts; print how many.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var storeOptions: StoreOptions

        func run() throws {
            _ = try global.logger()
            let count = try storeOptions.open(home: try global.resolvedHome(), create: false)?.deleteExpired(now: Sys.now()) ?? 0
            try Stdout.write("\(count)\n")
        }
    }
}
