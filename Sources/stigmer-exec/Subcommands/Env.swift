import ArgumentParser
import StigmerCLI
import StigmerCore
import StigmerSystem

/// On the embedded store; a PostgreSQL store's are the companion's (same output, EnvOutput).
struct EnvCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "env", abstract: EnvOutput.abstract, subcommands: [List.self, Get.self, Delete.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List Environments.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var storeOptions: StoreOptions

        func run() throws {
            _ = try global.logger()
            let environments = try storeOptions.open(home: try global.resolvedHome(), create: false)?.environments() ?? []
            try Stdout.write(EnvOutput.list(environments))
        }
    }

    struct Get: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show an Environment's variables; secret values print as <secret>.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var storeOptions: StoreOptions
        @Argument(help: "The Environment's name.") var name: String

        func run() throws {
            _ = try global.logger()
            guard let env = try storeOptions.open(home: try global.resolvedHome(), create: false)?.environment(name) else {
                throw EnvOutput.notFound(name)
            }
            try Stdout.write(EnvOutput.show(env))
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete an Environment.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var storeOptions: StoreOptions
        @Argument(help: "The Environment's name.") var name: String

        func run() throws {
            _ = try global.logger()
            guard let store = try storeOptions.open(home: try global.resolvedHome(), create: false), try store.deleteEnvironment(name) else {
                throw EnvOutput.notFound(name)
            }
            try Stdout.write(EnvOutput.deleted(name))
        }
    }
}
