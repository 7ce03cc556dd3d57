#if canImport(Glibc)
import Glibc
#endif
import StigmerCore

/// The child's environment (DESIGN.md §6): the inherited environment minus every
/// `STIGMER_*` control variable (the key, tokens, ids), or with `clean` a minimal base;
/// then the context's values on top.
public enum ChildEnvironment {
    /// What `--clean-env` keeps from the launcher's environment.
    public static let cleanBase = ["PATH", "HOME", "USER", "LANG", "TZ", "TERM"]

    /// `NAME=VALUE` entries, as bytes. Context values replace inherited ones.
    public static func build(inherited: [[UInt8]], clean: Bool, base: [String] = cleanBase,
                             values: [(name: String, value: [UInt8])]) -> [[UInt8]] {
        let overridden = Set(values.map(\.name))
        let keep = Set(base)
        var out: [[UInt8]] = []
        out.reserveCapacity(inherited.count + values.count)
        for entry in inherited {
            guard let eq = entry.firstIndex(of: UInt8(ascii: "=")) else { continue }
            let name = String(decoding: entry[..<eq], as: UTF8.self)
            if name.hasPrefix("STIGMER_") || overridden.contains(name) { continue }
            if clean && !keep.contains(name) { continue }
            out.append(entry)
        }
        for (name, value) in values {
            out.append(Array(name.utf8) + [UInt8(ascii: "=")] + value)
        }
        return out
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
