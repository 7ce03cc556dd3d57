import ArgumentParser
import Logging
import StigmerCLI
import StigmerCore
import StigmerCrypto
import StigmerEngine
import StigmerManifests
import StigmerRemote
import StigmerStore
import StigmerSystem

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve ExecutionContexts over gRPC (HTTP/2, TLS optional), with the TTL sweep.",
        discussion: """
            The operator token (--operator-token-file or STIGMER_OPERATOR_TOKEN) may create, read \
            and delete any context; `context create --server` returns an execution token that reads \
            exactly one. The server holds the master key; launchers do not.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var storeOptions: StoreOptions

    @Option(help: ArgumentHelp("Where to listen, HOST:PORT (port 0: any free port; the chosen one is printed).", valueName: "HOST:PORT"))
    var listen: String

    @Option(name: .customLong("tls-cert"), help: ArgumentHelp("TLS certificate chain (PEM).", valueName: "FILE")) var tlsCert: String?
    @Option(name: .customLong("tls-key"), help: ArgumentHelp("TLS private key (PEM).", valueName: "FILE")) var tlsKey: String?

    @Option(name: .customLong("health-listen"), help: ArgumentHelp("Also serve only the gRPC health service, in plaintext, here (for Kubernetes' grpc probes, which speak no TLS). The main port serves it too.", valueName: "HOST:PORT"))
    var healthListen: String?

    @Option(name: .customLong("operator-token-file"), help: ArgumentHelp("The operator token. Default: $STIGMER_OPERATOR_TOKEN.", valueName: "FILE"))
    var operatorTokenFile: String?

    @Option(name: .customLong("sweep-interval"), help: ArgumentHelp("How often expired contexts are deleted.", valueName: "DURATION"))
    var sweepInterval: String = "60s"

    @Option(help: ArgumentHelp("Default lifetime of a created context.", valueName: "DURATION"))
    var ttl: String = "24h"

    func validate() throws {
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("give --tls-cert and --tls-key together") }
    }

    func run() async throws {
        let logger = try global.logger()
        let (host, port) = try listenAddress(listen, flag: "--listen")
        let health = try healthListen.map { text throws(StigmerError) in try listenAddress(text, flag: "--health-listen") }
        let token: String
        if let operatorTokenFile {
            // The same rules as the key file: ours, 0600 or 0400 (77 otherwise).
            var bytes = try PrivateFile.read(operatorTokenFile, what: "operator token file")
            token = String(decoding: bytes, as: UTF8.self).trimmingWhitespace()
            bytes.wipe()
        } else if let env = ControlVariable.operatorToken.value {
            token = env.trimmingWhitespace()
        } else {
            throw StigmerError.usage("give the operator token with --operator-token-file or STIGMER_OPERATOR_TOKEN")
        }
        guard token.count >= 16 else { throw StigmerError.usage("the operator token is too short; use at least 16 random characters") }
        let keys = try global.keyRing(logger)
        let home = try global.resolvedHome()
        let location = storeOptions.location.location
            ?? { try? home.ensureExists(); return home.path + "/" + SQLiteStore.fileName }()
        var config = ServerConfiguration(host: host.isEmpty ? "0.0.0.0" : host, port: port, tlsCertificate: tlsCert, tlsKey: tlsKey,
                                         operatorToken: token, keys: keys, store: location,
                                         sweepInterval: .seconds(try DurationText.seconds(sweepInterval)),
                                         defaultTTL: try DurationText.seconds(ttl))
        config.healthHost = health.map { $0.host.isEmpty ? "0.0.0.0" : $0.host }
        config.healthPort = health?.port
        try await Server.run(config, logger: logger)
    }
}

struct ContextCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "context",
        abstract: "Contexts on a server (--server) or in PostgreSQL (--store postgres://…).",
        subcommands: [Create.self, Get.self, Delete.self, GC.self])

    /// Either a server or a PostgreSQL store.
    struct Target: ParsableArguments {
        @OptionGroup var remote: RemoteOptions
        @OptionGroup var storeOptions: StoreOptions

        var storeLocation: String? { storeOptions.location.location }

        func client() throws(StigmerError) -> RemoteClient? {
            guard let url = remote.serverURL else { return nil }
            return RemoteClient(address: try ServerAddress.parse(url, allowPlaintext: remote.allowPlaintext), token: try remote.token(), caFile: remote.tlsCA,
                                timeout: .seconds(try DurationText.seconds(remote.fetchTimeout)))
        }

        func postgres() throws(StigmerError) -> String {
            guard let location = storeLocation, StoreLocation.isPostgres(location) else {
                throw StigmerError.usage("give --server grpc[s]://HOST:PORT or --store postgres://…")
            }
            return location
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a context; with --server, print its execution token once on stdout.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var target: Target
        @Option(name: .customLong("execution-id"), help: ArgumentHelp("Default: $STIGMER_EXECUTION_ID.", valueName: "ID")) var executionIDOption: String?
        @OptionGroup var sources: SourceOptions
        @OptionGroup var runtime: RuntimeOptions
        @Option(help: ArgumentHelp("Lifetime (90s, 30m, 24h, 7d).", valueName: "DURATION")) var ttl: String = "24h"
        @Flag(help: "Replace an existing context with the same id.") var replace = false

        func run() async throws {
            let logger = try global.logger()
            guard let id = ControlVariable.executionID.or(executionIDOption) else {
                throw StigmerError.usage("give --execution-id ID (or set STIGMER_EXECUTION_ID)")
            }
            try Engine.checkExecutionID(id)
            let ttlSeconds = try DurationText.seconds(ttl)
            if let client = try target.client() {
                let layer = try runtime.layer()
                var request = Stigmer_Exec_V1_CreateExecutionContextRequest()
                request.spec.executionID = id
                for (name, value) in layer.values.entries {
                    guard case .plain(let text) = value.content else { continue }
                    request.spec.data[name] = .with { $0.value = text; $0.isSecret = value.isSecret }
                }
                request.ttlSeconds = ttlSeconds
                request.replace = replace
                request.agent = sources.agent ?? ""
                request.instance = sources.instance ?? ""
                request.environmentRefs = sources.envRefs
                let sent = request
                let response = try await client.call("creating the context") { service, metadata, options in
                    try await service.createExecutionContext(sent, metadata: metadata, options: options)
                }
                let secrets = response.variables.filter(\.isSecret).count
                Stderr.line("stigmer-exec: context \(id) created on \(client.address): \(response.variables.count) variables (\(secrets) secret), expires \(Time.iso8601(response.expiresAt)); its execution token follows on stdout, once")
                try Stdout.write(response.executionToken + "\n")
                return
            }
            let location = try target.postgres()
            let agent = sources.agent, instance = sources.instance, refs = sources.envRefs, replace = self.replace
            // As the launcher does: resources are looked up before the runtime layer is
            // read, so a typo never costs a typed secret; then merged, sealed, stored.
            let catalog = try await StoreFactory.with(location, logger: logger) { store in
                try await ResourceCatalog.load(agent: agent, instance: instance, envRefs: refs, from: store)
            }
            let engine = global.engine(nil, logger)
            var input = try engine.mergeInput(agent: agent, instance: instance, envRefs: refs, runtime: RuntimeLayer(), from: catalog)
            input.runtime = try runtime.layer().values
            let context = try engine.prepareContext(executionID: id, input: input, ttlSeconds: ttlSeconds)
            try await StoreFactory.with(location, logger: logger) { store in try await store.createContext(context, replace: replace) }
            let secrets = context.data.entries.filter { $0.value.isSecret }.count
            Stderr.line("stigmer-exec: context \(id) created: \(context.data.count) variables (\(secrets) secret), expires \(Time.iso8601(context.expiresAt))")
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a context's names, secret flags and layers; never values.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var target: Target
        @Argument(help: "The execution id.") var id: String

        func run() async throws {
            let logger = try global.logger()
            try Engine.checkExecutionID(id)
            var rows: [[String]] = []
            var created: Int64 = 0, expires: Int64 = 0
            if let client = try target.client() {
                let request = Stigmer_Exec_V1_GetExecutionContextRequest.with { $0.executionID = id }
                let response = try await client.call("reading the context") { service, metadata, options in
                    try await service.getExecutionContext(request, metadata: metadata, options: options)
                }
                rows = response.variables.map { [$0.name, $0.isSecret ? "yes" : "no", $0.layer] }
                created = response.createdAt
                expires = response.expiresAt
            } else {
                let id = self.id
                let context = try await StoreFactory.with(try target.postgres(), logger: logger) { store in
                    try Engine.checkUnexpired(try await store.context(id), id)
                }
                rows = context.data.entries.map { [$0.name, $0.value.isSecret ? "yes" : "no", "\($0.value.layer)"] }
                created = context.createdAt
                expires = context.expiresAt
            }
            try Stdout.write("execution  \(id)\ncreated    \(Time.iso8601(created))\nexpires    \(Time.iso8601(expires))\n\n"
                             + Table.render(["NAME", "SECRET", "LAYER"], rows))
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a context.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var target: Target
        @Argument(help: "The execution id.") var id: String

        func run() async throws {
            let logger = try global.logger()
            try Engine.checkExecutionID(id)
            let id = self.id
            let deleted: Bool
            if let client = try target.client() {
                let request = Stigmer_Exec_V1_DeleteExecutionContextRequest.with { $0.executionID = id }
                deleted = try await client.call("deleting the context") { service, metadata, options in
                    try await service.deleteExecutionContext(request, metadata: metadata, options: options)
                }.deleted
            } else {
                deleted = try await StoreFactory.with(try target.postgres(), logger: logger) { store in try await store.deleteContext(id) }
            }
            guard deleted else { throw StigmerError.notFound("no context for execution \(quoted(id))") }
            Stderr.line("stigmer-exec: context \(id) deleted")
        }
    }

    struct GC: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "gc", abstract: "Delete expired contexts; print how many.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var target: Target

        func run() async throws {
            let logger = try global.logger()
            let count: Int
            if let client = try target.client() {
                let request = Stigmer_Exec_V1_SweepExpiredContextsRequest()
                count = Int(try await client.call("sweeping") { service, metadata, options in
                    try await service.sweepExpiredContexts(request, metadata: metadata, options: options)
                }.deleted)
            } else {
                count = try await StoreFactory.with(try target.postgres(), logger: logger) { store in try await store.deleteExpired(now: Sys.now()) }
            }
            try Stdout.write("\(count)\n")
        }
    }
}

struct ApplyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "apply", abstract: "Store manifests in PostgreSQL (--store postgres://…).")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var manifests: ManifestOptions

    func run() async throws {
        let logger = try global.logger()
        guard let location = storeOptions.location.location, StoreLocation.isPostgres(location) else {
            throw StigmerError.usage("the companion's apply is for --store postgres://…")
        }
        let prepared = try manifests.prepared(global.engine(nil, logger))
        try await StoreFactory.with(location, logger: logger) { store in try await store.apply(prepared) }
        try Stdout.write(ManifestOptions.report(prepared))
    }
}

/// The fetch helper: run by `stigmer-exec run` for remote and PostgreSQL contexts. Writes a
/// `FetchFrame` to stdout: values HPKE-sealed to the launcher's key (remote), or the
/// store's ciphertext (PostgreSQL). Never holds the master key; never sees a remote value.
struct Fetch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Internal: fetch sealed values for stigmer-exec run.", shouldDisplay: false)
    @OptionGroup var global: GlobalOptions
    @OptionGroup var remote: RemoteOptions
    @OptionGroup var storeOptions: StoreOptions
    @Option(name: .customLong("execution-id")) var executionID: String
    @Option(help: "The launcher's X25519 public key, base64.") var recipient: String?
    @Option(name: .customLong("name"), help: "With --server, fetch only this variable (repeatable; none: all). A PostgreSQL fetch hands over every row, for the context's tag.") var names: [String] = []
    @Option(name: .customLong("store-fd"), help: "Read the store location from this descriptor (then close it).") var storeFD: Int32?

    func run() async throws {
        let logger = try global.logger()
        try Engine.checkExecutionID(executionID)
        let id = executionID
        let frame: FetchFrame
        if let url = remote.serverURL {
            guard let recipient, let key = Base64.decode(recipient), key.count == 32 else {
                throw StigmerError.usage("fetch needs --recipient with a base64 X25519 public key")
            }
            let address = try ServerAddress.parse(url, allowPlaintext: remote.allowPlaintext)
            // An execution token signs the request and is never sent; an operator token is a
            // bearer token, and then only --server-key pins the server.
            let secret = try remote.token()
            let token = secret.hasPrefix("stx_") || secret.hasPrefix(ExecutionToken.prefix) ? try ExecutionToken(secret) : nil
            let serverKey = try remote.inputs.pinnedServerKey(token: token)
            let client = RemoteClient(address: address, token: token == nil ? secret : nil,
                                      caFile: remote.tlsCA, timeout: .seconds(try DurationText.seconds(remote.fetchTimeout)))
            let wanted = names
            var request = Stigmer_Exec_V1_GetExecutionContextRequest.with {
                $0.executionID = id; $0.recipientPublicKey = .init(key); $0.names = wanted; $0.serverPublicKey = .init(serverKey)
            }
            if let token {
                let time = Sys.now()
                request.tokenPublicKey = .init(token.publicKey)
                request.time = time
                request.signature = .init(try token.sign(FetchProof(executionID: id, recipientKey: key, serverKey: serverKey, time: time, names: wanted)))
            }
            let signed = request
            let response = try await client.call("fetching the context") { service, metadata, options in
                try await service.getExecutionContext(signed, metadata: metadata, options: options)
            }
            // Only the sealed delivery counts: the launcher opens it and checks it came from
            // the pinned server key, for this execution.
            frame = FetchFrame(executionID: id, createdAt: response.createdAt, expiresAt: response.expiresAt,
                               encapsulatedKey: Array(response.encapsulatedKey), serverKey: serverKey,
                               authenticator: Array(response.sealedContext), values: [])
        } else {
            var location = storeOptions.location.location
            if let storeFD {
                defer { Sys.closeConsumed(storeFD) }
                do { location = String(decoding: try IO.readAll(storeFD, limit: 64 << 10), as: UTF8.self) } catch {
                    throw StigmerError(.ioError, "cannot read the store location from --store-fd \(storeFD)", cause: error.description)
                }
            }
            guard let location, StoreLocation.isPostgres(location) else {
                throw StigmerError.usage("fetch needs --server or a PostgreSQL store (STIGMER_STORE)")
            }
            // Every row, as stored, with the context's tag: the launcher checks the whole
            // context before it opens the names it needs (it holds the key here anyway).
            let context = try await StoreFactory.with(location, logger: logger) { store in
                try Engine.checkUnexpired(try await store.context(id), id)
            }
            frame = FetchFrame(executionID: id, createdAt: context.createdAt, expiresAt: context.expiresAt,
                               authenticator: Array((context.tag ?? "").utf8), tokenHash: context.tokenHash,
                               values: context.data.entries.map { entry in
                                   switch entry.value.content {
                                   case .plain(let text): .init(name: entry.name, isSecret: entry.value.isSecret, layer: "\(entry.value.layer)", kind: .plain, data: Array(text.utf8))
                                   case .sealed(let text): .init(name: entry.name, isSecret: entry.value.isSecret, layer: "\(entry.value.layer)", kind: .sealed, data: Array(text.utf8))
                                   }
                               })
        }
        do { try IO.writeAll(1, frame.encode()) } catch {
            throw StigmerError(.ioError, "cannot write to the launcher", cause: error.description)
        }
    }
}

/// HOST:PORT of a --listen flag ([IPv6] allowed; an empty host is every address).
func listenAddress(_ text: String, flag: String) throws(StigmerError) -> (host: String, port: Int) {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
        throw StigmerError.usage("invalid \(flag) \(quoted(text)); expected HOST:PORT, e.g. 127.0.0.1:7443")
    }
    var host = String(text[..<colon])
    if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    return (host, port)
}
