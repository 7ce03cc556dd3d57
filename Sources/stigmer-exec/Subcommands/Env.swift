import ArgumentParser
import StigmerCLI
import StigmerCore
import StigmerSystem

struct EnvCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "env",
        abstract: "List, show and delete stored Environments (secret values are never shown).",
        subcommands: [List.self, Get.self, Delete.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List Environments.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var storeOptions: StoreOptions

        func run() throws {
            _ = try global.logger()
            let environments = try storeOptions.open(home: try global.resolvedHome(), create: false)?.environments() ?? []
            let rows = environments.map { env in
                [env.name, "\(env.spec.data.count)", "\(env.spec.data.entries.filter { $0.value.isSecret }.count)",
                 printable(env.spec.summary ?? "")]
            }
            try Stdout.write(Table.render(["NAME", "VARIABLES", "SECRETS", "DESCRIPTION"], rows))
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
                throw StigmerError.notFound("Environment \(quoted(name)) not found; see `stigmer-exec env list`")
            }
            let rows = env.spec.data.entries.map { (variable, value) -> [String] in
                let shown: String
                switch value.content {
                case .plain(let text) where !value.isSecret: shown = printable(text)
                default: shown = "<secret>"
                }
                return [variable, value.isSecret ? "yes" : "no", shown]
            }
            try Stdout.write(Table.render(["NAME", "SECRET", "VALUE"], rows))
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
                throw StigmerError.notFound("Environment \(quoted(name)) not found; see `stigmer-exec env list`")
            }
            try Stdout.write("Environment/\(name) deleted\n")
        }
    }
}
