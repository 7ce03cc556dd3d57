#if canImport(Glibc)
import Glibc
#endif
import StigmerCore

/// The child's environment (DESIGN.md §6): the inherited environment minus every
/// `STIGMER_*` control variable (the key, tokens, ids), or with `clean` a minimal base;
/// then the context's values on top. Built in a `SecretArena` (SECURITY.md, step 4).
public enum ChildEnvironment {
    /// What `--clean-env` keeps from the launcher's environment.
    public static let cleanBase = ["PATH", "HOME", "USER", "LANG", "TZ", "TERM"]

    /// The base the MCP SDKs give a stdio server (DESIGN.md §4).
    public static let mcpBase = ["HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER"]

    /// Inherited `NAME=VALUE` entries that survive: no `STIGMER_*`, none the context
    /// overrides, only `base` names when `clean` — and then none whose value starts with
    /// `()` (an exported shell function, as the MCP SDKs skip).
    public static func inherited(_ entries: [[UInt8]], clean: Bool, base: [String] = cleanBase, overridden: Set<String>) -> [[UInt8]] {
        let keep = Set(base)
        return entries.filter { entry in
            guard let eq = entry.firstIndex(of: UInt8(ascii: "=")) else { return false }
            let name = String(decoding: entry[..<eq], as: UTF8.self)
            if name.hasPrefix("STIGMER_") || overridden.contains(name) { return false }
            guard clean else { return true }
            return keep.contains(name) && !entry[(eq + 1)...].starts(with: [UInt8(ascii: "("), UInt8(ascii: ")")])
        }
    }

    /// Builds envp in `arena`: the kept inherited entries, then `NAME=VALUE` per value.
    public static func envp(inherited: [[UInt8]], values: [(name: String, value: [UInt8])],
                            arena: SecretArena) throws(StigmerError) -> UnsafeMutablePointer<UnsafeMutablePointer<CChar>?> {
        let pointers = try arena.pointerArray(count: inherited.count + values.count)
        var i = 0
        for entry in inherited {
            pointers[i] = try arena.cString(entry)
            i += 1
        }
        let equals: [UInt8] = [UInt8(ascii: "=")]
        for (name, value) in values {
            pointers[i] = try arena.cString(Array(name.utf8), equals, value)
            i += 1
        }
        return pointers
    }

    /// Bytes `envp` will need in the arena.
    public static func size(inherited: [[UInt8]], values: [(name: String, value: [UInt8])]) -> Int {
        let strings = inherited.reduce(0) { $0 + $1.count + 1 } + values.reduce(0) { $0 + $1.name.utf8.count + $1.value.count + 2 }
        return strings + (inherited.count + values.count + 2) * MemoryLayout<UnsafeMutablePointer<CChar>?>.stride
    }

    /// The launcher's own environment, as `NAME=VALUE` byte strings.
    public static func current() -> [[UInt8]] {
        var out: [[UInt8]] = []
        var cursor = environ
        while let entry = cursor.pointee {
            let length = strlen(entry)
            out.append(entry.withMemoryRebound(to: UInt8.self, capacity: length) { Array(UnsafeBufferPointer(start: $0, count: length)) })
            cursor += 1
        }
        return out
    }

    /// A variable's value in a `NAME=VALUE` list.
    public static func lookup(_ name: String, in entries: [[UInt8]]) -> String? {
        let prefix = Array(name.utf8) + [UInt8(ascii: "=")]
        for entry in entries.reversed() where entry.starts(with: prefix) {
            return String(decoding: entry[prefix.count...], as: UTF8.self)
        }
        return nil
    }
}
