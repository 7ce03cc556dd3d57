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
    /// The filesystem rights the ruleset handles when it is a sandbox (`--fs-*`): the
    /// command's own executables are added once it is resolved (`allowCommand`). 0: none.
    let sandboxRights: UInt64
    /// What the child must not reach (resolved): no rule is ever added inside these.
    let protected: [String]

    init(ruleset: Int32?, sandboxRights: UInt64 = 0, protected: [String] = []) {
        self.ruleset = ruleset
        self.sandboxRights = sandboxRights
        self.protected = protected
    }

    static let execute: UInt64 = 1 << 0, writeFile: UInt64 = 1 << 1, readFile: UInt64 = 1 << 2, readDir: UInt64 = 1 << 3
    static let refer: UInt64 = 1 << 13, truncate: UInt64 = 1 << 14, ioctlDev: UInt64 = 1 << 15
    /// The rights that apply to a file (the rest only to directories).
    static let fileRights = execute | writeFile | readFile | truncate | ioctlDev
    /// `--fs-read`: read files, list directories.
    static let readRights = readFile | readDir
    /// `--fs-exec`: and execute.
    static let execRights = readRights | execute
    /// `--fs-write`: and write, create and remove files, directories, sockets, FIFOs and
    /// symlinks, rename and link across directories, truncate, device ioctls. Not execute,
    /// not device nodes.
    static let writeRights: UInt64 = readRights | writeFile | (1 << 4) | (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10)
        | (1 << 12) | refer | truncate | ioctlDev
    /// The devices of the base set (/dev/null, /dev/tty…): read, write, truncate (`>`), ioctl.
    static let deviceRights = readRights | writeFile | truncate | ioctlDev
    static let bindTCP: UInt64 = 1, connectTCP: UInt64 = 2

    /// Every filesystem right the running kernel's ABI knows.
    static func handled(abi: Int32) -> UInt64 {
        var rights: UInt64 = (1 << 13) - 1  // ABI 1: execute … make_sym
        if abi >= 2 { rights |= refer }
        if abi >= 3 { rights |= truncate }
        if abi >= 5 { rights |= ioctlDev }
        return rights
    }

    /// The kernel's Landlock ABI, or -errno. Debug builds take `STIGMER_TEST_LANDLOCK_ABI`
    /// (0: none) so tests can stand in for an older kernel.
    static func abi() -> Int32 {
        let real = stigmer_landlock_abi()
        #if STIGMER_TEST_HOOKS
        if let text = Sys.getenv("STIGMER_TEST_LANDLOCK_ABI"), let forced = Int32(text) {
            return forced <= 0 ? -EOPNOTSUPP : min(forced, real)
        }
        #endif
        return real
    }

    /// Builds the ruleset for `candidates` (those that exist) and the sandbox. Never opens
    /// a secret: it runs before anything is decrypted, so a launch that must refuse opens
    /// nothing.
    public static func build(protecting candidates: [String], policy: Policy, sandbox: SandboxSpec = SandboxSpec(),
                             log: (@autoclosure () -> String) -> Void) throws(StigmerError) -> Isolation {
        var paths = Array(Set(candidates.compactMap(realPath))).sorted()
        // The same files seen through another mount (a bind mount of a parent, say) are
        // protected under that name too.
        if policy != .off { paths = Array(Set(paths + (try mountAliases(paths)))).sorted() }
        let protected = policy == .off ? [] : paths
        guard sandbox.hasFS || sandbox.hasNet else { return try around(paths, policy: policy, log: log) }
        let abi = abi()
        // Fail closed: what was asked for and the kernel cannot enforce refuses the launch,
        // unless best effort was asked for — and then it is said.
        var missing: [String] = []
        let has = abi >= 1 ? "this kernel's Landlock ABI is \(abi)" : "this kernel has no Landlock"
        if sandbox.hasFS && abi < 3 {
            let flags = "--fs-read/--fs-write/--fs-exec"
            missing.append(abi >= 1 ? "file truncation in \(flags) trees (needs Landlock ABI 3; \(has))" : "\(flags) (needs Landlock ABI 3; \(has))")
        }
        if sandbox.hasNet && abi < 4 {
            missing.append("--net-connect/--net-bind (needs Landlock ABI 4; \(has))")
        }
        if !missing.isEmpty {
            guard sandbox.bestEffort else {
                throw .notPermitted("cannot enforce \(missing.joined(separator: " and ")); nothing was launched (--sandbox best-effort runs with what the kernel enforces)")
            }
            Stderr.line("stigmer-exec: warning: not enforced (--sandbox best-effort): \(missing.joined(separator: "; "))")
        }
        guard abi >= 1 else { return try around(paths, policy: policy, log: log) }
        let fsRights = sandbox.hasFS || !protected.isEmpty ? handled(abi: abi) : 0
        let netRights = sandbox.hasNet && abi >= 4 ? bindTCP | connectTCP : 0
        guard fsRights != 0 || netRights != 0 else { return Isolation(ruleset: nil) }
        // ABI 6: the child can neither signal nor reach the abstract Unix sockets of
        // processes outside its sandbox (the MCP client, the user's other programs).
        let scoped: UInt64 = abi >= 6 ? 1 | 2 : 0
        let ruleset = stigmer_landlock_create_scoped(fsRights, netRights, scoped)
        guard ruleset >= 0 else {
            throw StigmerError(.notPermitted, "cannot create a Landlock ruleset; nothing was launched", cause: Errno(-ruleset).description)
        }
        var rules = 0
        do throws(StigmerError) {
            if sandbox.hasFS {
                var trees: [(String, UInt64, String?)] = sandbox.fsRead.map { ($0, readRights, "--fs-read") }
                    + sandbox.fsExec.map { ($0, execRights, "--fs-exec") } + sandbox.fsWrite.map { ($0, writeRights, "--fs-write") }
                trees += SandboxBase.libraryDirectories().map { ($0, readRights, nil) }
                trees += SandboxBase.files.map { ($0.0, $0.1 == .device ? deviceRights : readRights, nil) }
                rules += try allowTrees(trees.map { ($0.0, $0.1 & fsRights, $0.2) }, ruleset: ruleset, protected: protected)
            } else if !protected.isEmpty {
                rules += try walk(ruleset, from: "/", protected, dir: fsRights, file: fsRights & fileRights)
            }
            if netRights != 0 {
                for (ports, right) in [(sandbox.netConnect, connectTCP), (sandbox.netBind, bindTCP)] {
                    for port in Set(ports) {
                        let rc = stigmer_landlock_allow_port(ruleset, right, UInt64(port))
                        guard rc == 0 else { throw StigmerError(.notPermitted, "cannot add the Landlock rule for TCP port \(port); nothing was launched", cause: Errno(-rc).description) }
                        rules += 1
                    }
                }
            }
        } catch {
            close(ruleset)
            throw error
        }
        log("landlock ruleset: abi \(abi), \(rules) rules\(sandbox.hasFS ? " (sandbox)" : protected.isEmpty ? "" : " around \(protected.joined(separator: ", "))")\(netRights != 0 ? ", tcp ports" : "")")
        return Isolation(ruleset: ruleset, sandboxRights: sandbox.hasFS ? fsRights : 0, protected: protected)
    }

    /// The default: everything around the protected paths, from /.
    static func around(_ paths: [String], policy: Policy, log: (@autoclosure () -> String) -> Void) throws(StigmerError) -> Isolation {
        guard policy != .off, !paths.isEmpty else { return Isolation(ruleset: nil) }
        let abi = abi()
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
        let rules: Int
        do { rules = try walk(ruleset, from: "/", paths, dir: all, file: all & fileRights) } catch {
            close(ruleset)
            throw error
        }
        log("landlock ruleset: abi \(abi), \(rules) rules around \(paths.joined(separator: ", "))")
        return Isolation(ruleset: ruleset)
    }

    /// The trees the child may reach, each with its rights: a rule on each, or — when a
    /// protected path lies inside — rules on everything in it around that path
    /// (`stigmer_landlock_allow_trees`). A flag's tree that does not exist is 66, one inside
    /// a protected path 64; the base set's are left out.
    static func allowTrees(_ trees: [(path: String, rights: UInt64, flag: String?)], ruleset: Int32,
                           protected: [String]) throws(StigmerError) -> Int {
        var paths = trees.compactMap { strdup($0.path) }
        var protectedPointers = protected.compactMap { strdup($0) }
        defer { for p in paths + protectedPointers { free(p) } }
        guard paths.count == trees.count, protectedPointers.count == protected.count else {
            throw .notPermitted("cannot build the Landlock ruleset (out of memory); nothing was launched")
        }
        let rights = trees.map(\.rights)
        var status = trees.map { $0.flag == nil ? Int32(0) : 1 }
        let total = paths.withUnsafeMutableBufferPointer { p in
            p.withMemoryRebound(to: UnsafePointer<CChar>?.self) { p in
                protectedPointers.withUnsafeMutableBufferPointer { q in
                    q.withMemoryRebound(to: UnsafePointer<CChar>?.self) { q in
                        stigmer_landlock_allow_trees(ruleset, p.baseAddress, rights, Int32(trees.count), fileRights,
                                                     q.baseAddress, Int32(q.count), &status)
                    }
                }
            }
        }
        guard total >= 0 else { throw .notPermitted("cannot build the Landlock ruleset (out of memory); nothing was launched") }
        for (tree, rc) in zip(trees, status) where rc < 0 {
            guard let flag = tree.flag else { continue }
            if rc == STIGMER_INSIDE_PROTECTED {
                let real = realPath(tree.path) ?? tree.path
                let holder = protected.first { real == $0 || real.hasPrefix($0 + "/") } ?? real
                throw .usage("\(flag) \(quoted(tree.path)) \(real == holder ? "is" : "is inside") \(holder), which the launcher keeps from the child (its home, store or a token file); allow another tree")
            }
            if rc == -ENOENT || rc == -ENOTDIR {
                throw .notFound("\(flag) \(quoted(tree.path)): no such file or directory; give a path that exists")
            }
            throw StigmerError(.notPermitted, "cannot add the Landlock rule for \(flag) \(quoted(tree.path)); nothing was launched", cause: Errno(-rc).description)
        }
        return Int(total)
    }

    /// Where else `paths` (resolved) can be reached: for each, every other mount of the same
    /// filesystem whose root holds it (/proc/self/mountinfo, parsed in C).
    static func mountAliases(_ paths: [String]) throws(StigmerError) -> [String] {
        guard !paths.isEmpty else { return [] }
        var pointers = paths.compactMap { strdup($0) }
        defer { for p in pointers { free(p) } }
        // Usually there is none: a small buffer first (a launch touches every page of it).
        for size in [1024, 1 << 20] {
            var buffer = [CChar](repeating: 0, count: size)
            let used = pointers.withUnsafeMutableBufferPointer { p in
                p.withMemoryRebound(to: UnsafePointer<CChar>?.self) { p in
                    buffer.withUnsafeMutableBufferPointer { stigmer_mount_aliases(p.baseAddress, Int32(p.count), $0.baseAddress, $0.count) }
                }
            }
            guard used >= 0, used <= size else { continue }  // (size_t)-1: too small
            var out: [String] = []
            var start = 0
            for i in 0..<used where buffer[i] == 0 {
                out.append(buffer[start..<i].withUnsafeBufferPointer { String(decoding: UnsafeRawBufferPointer($0), as: UTF8.self) })
                start = i + 1
            }
            return out
        }
        throw .notPermitted("the launcher's files are mounted under more names than it can keep from the child; nothing was launched")
    }

    static func walk(_ ruleset: Int32, from root: String, _ paths: [String], dir: UInt64, file: UInt64) throws(StigmerError) -> Int {
        var pointers = paths.compactMap { strdup($0) }
        defer { for p in pointers { free(p) } }
        // Out of memory: a path left out would be left open to the child.
        guard pointers.count == paths.count else {
            throw .notPermitted("cannot build the Landlock ruleset (out of memory); nothing was launched")
        }
        return Int(pointers.withUnsafeMutableBufferPointer { buffer in
            buffer.withMemoryRebound(to: UnsafePointer<CChar>?.self) {
                stigmer_landlock_around_from(ruleset, root, $0.baseAddress, Int32($0.count), dir, file)
            }
        })
    }

    /// Under a filesystem sandbox, what execve opens for execution: the command, its `#!`
    /// interpreter and their ELF interpreter (`SandboxBase.executables`). After the command
    /// is resolved, before anything starts.
    public func allowCommand(_ path: String, childPath: String?, log: (@autoclosure () -> String) -> Void) {
        guard let ruleset, sandboxRights != 0 else { return }
        for executable in SandboxBase.executables(path, childPath: childPath) {
            guard let real = Isolation.realPath(executable),
                  !protected.contains(where: { real == $0 || real.hasPrefix($0 + "/") }) else { continue }
            let rights = Isolation.execRights & sandboxRights
            _ = stigmer_landlock_allow_path(ruleset, real, rights, rights & Isolation.fileRights, nil)
            log("landlock: the command needs \(executable)")
        }
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        let p = String(cString: resolved)
        return p == "/" ? nil : p
    }
}
