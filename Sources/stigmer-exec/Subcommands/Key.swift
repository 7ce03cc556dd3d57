import ArgumentParser
import StigmerCLI
import StigmerCore
import StigmerCrypto
import StigmerSystem

struct KeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "key",
        abstract: "Create the encryption key, and seal or open single values.",
        subcommands: [Init.self, Seal.self, Open.self]
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
}
