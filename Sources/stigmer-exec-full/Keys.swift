import ArgumentParser
import Logging
import StigmerCLI
import StigmerCore
import StigmerCrypto
import StigmerEngine
import StigmerRemote
import StigmerStore
import StigmerSystem

/// `key list|rotate|retire --store postgres://…`: the launcher's key commands (Key.swift
/// there, which documents them) on a PostgreSQL store, where the launcher hands them.
struct KeyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "key",
        abstract: "Key rotation on a PostgreSQL store (--store postgres://…).",
        subcommands: [List.self, Rotate.self, Retire.self])

    struct Target: ParsableArguments {
        @OptionGroup var global: GlobalOptions
        @OptionGroup var storeOptions: StoreOptions

        func postgres() throws(StigmerError) -> String {
            guard let location = storeOptions.location.location, StoreLocation.isPostgres(location) else {
                throw StigmerError.usage("the companion's key commands are for --store postgres://…")
            }
            return location
        }

        var place: String { quoted(StoreLocation.redacted(storeOptions.location.location ?? "")) }

        func usage(_ location: String, _ logger: Logger) async throws -> KeyUsage {
            try await StoreFactory.with(location, logger: logger) { store in try await store.keyUsage() }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the loaded keys, newest last, and how many stored things each one seals or tags.")
        @OptionGroup var target: Target

        func run() async throws {
            let logger = try target.global.logger()
            let ring = try target.global.keyRing(logger)
            try Stdout.write(Rotation.listing(ring, try await target.usage(try target.postgres(), logger)))
        }
    }

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a new key and re-seal everything stored with it (see the launcher's `key rotate --help`).")
        @OptionGroup var target: Target

        func run() async throws {
            let logger = try target.global.logger()
            let location = try target.postgres()
            let home = try target.global.resolvedHome()
            var ring = try target.global.keyRing(logger)
            let added = Rotation.needsNewKey(try await target.usage(location, logger), ring)
            if added { ring = try Rotation.addKey(to: ring, home: home, store: target.place) }
            let final = ring
            do {
                let report = try await StoreFactory.with(location, logger: logger) { store in
                    try await store.rekey(now: Sys.now(), Rotation.rekeying(final))
                }
                Stderr.line(Rotation.summary(report, key: ring.newest, added: added, ring: ring, store: target.place))
            } catch {
                throw added ? Rotation.unfinished(error, ring, home) : error
            }
        }
    }

    struct Retire: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a key from $STIGMER_HOME/encryption.key once nothing stored needs it (see the launcher's `key retire --help`).")
        @OptionGroup var target: Target
        @Argument(help: ArgumentHelp("The key's id, as `key list` shows it.", valueName: "ID")) var id: String

        func run() async throws {
            let logger = try target.global.logger()
            let ring = try target.global.keyRing(logger)
            let usage = try await target.usage(try target.postgres(), logger)
            try Rotation.retire(id, ring, usage, home: try target.global.resolvedHome(), store: target.place)
        }
    }
}
