import ArgumentParser
import StigmerCLI
import StigmerCore
import StigmerCrypto
import StigmerEngine
import StigmerStore
import StigmerSystem

struct KeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "key",
        abstract: "Create, rotate and retire encryption keys; seal or open single values.",
        subcommands: [Init.self, List.self, Rotate.self, Retire.self, Seal.self, Open.self]
    )

    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create $STIGMER_HOME/encryption.key (mode 0600, in a 0700 home). Never overwrites.")

        @OptionGroup var global: GlobalOptions

        func run() throws {
            let logger = try global.logger()
            let home = try global.resolvedHome()
            let key = try KeySource.createKeyFile(home: home)
            logger.debug("created key file", metadata: ["key": "\(key.id)"])
            Stderr.line("stigmer-exec: created encryption key \(key.id) at \(home.keyFile); back it up — values sealed with it cannot be opened without it")
        }
    }

    struct Seal: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Seal a value read from stdin; print v1:<key-id>:<base64> on stdout.",
            discussion: """
                The plaintext is read without echo on a terminal, else all of stdin (one trailing \
                newline is dropped: `printf %s` keeps it exact). Paste the result into a manifest \
                as `encrypted_value:` — only this scope and name can open it.
                """)

        @OptionGroup var global: GlobalOptions

        @Option(help: ArgumentHelp("environment:<name> or execution:<execution-id>.", valueName: "SCOPE"))
        var scope: String

        @Option(help: ArgumentHelp("The variable name the value is bound to.", valueName: "VAR"))
        var name: String

        func validate() throws {
            try usageCheck { () throws(StigmerError) in try Binding.validateScope(scope) }
            guard VariableName.isValid(name) else { throw ValidationError("--name: \(VariableName.problem(name))") }
        }

        func run() throws {
            let logger = try global.logger()
            let ring = try global.keyRing(logger)
            var plaintext = try readPlaintext()
            defer { plaintext.wipe() }
            let sealed = try Sealer.seal(plaintext, for: Binding(scope: scope, name: name), with: ring)
            logger.debug("sealed a value", metadata: ["name": "\(name)", "scope": "\(scope)", "key": "\(ring.newest.id)"])
            do { try IO.writeAll(1, sealed + "\n") } catch {
                throw StigmerError(.ioError, "cannot write the sealed value to stdout", cause: error.description)
            }
        }

        func readPlaintext() throws(StigmerError) -> [UInt8] {
            if Sys.isatty(0) {
                return try Terminal.readSecretLine(prompt: "Value for \(name) (\(scope)): ")
            }
            var bytes: [UInt8]
            do { bytes = try IO.readAll(0, limit: 1 << 20) } catch {
                throw StigmerError(.dataError, "cannot read the value from stdin (at most 1 MiB)", cause: error.description)
            }
            if bytes.last == 0x0A { bytes.removeLast(); if bytes.last == 0x0D { bytes.removeLast() } }
            return bytes
        }
    }

    struct Open: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Open a sealed value read from stdin; print the plaintext on stdout.",
            discussion: """
                The inverse of `key seal`, for recovery and for checking values made by other \
                tools (v1 or legacy form). It prints a secret: whoever runs it holds the key anyway.
                """)

        @OptionGroup var global: GlobalOptions

        @Option(help: ArgumentHelp("environment:<name> or execution:<execution-id>.", valueName: "SCOPE"))
        var scope: String

        @Option(help: ArgumentHelp("The variable name the value is bound to.", valueName: "VAR"))
        var name: String

        func validate() throws {
            try usageCheck { () throws(StigmerError) in try Binding.validateScope(scope) }
            guard VariableName.isValid(name) else { throw ValidationError("--name: \(VariableName.problem(name))") }
        }

        func run() throws {
            let logger = try global.logger()
            let ring = try global.keyRing(logger)
            let input: [UInt8]
            do { input = try IO.readAll(0, limit: 2 << 20) } catch {
                throw StigmerError(.dataError, "cannot read the sealed value from stdin", cause: error.description)
            }
            var text = String(decoding: input, as: UTF8.self)
            while let last = text.last, last.isWhitespace { text.removeLast() }
            while let first = text.first, first.isWhitespace { text.removeFirst() }
            var opened = try SecretBytes()
            try Sealer.open(text, for: Binding(scope: scope, name: name), with: ring, into: &opened)
            let written: Result<Void, Errno> = opened.withBytes(opened.entries[0]) { raw in
                do throws(Errno) { try IO.writeAll(1, raw); return .success(()) } catch { return .failure(error) }
            }
            if case .failure(let error) = written {
                throw StigmerError(.ioError, "cannot write to stdout", cause: error.description)
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the loaded keys, newest last, and how many stored things each one seals or tags.")

        @OptionGroup var global: GlobalOptions
        @OptionGroup var storeOptions: StoreOptions

        func run() throws {
            let ring = try global.keyRing(try global.logger())
            try Stdout.write(Rotation.listing(ring, try storeOptions.open(home: try global.resolvedHome(), create: false)?.keyUsage() ?? KeyUsage()))
        }
    }

    struct Rotate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a new key and re-seal everything stored with it.",
            discussion: """
                Adds a new key as the last line of $STIGMER_HOME/encryption.key (written whole and \
                renamed into place), then re-seals every stored secret — Environments and live \
                contexts — and remakes every integrity tag with it, in one transaction: all or \
                nothing. Each old tag is checked first; expired contexts are swept. When something \
                stored still depends on an older key — a rotation that was interrupted, or a key you \
                put last yourself (keys from STIGMER_ENCRYPTION_KEY or --key-fd, or shared by \
                servers) — no key is added and the newest loaded key is used: running it again \
                finishes an interrupted rotation. Older keys stay loaded until `key retire`.
                """)

        @OptionGroup var global: GlobalOptions
        @OptionGroup var storeOptions: StoreOptions

        func run() throws {
            let home = try global.resolvedHome()
            var ring = try global.keyRing(try global.logger())
            let store = try storeOptions.open(home: home, create: false)
            let place = storeOptions.location.description(home: home)
            let added = Rotation.needsNewKey(try store?.keyUsage() ?? KeyUsage(), ring)
            if added { ring = try Rotation.addKey(to: ring, home: home, store: place) }
            var report = RekeyReport()
            if let store {
                do { report = try store.rekey(now: Sys.now(), Rotation.rekeying(ring)) } catch {
                    throw added ? Rotation.unfinished(error, ring, home) : error
                }
            }
            Stderr.line(Rotation.summary(report, key: ring.newest, added: added, ring: ring, store: place))
        }
    }

    struct Retire: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a key from $STIGMER_HOME/encryption.key once nothing stored needs it.",
            discussion: """
                Refused while the key is the newest, or anything in the store is sealed or tagged \
                with it (run `key rotate` first). A store checks only itself: retire a key only \
                when no other store (another home, a PostgreSQL database) or server still needs it. \
                When the keys come from STIGMER_ENCRYPTION_KEY or --key-fd, it checks and tells you \
                to remove the key there.
                """)

        @OptionGroup var global: GlobalOptions
        @OptionGroup var storeOptions: StoreOptions
        @Argument(help: ArgumentHelp("The key's id, as `key list` shows it.", valueName: "ID")) var id: String

        func run() throws {
            let home = try global.resolvedHome()
            let ring = try global.keyRing(try global.logger())
            let usage = try storeOptions.open(home: home, create: false)?.keyUsage() ?? KeyUsage()
            try Rotation.retire(id, ring, usage, home: home, store: storeOptions.location.description(home: home))
        }
    }
}
