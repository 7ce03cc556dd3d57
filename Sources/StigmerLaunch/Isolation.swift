#if canImport(Glibc)
import Glibc
#endif
import CStigmerShims
import StigmerCore
import StigmerSystem

/// Keeps the child and all its descendants out of what the launcher holds — its home (the
/// key file, the embedded store), a store elsewhere, token and profile files — root
/// included (SECURITY.md, promise 6). Seccomp cannot stop a plain `open()`; Landlock can,
/// unprivileged, and no process can lift it once applied.
///
/// Landlock only allows, and a right granted on a directory reaches everything beneath
/// it. So the ruleset allows the filesystem *around* the protected paths: every existing
/// entry of each of their ancestor directories, except the way down to a protected path.
/// What that costs: the child cannot list those ancestor directories (`/`, `~`…) or create
/// new entries directly in them; everything that already exists beside them, and
/// everything below those entries, works as before. The walk itself is C
/// (`stigmer_landlock_around`): byte paths, no hashing, three syscalls per entry; in Swift
/// its strings and sets cost more than the syscalls.
public struct Isolation {
    /// `--no-isolation`, default, `--require-isolation`.
    public enum Policy: String, Sendable, Equatable {
        case off, auto, require
    }

    /// The ruleset to restrict the child with (close-on-exec), nil when there is none.
    public let ruleset: Int32?

    static let execute: UInt64 = 1 << 0, writeFile: UInt64 = 1 << 1, readFile: UInt64 = 1 << 2
    static let refer: UInt64 = 1 << 13, truncate: UInt64 = 1 << 14, ioctlDev: UInt64 = 1 << 15
    /// The rights that apply to a file (the rest only to directories).
    static let fileRights = execute | writeFile | readFile | truncate | ioctlDev

    /// Every filesystem right the running kernel's ABI knows.
    static func handled(abi: Int32) -> UInt64 {
        var rights: UInt64 = (1 << 13) - 1  // ABI 1: execute … make_sym
        if abi >= 2 { rights |= refer }
        if abi >= 3 { rights |= truncate }
        if abi >= 5 { rights |= ioctlDev }
        return rights
    }

    /// Builds the ruleset for `candidates` (those that exist). Never opens a secret:
    /// it runs before anything is decrypted, so a launch that must refuse opens nothing.
    public static func build(protecting candidates: [String], policy: Policy,
                             log: (@autoclosure () -> String) -> Void) throws(StigmerError) -> Isolation {
        let paths = Array(Set(candidates.compactMap(realPath))).sorted()
        guard policy != .off, !paths.isEmpty else { return Isolation(ruleset: nil) }
        let abi = stigmer_landlock_abi()
        guard abi >= 1 else {
            let why = "Landlock is not available on this kernel (\(Errno(-abi)))"
            if policy == .require {
                throw .notPermitted("cannot keep the child out of \(paths.joined(separator: ", ")): \(why); nothing was launched (drop --require-isolation to run anyway)")
            }
            Stderr.line("stigmer-exec: warning: the child can open \(paths.joined(separator: ", ")): \(why); keep the key off disk (--key-fd, or a context server) for untrusted children, or pass --require-isolation to refuse")
            return Isolation(ruleset: nil)
        }
        let all = handled(abi: abi)
        let ruleset = stigmer_landlock_create(all)
        guard ruleset >= 0 else {
            throw StigmerError(.notPermitted, "cannot create a Landlock ruleset; nothing was launched", cause: Errno(-ruleset).description)
        }
        var pointers = paths.compactMap { strdup($0) }
        defer { for p in pointers { free(p) } }
        // Out of memory: a path left out would be left open to the child.
        guard pointers.count == paths.count else {
            throw .notPermitted("cannot build the Landlock ruleset (out of memory); nothing was launched")
        }
        let rules = pointers.withUnsafeMutableBufferPointer { buffer in
            buffer.withMemoryRebound(to: UnsafePointer<CChar>?.self) {
                stigmer_landlock_around(ruleset, $0.baseAddress, Int32($0.count), all, all & fileRights)
            }
        }
        log("landlock ruleset: abi \(abi), \(rules) rules around \(paths.joined(separator: ", "))")
        return Isolation(ruleset: ruleset)
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        let p = String(cString: resolved)
        return p == "/" ? nil : p
    }

    static func parent(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }
}
