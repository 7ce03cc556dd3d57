import GRPCCore
import Logging
import StigmerCore
import StigmerCrypto
import StigmerEngine
import StigmerStore
import StigmerSystem

/// Who is calling: the operator (everything, by a bearer token), or the holder of one
/// execution's token (reading exactly that context, by a signed request).
public struct ServerAuth: Sendable {
    /// SHA-256 of the operator token; compared in constant time.
    let operatorHash: String

    public init(operatorToken: String) {
        operatorHash = Tokens.hash(operatorToken)
    }

    /// Everything but an execution token's signed fetch needs the operator token.
    func requireOperator(_ metadata: Metadata) throws {
        var header: String?
        for value in metadata[stringValues: "authorization"] { header = value; break }
        guard let header, header.hasPrefix("Bearer "), header.count > 7 else {
            throw RPCError(code: .unauthenticated, message: "missing bearer token; pass --token-file, --token-fd or STIGMER_TOKEN")
        }
        guard Tokens.equal(Tokens.hash(String(header.dropFirst(7))), operatorHash) else {
            throw RPCError(code: .permissionDenied, message: "permission denied: this needs the operator token (an execution token signs its fetch and is never sent)")
        }
    }
}

/// The gRPC service (DESIGN.md §7): Get by execution id (values HPKE-sealed to the
/// caller's key), Create (merges on the server, returns a token once), Delete, Sweep.
/// Logs carry method, execution id and outcome — never a value.
public struct ExecutionContextService: Stigmer_Exec_V1_ExecutionContextService.ServiceProtocol {
    let store: any AsyncStore
    let auth: ServerAuth
    let keys: KeyRing
    let logger: Logger
    let defaultTTL: Int64
    /// Derived once: newest first.
    let identities: [ServerIdentity]

    public init(store: any AsyncStore, auth: ServerAuth, keys: KeyRing, logger: Logger, defaultTTL: Int64 = 86_400) {
        self.store = store
        self.auth = auth
        self.keys = keys
        self.identities = ServerIdentity.all(keys)
        self.logger = logger
        self.defaultTTL = defaultTTL
    }

    var engine: Engine { Engine(store: nil, keys: KeyLoader(ring: keys)) }

    /// The one place a StigmerError becomes a gRPC status.
    static func status(_ error: StigmerError) -> RPCError {
        let code: RPCError.Code = switch error.code {
        case .usage, .dataError: .invalidArgument
        case .conflict: .alreadyExists
        case .notFound: .notFound
        case .unavailable, .ioError: .unavailable
        case .notPermitted: .permissionDenied  // a refusal (a failed integrity check, say): 77 at the client
        case .unresolved: .failedPrecondition
        case .notExecutable, .commandNotFound, .internalError: .internalError
        }
        return RPCError(code: code, message: error.description)
    }

    func handle<T>(_ method: String, _ id: String, _ body: () async throws -> T) async throws -> T {
        do {
            let result = try await body()
            logger.info("rpc", metadata: ["method": "\(method)", "execution_id": "\(id)", "outcome": "ok"])
            return result
        } catch let error as StigmerError {
            logger.info("rpc", metadata: ["method": "\(method)", "execution_id": "\(id)", "outcome": "\(error.code)"])
            throw Self.status(error)
        } catch let error as RPCError {
            logger.info("rpc", metadata: ["method": "\(method)", "execution_id": "\(id)", "outcome": "\(error.code)"])
            throw error
        }
    }

    /// "Denied" and "not found" are the same answer for an execution token: a token never
    /// tells whether another execution exists.
    static let hidden = RPCError(code: .permissionDenied, message: "permission denied, or no such context for this token")

    public func getExecutionContext(request: ServerRequest<Stigmer_Exec_V1_GetExecutionContextRequest>,
                                    context: ServerContext) async throws -> ServerResponse<Stigmer_Exec_V1_GetExecutionContextResponse> {
        let message = request.message
        let id = message.executionID
        return try await handle("Get", id) {
            let recipient = Array(message.recipientPublicKey)
            let byToken = !message.tokenPublicKey.isEmpty
            if byToken {
                // An execution token signs its request; it is never sent. The signature is
                // checked first, then the token's key is looked up by its hash (an index):
                // neither step reads anything of the execution asked for, so the time taken
                // says neither whether it exists nor how large its context is.
                let proof = FetchProof(executionID: id, recipientKey: recipient, serverKey: Array(message.serverPublicKey),
                                       time: message.time, names: message.names)
                // A clock far off is said plainly: it tells nothing about any execution.
                let now = Sys.now()
                guard proof.skew(now: now) != nil else {
                    throw RPCError(code: .permissionDenied, message: "the fetch was signed at \(Time.iso8601(message.time)), more than \(FetchProof.window) s from this server's clock (\(Time.iso8601(now))); check both clocks")
                }
                let signed = proof.verify(signature: Array(message.signature), publicKey: Array(message.tokenPublicKey), now: Sys.now())
                let owner = try await store.executionID(forTokenHash: ExecutionToken.keyHash(Array(message.tokenPublicKey)))
                guard signed, let owner, Tokens.equal(owner, id) else { throw Self.hidden }
                guard recipient.count == 32 else {
                    throw RPCError(code: .invalidArgument, message: "an execution token fetches values sealed to a recipient key (32-byte X25519)")
                }
            } else {
                try auth.requireOperator(request.metadata)
            }
            try Engine.checkExecutionID(id)
            let stored = try await store.context(id)
            if byToken {
                guard let stored, stored.expiresAt > Sys.now() else { throw Self.hidden }
            }
            let live = try Engine.checkUnexpired(stored, id)
            // Whoever can write the store must not be able to hand a launcher anything.
            try engine.verify(live)
            // Least privilege: only the names the launch asked for (none: all).
            let wanted = Set(message.names)
            let selected = live.data.entries.filter { wanted.isEmpty || wanted.contains($0.name) }
            var response = Stigmer_Exec_V1_GetExecutionContextResponse()
            response.executionID = id
            response.createdAt = live.createdAt
            response.expiresAt = live.expiresAt
            response.variables = selected.map { entry in
                .with { $0.name = entry.name; $0.isSecret = entry.value.isSecret; $0.layer = entry.value.layer.description }
            }
            if !recipient.isEmpty {
                guard let identity = ServerIdentity.matching(Array(message.serverPublicKey), in: identities) else {
                    throw RPCError(code: .permissionDenied, message: "this server does not hold the server key the caller pinned; check --server-key, or the server's master key")
                }
                let opened = try engine.open(live.data, only: wanted.isEmpty ? nil : wanted, executionID: id)
                let sealed = try Delivery.seal(opened, layers: selected.map { $0.value.layer.description }, executionID: id,
                                               createdAt: live.createdAt, expiresAt: live.expiresAt, to: recipient, from: identity)
                response.encapsulatedKey = .init(sealed.encapsulatedKey)
                response.sealedContext = .init(sealed.sealed)
            }
            return ServerResponse(message: response)
        }
    }

    public func createExecutionContext(request: ServerRequest<Stigmer_Exec_V1_CreateExecutionContextRequest>,
                                       context: ServerContext) async throws -> ServerResponse<Stigmer_Exec_V1_CreateExecutionContextResponse> {
        let message = request.message
        let id = message.spec.executionID
        return try await handle("Create", id) {
            try auth.requireOperator(request.metadata)
            try Engine.checkExecutionID(id)
            var runtime = RuntimeLayer()
            for name in message.spec.data.keys.sorted() {
                guard VariableName.isValid(name) else { throw StigmerError.data(VariableName.problem(name)) }
                let value = message.spec.data[name]!
                runtime.set(name, value.value, secret: value.isSecret)
            }
            let agent = message.agent.isEmpty ? nil : message.agent
            let instance = message.instance.isEmpty ? nil : message.instance
            let snapshot = try await ResourceCatalog.load(agent: agent, instance: instance, envRefs: message.environmentRefs, from: store,
                                                          missingHint: "apply it on the server's store first")
            let input = try engine.mergeInput(agent: agent, instance: instance, envRefs: message.environmentRefs, runtime: runtime, from: snapshot)
            let identity = identities[0]
            let (token, keyHash) = ExecutionToken.issue(serverKey: identity.publicKey)
            // The CLI's bounds, here too: a lifetime of 2^63 s must not trap the server.
            if message.ttlSeconds != 0 {
                guard message.ttlSeconds > 0, message.ttlSeconds <= DurationText.maximum else {
                    throw RPCError(code: .invalidArgument, message: "ttl_seconds must be 1 to \(DurationText.maximum) (366 days), or 0 for the server's default")
                }
            }
            let ttl = message.ttlSeconds > 0 ? message.ttlSeconds : defaultTTL
            let created = try engine.prepareContext(executionID: id, input: input, ttlSeconds: ttl, tokenHash: keyHash)
            try await store.createContext(created, replace: message.replace)
            return ServerResponse(message: .with {
                $0.executionToken = token
                $0.serverPublicKey = .init(identity.publicKey)
                $0.createdAt = created.createdAt
                $0.expiresAt = created.expiresAt
                $0.variables = created.data.entries.map { entry in
                    .with { $0.name = entry.name; $0.isSecret = entry.value.isSecret; $0.layer = entry.value.layer.description }
                }
            })
        }
    }

    public func deleteExecutionContext(request: ServerRequest<Stigmer_Exec_V1_DeleteExecutionContextRequest>,
                                       context: ServerContext) async throws -> ServerResponse<Stigmer_Exec_V1_DeleteExecutionContextResponse> {
        let id = request.message.executionID
        return try await handle("Delete", id) {
            try auth.requireOperator(request.metadata)
            try Engine.checkExecutionID(id)
            let deleted = try await store.deleteContext(id)
            return ServerResponse(message: .with { $0.deleted = deleted })
        }
    }

    public func sweepExpiredContexts(request: ServerRequest<Stigmer_Exec_V1_SweepExpiredContextsRequest>,
                                     context: ServerContext) async throws -> ServerResponse<Stigmer_Exec_V1_SweepExpiredContextsResponse> {
        try await handle("Sweep", "-") {
            try auth.requireOperator(request.metadata)
            let count = try await store.deleteExpired(now: Sys.now())
            return ServerResponse(message: .with { $0.deleted = Int64(count) })
        }
    }
}
