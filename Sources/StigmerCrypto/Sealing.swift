import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import StigmerCore
import StigmerSystem

/// What a sealed value is bound to (DESIGN.md §5): its scope and variable name. The
/// associated data is exactly `stigmer-exec/v1 ‖ 0 ‖ scope ‖ 0 ‖ name`, so a ciphertext
/// cannot be moved to another variable, environment or execution.
public struct Binding: Sendable, Hashable, CustomStringConvertible {
    public let scope: String
    public let name: String

    public init(scope: String, name: String) {
        self.scope = scope
        self.name = name
    }

    public static func environment(_ environment: String, _ name: String) -> Binding {
        Binding(scope: "environment:\(environment)", name: name)
    }

    public static func execution(_ executionID: String, _ name: String) -> Binding {
        Binding(scope: "execution:\(executionID)", name: name)
    }

    public var associatedData: [UInt8] {
        var out = Array("stigmer-exec/v1".utf8)
        out.reserveCapacity(out.count + scope.utf8.count + name.utf8.count + 2)
        out.append(0)
        out.append(contentsOf: scope.utf8)
        out.append(0)
        out.append(contentsOf: name.utf8)
        return out
    }

    public var description: String { "\(name) in \(scope)" }

    /// Checks a `--scope` argument: `environment:<name>` or `execution:<id>`.
    public static func validateScope(_ scope: String) throws(StigmerError) {
        for prefix in ["environment:", "execution:"] where scope.hasPrefix(prefix) {
            let rest = scope.dropFirst(prefix.count)
            if !rest.isEmpty && !rest.utf8.contains(0) { return }
        }
        throw .usage("invalid scope \(quoted(scope)); expected environment:<name> or execution:<execution-id>")
    }
}

/// AES-256-GCM sealing in the stored form `v1:<key-id>:<base64(nonce ‖ ciphertext ‖ tag)>`,
/// and reading of the legacy form `base64(nonce ‖ ciphertext ‖ tag)` (no associated data),
/// which Stigmer's Go/Java EnvironmentSecretService writes.
public enum Sealer {
    static let nonceSize = 12
    static let tagSize = 16

    public static func seal(_ plaintext: UnsafeRawBufferPointer, for binding: Binding, with ring: KeyRing) throws(StigmerError) -> String {
        let key = ring.newest
        do {
            let box = try AES.GCM.seal(plaintext, using: key.key, nonce: AES.GCM.Nonce(),
                                       authenticating: binding.associatedData)
            guard let combined = box.combined else { throw StigmerError(.internalError, "AES-GCM produced no combined form") }
            return "v1:\(key.id):\(Base64.encode(combined))"
        } catch let error as StigmerError {
            throw error
        } catch {
            throw StigmerError(.internalError, "cannot seal \(binding)", cause: "\(error)")
        }
    }

    /// Seals a value the caller holds in an array (a plain value, or input being sealed).
    public static func seal(_ plaintext: [UInt8], for binding: Binding, with ring: KeyRing) throws(StigmerError) -> String {
        try plaintext.withUnsafeBytes { raw in catching { () throws(StigmerError) in try seal(raw, for: binding, with: ring) } }.get()
    }

    /// Seals the value `entry` of `values` (re-sealing under a new binding).
    public static func seal(_ entry: SecretBytes.Entry, of values: borrowing SecretBytes, for binding: Binding, with ring: KeyRing) throws(StigmerError) -> String {
        try values.withBytes(entry) { (raw) throws(StigmerError) in try seal(raw, for: binding, with: ring) }
    }

    /// Opens a sealed value bound to `binding` straight into `out`, as the value of
    /// `binding.name` (or `name`). When authentication fails, `candidates` (other bindings the
    /// caller knows of) are tried to tell "sealed for another variable" apart from
    /// "tampered"; neither is ever used.
    public static func open(_ sealed: String, for binding: Binding, with ring: KeyRing, candidates: [Binding] = [],
                            into out: inout SecretBytes, as name: String? = nil, isSecret: Bool = true,
                            allowLegacy: Bool = true) throws(StigmerError) {
        var plaintext = try openBytes(sealed, for: binding, with: ring, candidates: candidates, allowLegacy: allowLegacy)
        defer { plaintext.wipe() }
        let result = plaintext.withUnsafeBytes { raw in catching { () throws(StigmerError) in try out.append(name ?? binding.name, isSecret: isSecret, raw) } }
        try result.get()
    }

    /// Checks that a sealed value opens with its binding (apply, plan); the plaintext is
    /// wiped at once.
    public static func check(_ sealed: String, for binding: Binding, with ring: KeyRing, candidates: [Binding] = []) throws(StigmerError) {
        var plaintext = try openBytes(sealed, for: binding, with: ring, candidates: candidates, allowLegacy: true)
        plaintext.wipe()
    }

    /// AES-GCM's own output buffer: the one transient heap copy of a plaintext, which
    /// every caller wipes at once.
    static func openBytes(_ sealed: String, for binding: Binding, with ring: KeyRing,
                          candidates: [Binding], allowLegacy: Bool) throws(StigmerError) -> [UInt8] {
        let text = Array(sealed.utf8)
        if text.starts(with: [0x76, 0x31, 0x3A]) {  // "v1:"
            // v1:<key-id>:<base64>, split by hand: the generic `split` costs more than the open.
            let colon = text[3...].firstIndex(of: 0x3A) ?? text.count
            guard colon > 3, colon < text.count, let payload = Base64.decode(array: Array(text[(colon + 1)...])) else {
                throw .data("sealed value for \(binding) is malformed; expected v1:<key-id>:<base64>, as `stigmer-exec key seal` prints")
            }
            let keyID = String(decoding: text[3..<colon], as: UTF8.self)
            guard payload.count >= nonceSize + tagSize else {
                throw .notPermitted("sealed value for \(binding) is too short to be AES-GCM output; it was truncated or tampered with — refusing to use it")
            }
            // One key (the common case): try it straight away; its id is only needed to
            // explain a failure. Several: pick by id.
            let key: EncryptionKey
            if ring.keys.count == 1 {
                if let plaintext = tryOpen(payload, ring.keys[0], binding.associatedData) { return plaintext }
                key = ring.keys[0]
                guard key.id == keyID else { throw notLoaded(binding, keyID, ring) }
            } else {
                guard let found = ring.key(id: keyID) else { throw notLoaded(binding, keyID, ring) }
                key = found
                if let plaintext = tryOpen(payload, key, binding.associatedData) { return plaintext }
            }
            for other in candidates where other != binding {
                if var wrong = tryOpen(payload, key, other.associatedData) {
                    wrong.wipe()
                    throw .notPermitted("sealed value for \(binding) was sealed for \(other); a sealed value cannot be moved — seal it again with `stigmer-exec key seal --scope \(binding.scope) --name \(binding.name)`")
                }
            }
            throw .notPermitted("sealed value for \(binding) failed authentication: it was tampered with, or sealed for another scope or name — refusing to use it")
        }
        // Legacy: bare base64, no associated data, no key id: try each loaded key. Never
        // inside a context: stigmer-exec re-seals every value to v1 when it creates one, and
        // an unbound ciphertext could have been moved there from anywhere.
        guard allowLegacy else {
            throw .notPermitted("sealed value for \(binding) is in the legacy form, which binds it to nothing; contexts hold only v1 values — refusing to use it (create the context again)")
        }
        guard let payload = Base64.decode(sealed) else {
            throw .data("sealed value for \(binding) is neither v1:<key-id>:<base64> nor legacy base64; check that it was copied whole")
        }
        guard payload.count >= nonceSize + tagSize else {
            throw .notPermitted("legacy sealed value for \(binding) is too short to be AES-GCM output; it was truncated or tampered with — refusing to use it")
        }
        for key in ring.keys.reversed() {
            if let plaintext = tryOpen(payload, key, []) { return plaintext }
        }
        throw .notPermitted("legacy sealed value for \(binding) cannot be opened with any loaded key (\(ring.keys.map(\.id).joined(separator: ", ")) from \(ring.source)): wrong key, or tampered with — refusing to use it")
    }

    static func notLoaded(_ binding: Binding, _ keyID: String, _ ring: KeyRing) -> StigmerError {
        // The id is input: shown only when it has a key id's shape (16 hex digits), so a
        // secret pasted as `v1:<secret>:…` never reaches an error (found by fuzzing).
        let isKeyID = keyID.utf8.count == 16 && keyID.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
        let shown = isKeyID ? keyID : "<not a key id: expected 16 hex digits>"
        return .notPermitted("sealed value for \(binding) was sealed with key \(shown), which is not loaded (loaded: \(ring.keys.map(\.id).joined(separator: ", ")) from \(ring.source)); load the right key with --key-fd, STIGMER_ENCRYPTION_KEY or $STIGMER_HOME/encryption.key")
    }

    static func tryOpen(_ payload: [UInt8], _ key: EncryptionKey, _ associatedData: [UInt8]) -> [UInt8]? {
        key.withUnsafeBytes { AESGCM.open(key: $0, combined: payload, associatedData: associatedData) }
    }
}
