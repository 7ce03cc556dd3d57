import StigmerCore
import StigmerCrypto
import StigmerStore
import StigmerSystem

/// `key rotate` (DESIGN.md §5): every stored secret opened and sealed again under the
/// newest key of the ring, every integrity tag made again with it. Each old tag is checked
/// first, so a rotation never launders what someone without the key changed in the store;
/// one that fails stops the whole rotation, and the store's transaction leaves it as it was.
public enum Rotation {
    public static func rekeying(_ ring: KeyRing) -> Rekeying {
        Rekeying(resource: { (resource) throws(StigmerError) in try resealed(resource, ring) },
                 context: { (context) throws(StigmerError) in try resealed(context, ring) })
    }

    static func resealed(_ resource: Resource, _ ring: KeyRing) throws(StigmerError) -> Resource {
        try ResourceTags.verify(resource, with: ring)
        switch resource {
        case .environment(var env):
            var opened = try SecretBytes()
            for (name, value) in env.spec.data.entries {
                guard case .sealed(let text) = value.content else { continue }
                let binding = Binding.environment(env.name, name)
                // A legacy value (Stigmer's unbound form) comes out v1, bound like the rest.
                try Sealer.open(text, for: binding, with: ring, into: &opened)
                var resealed = value
                resealed.content = .sealed(try Sealer.seal(opened.entries[opened.entries.count - 1], of: opened, for: binding, with: ring))
                env.spec.data[name] = resealed
            }
            return ResourceTags.tagged(.environment(env), with: ring)
        case .agent(let agent), .mcpServer(let agent):
            // Manifests put sealed values only in Environments (ResourceDecoding).
            if agent.envSpec.data.entries.contains(where: { if case .sealed = $0.value.content { true } else { false } }) {
                throw .notPermitted("\(resource) in the store holds a sealed value, which stigmer-exec never stores there — refusing to re-seal it")
            }
            return ResourceTags.tagged(resource, with: ring)
        case .agentInstance:
            return ResourceTags.tagged(resource, with: ring)
        }
    }

    static func resealed(_ context: ExecutionContext, _ ring: KeyRing) throws(StigmerError) -> ExecutionContext {
        let (header, entries) = Engine.tagInput(context)
        try ContextTag.verify(context.tag, header, entries, with: ring)
        var out = context
        var opened = try SecretBytes()
        for (name, value) in context.data.entries {
            guard case .sealed(let text) = value.content else { continue }
            let binding = Binding.execution(context.executionID, name)
            try Sealer.open(text, for: binding, with: ring, into: &opened, allowLegacy: false)
            var resealed = value
            resealed.content = .sealed(try Sealer.seal(opened.entries[opened.entries.count - 1], of: opened, for: binding, with: ring))
            out.data[name] = resealed
        }
        let (newHeader, newEntries) = Engine.tagInput(out)
        out.tag = ContextTag.tag(newHeader, newEntries, with: ring)
        return out
    }
}

extension Rotation {
    /// Whether `key rotate` adds a key: only when everything stored already depends on the
    /// newest loaded key alone. Otherwise it finishes with the newest — a rotation that was
    /// interrupted after adding its key, or a key put last by hand (where the keys come
    /// from STIGMER_ENCRYPTION_KEY or --key-fd, or are shared by several servers).
    public static func needsNewKey(_ usage: KeyUsage, _ ring: KeyRing) -> Bool {
        !usage.dependsOnOtherThan(ring.newest.id)
    }

    /// `key retire ID`: refused while the key is the newest (it seals what is written next),
    /// not loaded, or anything in `store` is sealed or tagged with it — or holds a legacy
    /// value, which names no key, so any loaded one may be the one that opens it.
    public static func checkRetirable(_ id: String, _ ring: KeyRing, _ usage: KeyUsage, store: String) throws(StigmerError) {
        guard ring.key(id: id) != nil else {
            throw .notFound("key \(id) is not loaded (loaded: \(ring.keys.map(\.id).joined(separator: ", ")) from \(ring.source)); `stigmer-exec key list` shows them")
        }
        guard ring.newest.id != id else {
            throw .usage("key \(id) is the newest loaded key: what is written next is sealed with it; run `stigmer-exec key rotate` first, then retire it")
        }
        if let places = usage.places[id], !places.isEmpty {
            throw StigmerError(.conflict, "key \(id) is still needed by \(described(places)) in \(store); run `stigmer-exec key rotate` first — nothing was changed")
        }
        if !usage.legacy.isEmpty {
            throw StigmerError(.conflict, "\(described(usage.legacy)) in \(store) hold legacy values, which name no key, so key \(id) may be the one that opens them; run `stigmer-exec key rotate` first (it re-seals them bound, naming their key) — nothing was changed")
        }
    }

    static func described(_ places: [String]) -> String {
        let shown = places.prefix(3).joined(separator: ", ")
        return places.count > 3 ? "\(shown) and \(places.count - 3) more" : shown
    }

    /// What a rotation did, for its one line on stderr.
    public static func summary(_ report: RekeyReport, key: EncryptionKey, added: Bool, ring: KeyRing, store: String) -> String {
        let older = ring.keys.filter { $0.id != key.id }.map(\.id)
        var line = "stigmer-exec: \(added ? "added key \(key.id) and re-sealed" : "re-sealed") \(store) with \(added ? "it" : "key \(key.id)"): \(report.resources) resources, \(report.contexts) contexts"
        if report.expiredSwept > 0 { line += ", \(report.expiredSwept) expired contexts swept" }
        if !older.isEmpty { line += "; older keys still loaded: \(older.joined(separator: ", ")) — `stigmer-exec key retire ID` once no other store needs them" }
        return line
    }
}

extension Rotation {
    /// `key list`: the loaded keys, newest last, and how many places each one is used in.
    public static func listing(_ ring: KeyRing, _ usage: KeyUsage) -> String {
        var out = "KEY               ROLE    USED BY\n"
        for key in ring.keys {
            let role = key.id == ring.newest.id ? "newest" : "older "
            out += "\(key.id)  \(role)  \(usage.places[key.id]?.count ?? 0)\n"
        }
        if !usage.legacy.isEmpty { out += "\(usage.legacy.count) stored things hold legacy values, which name no key\n" }
        return out
    }

    /// `key rotate`'s new key, added to the home's key file before anything is sealed with
    /// it (a crash then leaves an unused key, never values no key opens).
    public static func addKey(to ring: KeyRing, home: StigmerHome, store: String) throws(StigmerError) -> KeyRing {
        guard ring.source == home.keyFile else {
            throw .usage("everything in \(store) is already sealed with the newest key, and the keys come from \(ring.source), which stigmer-exec cannot add to; put a new key last there (e.g. `head -c 32 /dev/urandom | base64`) and run `stigmer-exec key rotate` again")
        }
        let key = EncryptionKey.generate()
        try KeySource.addKey(key, home: home)
        return KeyRing(keys: ring.keys + [key], source: ring.source)
    }

    /// A rotation whose store step failed after its key was added: says so, and how to finish.
    public static func unfinished(_ error: StigmerError, _ ring: KeyRing, _ home: StigmerHome) -> StigmerError {
        var told = error
        told.message += "; key \(ring.newest.id) was added to \(home.keyFile) but nothing was re-sealed — run `stigmer-exec key rotate` again to finish with it"
        return told
    }

    /// `key retire ID`, once `checkRetirable` passes: the key file without it, or (keys from
    /// the environment or a descriptor) a line saying where to remove it.
    public static func retire(_ id: String, _ ring: KeyRing, _ usage: KeyUsage, home: StigmerHome, store: String) throws(StigmerError) {
        try checkRetirable(id, ring, usage, store: store)
        guard ring.source == home.keyFile else {
            Stderr.line("stigmer-exec: nothing in \(store) needs key \(id); remove it from \(ring.source) yourself")
            return
        }
        guard try KeySource.removeKey(id: id, home: home) else {
            throw .notFound("key \(id) is not a line of \(home.keyFile) of its own; edit the file by hand")
        }
        Stderr.line("stigmer-exec: retired key \(id) from \(home.keyFile): nothing in \(store) needed it, and it can no longer open anything")
    }
}
