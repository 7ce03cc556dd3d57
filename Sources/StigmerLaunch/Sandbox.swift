#if canImport(Glibc)
import Glibc
#endif
import CStigmerShims
import StigmerCore
import StigmerManifests
import StigmerSystem

/// What the child may reach beyond the syscall filter (`--fs-read`, `--fs-write`,
/// `--fs-exec`, `--net-connect`, `--net-bind`, `--no-network`, `--sandbox`), enforced by
/// Landlock and a network namespace. Built into the same ruleset as the isolation of the
/// launcher's own files (`Isolation`): one mechanism.
public struct SandboxSpec: Sendable, Equatable {
    /// Trees the child may read (files and directory listings).
    public var fsRead: [String] = []
    /// Trees the child may also write: create, remove, rename, truncate (not execute).
    public var fsWrite: [String] = []
    /// Trees the child may read and execute from.
    public var fsExec: [String] = []
    /// TCP ports the child may connect to / bind (Landlock ABI 4).
    public var netConnect: [UInt16] = []
    public var netBind: [UInt16] = []
    /// A network namespace of its own: loopback only.
    public var noNetwork = false
    /// Under a filesystem sandbox, let the child create Unix sockets (refused by default:
    /// Landlock cannot keep it from connecting to one outside its trees by path).
    public var unixSockets = false
    /// Run with what the kernel enforces (and say what it does not) instead of refusing.
    public var bestEffort = false
    /// Profile files (`--sandbox FILE`, an MCP entry's `sandbox`), merged by
    /// `HardeningSpec.resolved()`.
    public var profiles: [String] = []

    public init() {}

    /// A profile's `fs:` or `net:` section with its lists, even empty ones: what is not
    /// listed is denied (an empty list is "none", never "no sandbox").
    public var fsDeclared = false
    public var netDeclared = false

    public var hasFS: Bool { fsDeclared || !(fsRead.isEmpty && fsWrite.isEmpty && fsExec.isEmpty) }
    public var hasNet: Bool { netDeclared || !(netConnect.isEmpty && netBind.isEmpty) }

    /// `--sandbox VALUE`: `best-effort`, or a profile file.
    public mutating func add(_ value: String) {
        if value == "best-effort" { bestEffort = true } else { profiles.append(value) }
    }

    /// `443` or `80,443`: nil for anything else.
    public static func ports(_ text: String) -> [UInt16]? {
        var out: [UInt16] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard !part.isEmpty, part.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), part.count <= 5,
                  let n = UInt16(part) else { return nil }
            out.append(n)
        }
        return out.isEmpty ? nil : out
    }

    public static func portsOrThrow(_ text: String, flag: String) throws(StigmerError) -> [UInt16] {
        guard let ports = ports(text) else {
            throw .usage("invalid \(flag) \(quoted(text)); give a TCP port (0-65535) or a comma list, e.g. \(flag) 443,8443")
        }
        return ports
    }
}

/// A sandbox profile file (`--sandbox FILE`), YAML or JSON:
///
///     fs:      { read: [PATH…], write: [PATH…], exec: [PATH…], unix_sockets: false }   # relative to the file; ~/ is $HOME
///     net:     { connect: [PORT…], bind: [PORT…], none: true }
///     seccomp: default | strict | none | PATH                    # unless --seccomp is given
///     limits:  { memory: 512M }                                   # unless --memory-limit is given
///     best_effort: false
enum SandboxProfile {
    static func apply(_ path: String, to spec: inout HardeningSpec) throws(StigmerError) {
        let documents = try Loader.documents(try Loader.text(path), file: path)
        guard documents.count == 1 else { throw .data("\(path): expected one sandbox profile (a YAML or JSON mapping)") }
        let root = try Field(root: documents[0], file: path).mapping()
        try root.rejectUnknown(["fs", "net", "seccomp", "limits", "best_effort"])
        let home = Sys.getenv("HOME")
        func place(_ text: String) -> String { RelativePath.expandingHome(RelativePath.beside(path, text), home: home) }
        if let fs = try root.optional("fs")?.mapping() {
            try fs.rejectUnknown(["read", "write", "exec", "unix_sockets"])
            // The section itself, even empty, is a sandbox: what it does not list is denied.
            spec.sandbox.fsDeclared = true
            if try fs.optional("unix_sockets")?.bool() == true { spec.sandbox.unixSockets = true }
            spec.sandbox.fsRead += try fs.optional("read")?.stringList().map(place) ?? []
            spec.sandbox.fsWrite += try fs.optional("write")?.stringList().map(place) ?? []
            spec.sandbox.fsExec += try fs.optional("exec")?.stringList().map(place) ?? []
        }
        if let net = try root.optional("net")?.mapping() {
            try net.rejectUnknown(["connect", "bind", "none"])
            // Its port lists, even empty (or an empty section), restrict TCP; `none` alone
            // asks for the namespace only.
            if net["connect"] != nil || net["bind"] != nil || net.fields.isEmpty { spec.sandbox.netDeclared = true }
            func ports(_ key: String) throws(StigmerError) -> [UInt16] {
                var out: [UInt16] = []
                for item in try net.optional(key)?.sequence() ?? [] {
                    let n = try item.int()
                    guard (0...65535).contains(n) else { throw item.error("not a TCP port (0-65535)") }
                    out.append(UInt16(n))
                }
                return out
            }
            spec.sandbox.netConnect += try ports("connect")
            spec.sandbox.netBind += try ports("bind")
            if try net.optional("none")?.bool() == true { spec.sandbox.noNetwork = true }
        }
        // The command line's --seccomp wins, then the first profile that names one.
        if let seccomp = root.optional("seccomp"), !spec.seccompGiven {
            let name = try seccomp.nonEmptyString()
            spec.seccomp = ["default", "strict", "none"].contains(name) ? name : place(name)
            spec.seccompGiven = true
        }
        if let limits = try root.optional("limits")?.mapping() {
            try limits.rejectUnknown(["memory"])
            if let memory = limits.optional("memory"), spec.memoryLimit == nil {
                let text = try memory.nonEmptyString()
                do { _ = try HardeningSpec.size(text) } catch { throw memory.error("invalid memory limit; use bytes or a K, M, G or T suffix, e.g. 512M") }
                spec.memoryLimit = text
            }
        }
        if try root.optional("best_effort")?.bool() == true { spec.sandbox.bestEffort = true }
    }
}

/// What a command needs to start under a filesystem sandbox, besides the trees it is given:
/// the dynamic loader's library directories, a few files of /etc that libc and TLS read,
/// time zones and CA certificates, the usual devices, /proc — and, once the command is
/// resolved, its executable, its `#!` interpreter and their ELF interpreter (`commandRules`).
enum SandboxBase {
    enum Access { case read, device }

    static let files: [(String, Access)] = [
        ("/etc/ld.so.cache", .read), ("/etc/ld.so.preload", .read), ("/etc/passwd", .read), ("/etc/group", .read),
        ("/etc/nsswitch.conf", .read), ("/etc/hosts", .read), ("/etc/host.conf", .read), ("/etc/resolv.conf", .read),
        ("/etc/gai.conf", .read), ("/etc/services", .read), ("/etc/protocols", .read), ("/etc/localtime", .read),
        // Certificates, not /etc/ssl or /etc/pki whole: their private/ holds TLS keys.
        ("/etc/ssl/certs", .read), ("/etc/ssl/openssl.cnf", .read), ("/etc/ca-certificates", .read),
        ("/etc/pki/tls/certs", .read), ("/etc/pki/ca-trust", .read),
        ("/usr/share/zoneinfo", .read), ("/usr/share/ca-certificates", .read),
        // Not /dev/pts: other terminals (every one, for root). Its own terminal is already open.
        ("/dev/null", .device), ("/dev/zero", .device), ("/dev/full", .device), ("/dev/random", .device),
        ("/dev/urandom", .device), ("/dev/tty", .device),
        ("/proc", .read),
    ]

    /// The loader's search path: its built-in directories and those /etc/ld.so.conf names
    /// (following `include` lines; read in C: in Swift it was a third of the sandbox's cost).
    static func libraryDirectories() -> [String] {
        var out = ["/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib"]
        var buffer = [CChar](repeating: 0, count: 4096)
        let used = buffer.withUnsafeMutableBufferPointer { stigmer_ld_so_conf_dirs($0.baseAddress, $0.count) }
        var start = 0
        for i in 0..<used where buffer[i] == 0 {
            let dir = buffer[start..<i].withUnsafeBufferPointer { String(decoding: UnsafeRawBufferPointer($0), as: UTF8.self) }
            start = i + 1
            // A directory inside another is covered by it (most of ld.so.conf's are).
            if !out.contains(where: { dir == $0 || dir.hasPrefix($0 + "/") }) { out.append(dir) }
        }
        return out
    }

    /// The executable, its `#!` interpreter (for `#!/usr/bin/env NAME`, NAME on the child's
    /// PATH too), and the ELF interpreter of each: what execve opens for execution.
    static func executables(_ path: String, childPath: String?) -> [String] {
        var out: [String] = []
        func add(_ p: String, depth: Int) {
            guard depth < 4, !out.contains(p) else { return }
            out.append(p)
            guard let head = header(p) else { return }
            if head.starts(with: [0x23, 0x21]) {  // "#!"
                let line = head.dropFirst(2).prefix { $0 != 0x0A }
                let words = line.split(whereSeparator: { $0 == 0x20 || $0 == 0x09 }).map { String(decoding: $0, as: UTF8.self) }
                guard let interpreter = words.first else { return }
                add(interpreter, depth: depth + 1)
                if interpreter.hasSuffix("/env"),
                   let program = words.dropFirst().first(where: { !$0.hasPrefix("-") && !$0.contains("=") }),
                   let found = try? Launcher.resolve(program, path: childPath) {
                    add(found, depth: depth + 1)
                }
            } else if let loader = elfInterpreter(head) {
                add(loader, depth: depth + 1)
            }
        }
        add(path, depth: 0)
        return out
    }

    static func header(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        return n > 0 ? Array(buffer[..<n]) : nil
    }

    /// PT_INTERP of a little-endian ELF64 whose program headers lie in `head`.
    static func elfInterpreter(_ head: [UInt8]) -> String? {
        guard head.count >= 64, head[0] == 0x7F, head[1] == 0x45, head[2] == 0x4C, head[3] == 0x46,
              head[4] == 2, head[5] == 1 else { return nil }
        func u(_ at: Int, _ size: Int) -> Int {
            guard at >= 0, at + size <= head.count else { return -1 }
            var v = 0
            for i in (0..<size).reversed() { v = v << 8 | Int(head[at + i]) }
            return v
        }
        let phoff = u(32, 8), phentsize = u(54, 2), phnum = u(56, 2)
        guard phoff > 0, phentsize >= 56, phnum > 0 else { return nil }
        for i in 0..<phnum {
            let at = phoff + i * phentsize
            guard u(at, 4) == 3 else { continue }  // PT_INTERP
            let offset = u(at + 8, 8), size = u(at + 32, 8)
            guard offset > 0, size > 1, offset + size <= head.count else { return nil }
            return String(decoding: head[offset..<(offset + size - 1)], as: UTF8.self)
        }
        return nil
    }
}

/// `--no-network`: the child's network namespace is made in its last steps (C, between
/// fork and execve); whether one can be made is checked here, before anything is opened.
enum PrivateNetwork {
    static func check() throws(StigmerError) {
        // Root (CAP_SYS_ADMIN) makes a plain one.
        if geteuid() == 0 { return }
        // Anyone else needs a user namespace of their own.
        for (file, refusing) in [("/proc/sys/user/max_user_namespaces", "0"), ("/proc/sys/kernel/unprivileged_userns_clone", "0"),
                                 ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1")] {
            guard let text = try? Loader.text(file) else { continue }
            if text.split(separator: "\n").first.map(String.init) == refusing {
                throw .notPermitted("--no-network: this user cannot create a network namespace (\(file) is \(refusing)); nothing was launched (run as root, or allow unprivileged user namespaces)")
            }
        }
    }
}
