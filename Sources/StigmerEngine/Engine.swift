import StigmerCore
import StigmerCrypto
import StigmerStore
import StigmerSystem

/// The operations between the CLI and the store: apply, merge from stored resources,
/// create contexts, and open a context for launch. The key is loaded only when a secret
/// is actually involved.
public struct Engine {
    public let store: (any Store)?
    public let keys: KeyLoader

    public init(store: (any Store)?, keys: KeyLoader) {
        self.store = store
        self.keys = keys
    }

    func requireStore(_ what: String) throws(StigmerError) -> any Store {
        guard let store else {
            throw .notFound("\(what): nothing has been stored yet; `stigmer-exec apply -f MANIFEST` first")
        }
        return store
    }

    // MARK: apply

    /// Seals every plaintext secret for its Environment and checks every sealed value
    /// opens with its binding — so a value that could never be used is refused now, not at
    /// launch time — then tags each resource (`ResourceTags`). Returns the resources as
    /// they are to be stored.
    public func prepareForStore(_ resources: [Resource]) throws(StigmerError) -> [Resource] {
        let ring = try keys.load()
        return try sealSecrets(resources).map { ResourceTags.tagged($0, with: ring) }
    }

    func sealSecrets(_ resources: [Resource]) throws(StigmerError) -> [Resource] {
        let candidates = resources.flatMap { resource -> [Binding] in
            guard case .environment(let env) = resource else { return [] }
            return env.spec.data.entries.compactMap { entry in
                if case .sealed = entry.value.content { return .environment(env.name, entry.name) }
                return nil
            }
        }
        var out: [Resource] = []
        for resource in resources {
            guard case .environment(var env) = resource else { out.append(resource); continue }
            for (name, value) in env.spec.data.entries where value.isSecret {
                let binding = Binding.environment(env.name, name)
                switch value.content {
                case .plain(let text):
                    var sealedValue = value
                    sealedValue.content = .sealed(try Sealer.seal(Array(text.utf8), for: binding, with: try keys.load()))
                    env.spec.data[name] = sealedValue
                case .sealed(let text) where !text.hasPrefix("v1:"):
                    // Legacy (Stigmer's unbound form): opened once, stored re-sealed as v1,
                    // bound to this environment and name.
                    let ring = try keys.load()
                    var opened = try SecretBytes()
                    try Sealer.open(text, for: binding, with: ring, candidates: candidates, into: &opened)
                    var resealed = value
                    resealed.content = .sealed(try Sealer.seal(opened.entries[0], of: opened, for: binding, with: ring))
                    env.spec.data[name] = resealed
                case .sealed(let text):
                    try Sealer.check(text, for: binding, with: try keys.load(), candidates: candidates)
                case nil:
                    break
                }
            }
            out.append(.environment(env))
        }
        return out
    }

    // MARK: merge

    /// The merge input from named resources — the store's, or `resources` when given:
    /// `--instance` (its agent and environments), or `--agent` and `--env-ref`s, plus the
    /// runtime layer.
    public func mergeInput(agent: String?, instance: String?, envRefs: [String], runtime: RuntimeLayer,
                           from resources: (any ResourceLookup)? = nil) throws(StigmerError) -> MergeInput {
        func lookup(_ what: String) throws(StigmerError) -> any ResourceLookup {
            if let resources { return resources }
            return try requireStore(what)
        }
        var agentName = agent
        var refs = envRefs
        if let instance {
            let source = try lookup("AgentInstance \(quoted(instance))")
            guard let found = try source.instance(instance) else {
                throw .notFound("AgentInstance \(quoted(instance)) not found; \(source.missingHint)")
            }
            try checkTag(.agentInstance(found), from: source)
            if let agentName, agentName != found.agentID {
                throw .usage("--agent \(agentName) does not match AgentInstance \(instance), whose agent is \(found.agentID)")
            }
            agentName = found.agentID
            refs = found.environmentRefs
        }
        var input = MergeInput(runtime: runtime.values)
        if let agentName {
            let source = try lookup("Agent \(quoted(agentName))")
            guard let found = try source.agent(agentName) else {
                throw .notFound("Agent \(quoted(agentName)) not found; \(source.missingHint)")
            }
            try checkTag(.agent(found), from: source)
            input.template = found.envSpec
        }
        for ref in refs {
            let source = try lookup("Environment \(quoted(ref))")
            guard let found = try source.environment(ref) else {
                throw .notFound("Environment \(quoted(ref)) not found; \(source.missingHint)")
            }
            try checkTag(.environment(found), from: source)
            input.environments.append(found)
        }
        return input
    }

    /// A resource read from a store is used only as stigmer-exec wrote it.
    func checkTag(_ resource: Resource, from source: any ResourceLookup) throws(StigmerError) {
        guard source.fromStore else { return }
        try ResourceTags.verify(resource, with: try keys.load())
    }

    // MARK: contexts

    /// Merges, re-seals every secret under `execution:<id>`, and stores the context.
    /// Nothing is stored unless every step succeeds.
    @discardableResult
    public func createContext(executionID: String, input: MergeInput, ttlSeconds: Int64, replace: Bool) throws(StigmerError) -> ExecutionContext {
        let store = try requireStore("context \(quoted(executionID))")
        let context = try prepareContext(executionID: executionID, input: input, ttlSeconds: ttlSeconds)
        try store.createContext(context, replace: replace)
        return context
    }

    /// The context `createContext` would store: merged, every secret re-sealed under
    /// `execution:<id>`, the whole tagged under the key (`ContextTag`). Stores nothing (the
    /// server stores it in its own store).
    public func prepareContext(executionID: String, input: MergeInput, ttlSeconds: Int64, tokenHash: String? = nil) throws(StigmerError) -> ExecutionContext {
        try Self.checkExecutionID(executionID)
        try DurationText.check(ttlSeconds)
        var merged = try Merge.merge(input)
        let ring = try keys.load()
        if merged.entries.contains(where: { $0.value.isSecret }) {
            var opened = try SecretBytes()
            for (name, value) in merged.entries where value.isSecret {
                var resealed = value
                let binding = Binding.execution(executionID, name)
                switch value.content {
                case .plain(let text):
                    resealed.content = .sealed(try Sealer.seal(Array(text.utf8), for: binding, with: ring))
                case .sealed(let sealed):
                    guard case .environment(let env) = value.layer else {
                        throw StigmerError(.internalError, "sealed value for \(name) outside an environment")
                    }
                    try Sealer.open(sealed, for: .environment(env, name), with: ring, into: &opened)
                    resealed.content = .sealed(try Sealer.seal(opened.entries[opened.entries.count - 1], of: opened, for: binding, with: ring))
                }
                merged[name] = resealed
            }
        }
        let now = Sys.now()
        let (expiry, overflow) = now.addingReportingOverflow(ttlSeconds)
        var context = ExecutionContext(executionID: executionID, data: merged, createdAt: now, expiresAt: overflow ? .max : expiry, tokenHash: tokenHash)
        let (header, entries) = Self.tagInput(context)
        context.tag = ContextTag.tag(header, entries, with: ring)
        return context
    }

    /// What a context's integrity tag covers.
    static func tagInput(_ context: ExecutionContext) -> (ContextTag.Header, [ContextTag.Entry]) {
        let header = ContextTag.Header(executionID: context.executionID, createdAt: context.createdAt, expiresAt: context.expiresAt,
                                       tokenHash: context.tokenHash)
        let entries = context.data.entries.map { name, value in
            switch value.content {
            case .plain(let text): ContextTag.Entry(name: name, isSecret: value.isSecret, sealed: false, layer: value.layer.description, text: Array(text.utf8))
            case .sealed(let text): ContextTag.Entry(name: name, isSecret: value.isSecret, sealed: true, layer: value.layer.description, text: Array(text.utf8))
            }
        }
        return (header, entries)
    }

    /// Refuses a stored context that stigmer-exec did not write as it is (`ContextTag`).
    public func verify(_ context: ExecutionContext) throws(StigmerError) {
        let (header, entries) = Self.tagInput(context)
        try ContextTag.verify(context.tag, header, entries, with: try keys.load())
    }

    /// A context's expiry check, shared by every store (66 when gone).
    public static func checkUnexpired(_ context: ExecutionContext?, _ executionID: String) throws(StigmerError) -> ExecutionContext {
        guard let context else {
            throw .notFound("no context for execution \(quoted(executionID)); create it with `stigmer-exec context create --execution-id \(executionID)`")
        }
        guard context.expiresAt > Sys.now() else {
            throw .notFound("the context for execution \(quoted(executionID)) expired at \(Time.iso8601(context.expiresAt)); create it again")
        }
        return context
    }

    public static func checkExecutionID(_ id: String) throws(StigmerError) {
        guard !id.isEmpty, id.utf8.count <= 256,
              id.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw .usage("invalid execution id \(quoted(id)): use 1 to 256 printable ASCII characters without spaces")
        }
    }

    /// A stored context, intact (77 when not) and unexpired (66 when gone).
    public func storedContext(_ executionID: String) throws(StigmerError) -> ExecutionContext {
        try Self.checkExecutionID(executionID)
        let context = try store?.context(executionID)
        if let context { try verify(context) }
        return try Self.checkUnexpired(context, executionID)
    }

    // MARK: plaintext for launch

    /// Opens the values named in `names` (all when nil) of a merged or stored set, in
    /// order, straight into one `SecretBytes`: least privilege, nothing else is decrypted.
    /// Sealed values are opened with the binding their layer implies; any failure stops
    /// everything and wipes what was opened.
    public func open(_ data: Variables<ExecutionValue>, only names: Set<String>?, executionID: String?) throws(StigmerError) -> SecretBytes {
        let selected = data.entries.filter { names?.contains($0.name) ?? true }
        var needsKey = false
        var capacity = 0
        for (_, value) in selected {
            switch value.content {
            case .plain(let text): capacity += text.utf8.count
            case .sealed(let text): capacity += text.utf8.count; needsKey = true
            }
        }
        let ring = needsKey ? try keys.load() : nil
        var out = try SecretBytes(capacity: capacity)
        for (name, value) in selected {
            switch value.content {
            case .plain(let text):
                // A stored context's secret is sealed under its execution: one that is
                // not was written by whoever can write the store, not by us.
                if executionID != nil && value.isSecret {
                    throw .notPermitted("the context's secret \(name) is stored unsealed; the store was written by something other than stigmer-exec — refusing to use it")
                }
                try out.append(name, isSecret: value.isSecret, Array(text.utf8))
            case .sealed(let sealed):
                let binding: Binding
                if let executionID {
                    binding = .execution(executionID, name)
                } else if case .environment(let env) = value.layer {
                    binding = .environment(env, name)
                } else {
                    throw StigmerError(.internalError, "sealed value for \(name) has no binding")
                }
                try Sealer.open(sealed, for: binding, with: ring!, into: &out, isSecret: value.isSecret, allowLegacy: executionID == nil)
            }
        }
        return out
    }

    /// Opens what the fetch helper returned (DESIGN.md §9): HPKE values with this launch's
    /// ephemeral key, values sealed at rest with the key ring, under the execution binding.
    /// Only `names` are kept; anything else that came is wiped.
    /// A remote frame (`serverKey` set) is one delivery, authenticated by that key, and
    /// nothing else; a PostgreSQL frame carries every row and the context's tag.
    public func open(_ frame: FetchFrame, recipient: Delivery.Recipient?, only names: Set<String>?) throws(StigmerError) -> SecretBytes {
        var out = try SecretBytes(capacity: max(frame.authenticator.count, frame.values.reduce(0) { $0 + $1.data.count }))
        var expiresAt = frame.expiresAt
        if !frame.serverKey.isEmpty {
            guard let recipient, frame.values.isEmpty else {
                throw .notPermitted("the fetch helper returned values this launch did not ask for; refusing to use them")
            }
            // The delivery opens whole; what was not asked for is dropped below.
            expiresAt = try recipient.open(frame.authenticator, encapsulatedKey: frame.encapsulatedKey, serverKey: frame.serverKey,
                                           executionID: frame.executionID, into: &out).expiresAt
        } else {
            let header = ContextTag.Header(executionID: frame.executionID, createdAt: frame.createdAt, expiresAt: frame.expiresAt,
                                           tokenHash: frame.tokenHash)
            let entries = frame.values.map {
                ContextTag.Entry(name: $0.name, isSecret: $0.isSecret, sealed: $0.kind == .sealed, layer: $0.layer, text: $0.data)
            }
            try ContextTag.verify(frame.authenticator.isEmpty ? nil : String(decoding: frame.authenticator, as: UTF8.self),
                                  header, entries, with: try keys.load())
        }
        guard expiresAt > Sys.now() else {
            throw .notFound("the context for execution \(quoted(frame.executionID)) expired at \(Time.iso8601(expiresAt)); create it again")
        }
        for value in frame.values where names?.contains(value.name) ?? true {
            switch value.kind {
            case .plain:
                if value.isSecret {
                    throw .notPermitted("the context's secret \(value.name) is stored unsealed; the store was written by something other than stigmer-exec — refusing to use it")
                }
                try out.append(value.name, isSecret: false, value.data)
            case .sealed:
                try Sealer.open(String(decoding: value.data, as: UTF8.self), for: .execution(frame.executionID, value.name), with: try keys.load(),
                                into: &out, isSecret: value.isSecret, allowLegacy: false)
            }
        }
        if let names { out.keepOnly(names) }
        return out
    }
}

/// Durations (`--ttl`): `90s`, `30m`, `24h`, `7d`, combined as `1h30m`.
public enum DurationText {
    public static func seconds(_ text: String) throws(StigmerError) -> Int64 {
        var total: Int64 = 0
        var number: Int64 = 0
        var digits = 0
        for ch in text {
            if let d = ch.wholeNumberValue, ch.isASCII {
                number = number * 10 + Int64(d)
                digits += 1
                guard digits <= 9 else { break }
                continue
            }
            let unit: Int64
            switch ch {
            case "s": unit = 1
            case "m": unit = 60
            case "h": unit = 3600
            case "d": unit = 86400
            default: unit = 0
            }
            guard unit > 0, digits > 0 else { digits = -1; break }
            total = min(total + number * unit, maximum + 1)  // saturating: no input can overflow
            number = 0
            digits = 0
        }
        guard digits == 0, total > 0, total <= maximum else {
            throw .usage("invalid duration \(quoted(text)); use e.g. 90s, 30m, 24h, 7d or 1h30m (at most 366d)")
        }
        return total
    }

    /// The longest lifetime a context may have, wherever it is asked for (CLI or API).
    public static let maximum: Int64 = 366 * 86400

    /// The same bounds on a number of seconds that came another way (`ttl_seconds`).
    public static func check(_ seconds: Int64) throws(StigmerError) {
        guard seconds > 0, seconds <= maximum else {
            throw .usage("invalid lifetime of \(seconds) seconds; give 1 to \(maximum) (366 days)")
        }
    }
}

/// UTC timestamps without Foundation.
public enum Time {
    public static func iso8601(_ seconds: Int64) -> String {
        var days = seconds / 86400
        var rem = seconds % 86400
        if rem < 0 { rem += 86400; days -= 1 }
        // Civil-from-days (Howard Hinnant).
        let z = days + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
        func two(_ n: Int64) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(y)-\(two(m))-\(two(d))T\(two(rem / 3600)):\(two(rem / 60 % 60)):\(two(rem % 60))Z"
    }
}

/// The integrity tags of stored resources (`IntegrityTag`, purpose "resource tag"): over
/// what the store keeps of each — kind, name, description, and every value's name, flag,
/// content and description in order; an AgentInstance's agent and environment refs — so
/// whoever can write the store but holds no key cannot add an `LD_PRELOAD` to an
/// Environment, point an instance at another environment, or change a default.
public enum ResourceTags {
    static let purpose = "resource tag"

    static func message(_ resource: Resource) -> [UInt8] {
        var c = Canonical("stigmer-exec/v1 resource")
        func optional(_ text: String?) { c.add(text != nil); c.add(text ?? "") }
        func values(_ data: Variables<EnvironmentValue>) {
            c.add(Int64(data.entries.count))
            for (name, value) in data.entries {
                c.add(name)
                c.add(value.isSecret)
                switch value.content {
                case nil: c.add(Int64(0)); c.add("")
                case .plain(let text): c.add(Int64(1)); c.add(text)
                case .sealed(let text): c.add(Int64(2)); c.add(text)
                }
                optional(value.summary)
            }
        }
        switch resource {
        case .environment(let e):
            c.add("Environment"); c.add(e.name); optional(e.spec.summary); values(e.spec.data)
        case .agent(let a), .mcpServer(let a):
            // Agents and McpServers share one namespace, and a lookup does not say which.
            c.add("Agent"); c.add(a.name); optional(a.summary); values(a.envSpec.data)
        case .agentInstance(let i):
            c.add("AgentInstance"); c.add(i.name); c.add(i.agentID)
            c.add(Int64(i.environmentRefs.count))
            for ref in i.environmentRefs { c.add(ref) }
        }
        return c.bytes
    }

    static func tagged(_ resource: Resource, with ring: KeyRing) -> Resource {
        let tag = IntegrityTag.make(message(resource), purpose: purpose, with: ring)
        switch resource {
        case .environment(var e): e.tag = tag; return .environment(e)
        case .agent(var a): a.tag = tag; return .agent(a)
        case .mcpServer(var a): a.tag = tag; return .mcpServer(a)
        case .agentInstance(var i): i.tag = tag; return .agentInstance(i)
        }
    }

    public static func verify(_ resource: Resource, with ring: KeyRing) throws(StigmerError) {
        let tag: String?
        switch resource {
        case .environment(let e): tag = e.tag
        case .agent(let a), .mcpServer(let a): tag = a.tag
        case .agentInstance(let i): tag = i.tag
        }
        try IntegrityTag.verify(tag, message(resource), purpose: purpose, with: ring,
                                what: "\(resource) in the store", again: "apply its manifest again")
    }
}
