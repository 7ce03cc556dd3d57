#if canImport(Glibc)
import Glibc
#endif
import CSeccomp
import CStigmerShims
import StigmerCore
import StigmerSystem

/// A seccomp filter description, compiled to classic BPF with libseccomp and loaded by
/// the C shim as the very last step before execve.
public struct SeccompProfile: Sendable {
    public enum Action: Sendable, Equatable {
        case allow
        case errno(Int32)
        case killProcess
        case killThread
        case trap
        case log
        case trace(UInt16)

        var raw: UInt32 {
            switch self {
            case .allow: SCMP_ACT_ALLOW
            case .errno(let e): stigmer_scmp_act_errno(UInt16(truncatingIfNeeded: e))
            case .killProcess: SCMP_ACT_KILL_PROCESS
            case .killThread: SCMP_ACT_KILL_THREAD
            case .trap: SCMP_ACT_TRAP
            case .log: SCMP_ACT_LOG
            case .trace(let m): stigmer_scmp_act_trace(m)
            }
        }
    }

    public struct Comparison: Sendable, Equatable {
        public var index: UInt32
        public var op: scmp_compare
        public var value: UInt64
        public var valueTwo: UInt64

        public init(_ index: UInt32, _ op: scmp_compare, _ value: UInt64, _ valueTwo: UInt64 = 0) {
            self.index = index
            self.op = op
            self.value = value
            self.valueTwo = valueTwo
        }

        /// Low 32 bits equal `value` (int arguments: the upper half may be garbage).
        public static func low32(_ index: UInt32, _ value: UInt32) -> Comparison {
            Comparison(index, SCMP_CMP_MASKED_EQ, 0xFFFF_FFFF, UInt64(value))
        }

        /// All of `bits` set.
        public static func bits(_ index: UInt32, _ bits: UInt64) -> Comparison {
            Comparison(index, SCMP_CMP_MASKED_EQ, bits, bits)
        }
    }

    public struct Rule: Sendable, Equatable {
        public var syscall: String
        public var action: Action
        public var args: [Comparison]

        public init(_ syscall: String, _ action: Action, _ args: [Comparison] = []) {
            self.syscall = syscall
            self.action = action
            self.args = args
        }
    }

    public var name: String
    public var defaultAction: Action
    /// Foreign architectures allowed beside the native one (SCMP_ARCH_* values).
    public var extraArchitectures: [UInt32] = []
    public var rules: [Rule] = []
    /// A second, stacked filter that allows `personality` only with Docker's values.
    public var personalityAllowList: [UInt32]?
    /// PR_SET_MDWE: no memory that is writable and executable, ever (strict).
    public var denyWriteExecute = false
    /// The built-in profiles' programs, generated from libseccomp's output ahead of time
    /// (`BuiltinFilters`): loaded as they are, with no libseccomp work at launch.
    var precompiled: BuiltinFilters.Program?

    public init(name: String, defaultAction: Action) {
        self.name = name
        self.defaultAction = defaultAction
    }
}

extension SeccompProfile {
    static let eperm = Action.errno(EPERM)

    /// SECURITY.md's default filter: allow by default; deny cross-process memory access,
    /// kernel attack surface, namespaces and mounts, system state; argument filters for
    /// personality, ioctl and socket; a foreign ABI kills the process.
    public static var `default`: SeccompProfile {
        var p = SeccompProfile(name: "default", defaultAction: .allow)
        let denied = [
            // Cross-process memory
            "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "pidfd_getfd", "kcmp",
            "perf_event_open", "lookup_dcookie",
            // Kernel attack surface
            "bpf", "userfaultfd", "keyctl", "add_key", "request_key",
            // Namespaces and mounts
            "mount", "umount2", "umount", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen", "fsconfig",
            "fsmount", "fspick", "mount_setattr", "unshare", "setns",
            // System state
            "init_module", "finit_module", "delete_module", "create_module", "query_module", "get_kernel_syms",
            "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff", "iopl", "ioperm", "acct",
            "quotactl", "quotactl_fd", "clock_settime", "clock_settime64", "clock_adjtime", "clock_adjtime64",
            "settimeofday", "adjtimex", "stime", "sethostname", "setdomainname", "syslog", "vhangup",
            "open_by_handle_at", "fanotify_init", "nfsservctl",
            // Obsolete
            "uselib", "ustat", "sysfs", "_sysctl", "vm86", "vm86old", "modify_ldt",
        ]
        p.rules = denied.map { Rule($0, eperm) }
        // ENOSYS, so runtimes fall back (io_uring to plain I/O, clone3 to clone).
        for name in ["io_uring_setup", "io_uring_enter", "io_uring_register", "clone3"] {
            p.rules.append(Rule(name, .errno(ENOSYS)))
        }
        // clone with any namespace flag (one rule per flag: libseccomp allows one
        // comparison per argument and rule). CLONE_NEWTIME shares clone's signal byte.
        // CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET (<linux/sched.h>).
        let namespaceFlags: [UInt64] = [0x0002_0000, 0x0200_0000, 0x0400_0000, 0x0800_0000, 0x1000_0000, 0x2000_0000, 0x4000_0000]
        for flag in namespaceFlags {
            p.rules.append(Rule("clone", eperm, [.bits(0, flag)]))
        }
        // TIOCSTI (type into another terminal) and TIOCLINUX, on the low 32 bits.
        p.rules.append(Rule("ioctl", eperm, [.low32(1, 0x5412)]))
        p.rules.append(Rule("ioctl", eperm, [.low32(1, 0x541C)]))
        // AF_ALG (kernel crypto API) and AF_VSOCK sockets.
        p.rules.append(Rule("socket", eperm, [.low32(0, 38)]))
        p.rules.append(Rule("socket", eperm, [.low32(0, 40)]))
        // Docker's personality values; anything else (READ_IMPLIES_EXEC…) is EPERM.
        p.personalityAllowList = [0x0, 0x8, 0x20000, 0x20008, 0xFFFF_FFFF]
        p.precompiled = BuiltinFilters.default
        return p
    }

    /// `default` plus no write-and-execute memory: PR_SET_MDWE where the kernel has it,
    /// and rules refusing mmap with PROT_WRITE|PROT_EXEC and mprotect/pkey_mprotect with
    /// PROT_EXEC. JITs (V8, the JVM) break; CPython runs.
    public static var strict: SeccompProfile {
        var p = SeccompProfile.default
        p.name = "strict"
        p.denyWriteExecute = true
        p.rules.append(Rule("mmap", eperm, [.bits(2, UInt64(PROT_WRITE | PROT_EXEC))]))
        p.rules.append(Rule("mprotect", eperm, [.bits(2, UInt64(PROT_EXEC))]))
        p.rules.append(Rule("pkey_mprotect", eperm, [.bits(2, UInt64(PROT_EXEC))]))
        p.precompiled = BuiltinFilters.strict
        return p
    }
}

/// A compiled filter: one or two classic BPF programs, loaded in order (stacked).
public final class CompiledFilter: @unchecked Sendable {
    public let name: String
    public let denyWriteExecute: Bool
    public internal(set) var programs: [[sock_filter]]
    /// How many rules were skipped because this kernel/libseccomp does not know the call.
    public let unknownSyscalls: [String]

    init(name: String, denyWriteExecute: Bool, programs: [[sock_filter]], unknownSyscalls: [String]) {
        self.name = name
        self.denyWriteExecute = denyWriteExecute
        self.programs = programs
        self.unknownSyscalls = unknownSyscalls
    }

    public var instructionCount: Int { programs.reduce(0) { $0 + $1.count } }

    /// Calls `body` with `sock_fprog`s pointing into this object's storage.
    func withPrograms<T>(_ body: (UnsafePointer<sock_fprog>, Int32) -> T) -> T {
        var progs: [sock_fprog] = []
        var buffers: [UnsafeMutablePointer<sock_filter>] = []
        for program in programs {
            let buffer = UnsafeMutablePointer<sock_filter>.allocate(capacity: program.count)
            buffer.initialize(from: program, count: program.count)
            buffers.append(buffer)
            progs.append(sock_fprog(len: UInt16(program.count), filter: buffer))
        }
        defer { for b in buffers { b.deallocate() } }
        return progs.withUnsafeBufferPointer { p in body(p.baseAddress!, Int32(p.count)) }
    }
}

extension SeccompProfile {
    /// The filter to load: a built-in profile's precompiled programs, else libseccomp's
    /// build of the rules. Fails closed: any error here means nothing is launched.
    public func compile() throws(StigmerError) -> CompiledFilter {
        if let precompiled {
            return CompiledFilter(name: name, denyWriteExecute: denyWriteExecute, programs: precompiled.programs,
                                  unknownSyscalls: precompiled.unknownSyscalls)
        }
        return try compileWithLibseccomp()
    }

    /// Builds the filter with libseccomp and exports it as BPF (what `BuiltinFilters` was
    /// generated from, and what a test compares it with).
    public func compileWithLibseccomp() throws(StigmerError) -> CompiledFilter {
        guard let ctx = seccomp_init(defaultAction.raw) else {
            throw StigmerError(.notPermitted, "cannot build the seccomp filter \(quoted(name)) (seccomp_init failed); nothing was launched")
        }
        defer { seccomp_release(ctx) }
        func check(_ rc: Int32, _ what: String) throws(StigmerError) {
            guard rc == 0 else {
                throw StigmerError(.notPermitted, "cannot build the seccomp filter \(quoted(name)): \(what); nothing was launched", cause: Errno(-rc).description)
            }
        }
        // A syscall from a foreign ABI (i386 int 0x80, x32) kills the whole process.
        try check(seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS), "bad-architecture action")
        // no_new_privs is set by the loader in the shim, explicitly.
        try check(seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0), "no_new_privs attribute")
        // A binary tree of syscall numbers, not a chain: when a filter is loaded the kernel
        // runs it for every syscall number to build its allow cache (seccomp_cache_prepare,
        // under a lock), and along a chain of ~100 comparisons that was half the cost of
        // loading it. The tree reaches any number in about eight.
        try check(seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2), "binary-tree layout")
        // Architectures before rules (libseccomp pitfall).
        for arch in extraArchitectures where arch != seccomp_arch_native() {
            let rc = seccomp_arch_add(ctx, arch)
            if rc != 0 && rc != -EEXIST { try check(rc, "adding architecture \(arch)") }
        }
        var unknown: [String] = []
        for rule in rules {
            // A rule whose action equals the default fails in libseccomp and means nothing.
            if rule.action == defaultAction { continue }
            let number = seccomp_syscall_resolve_name(rule.syscall)
            if number == __NR_SCMP_ERROR {
                unknown.append(rule.syscall)
                continue
            }
            var cmps = rule.args.map { scmp_arg_cmp(arg: $0.index, op: $0.op, datum_a: $0.value, datum_b: $0.valueTwo) }
            // _exact for the native ABI: a call this architecture lacks must not be
            // silently rewritten; with foreign ABIs added, the non-exact form maps
            // each name per architecture.
            let rc: Int32 = cmps.withUnsafeMutableBufferPointer { buffer in
                if extraArchitectures.isEmpty {
                    return seccomp_rule_add_exact_array(ctx, rule.action.raw, number, UInt32(buffer.count), buffer.baseAddress)
                }
                return seccomp_rule_add_array(ctx, rule.action.raw, number, UInt32(buffer.count), buffer.baseAddress)
            }
            // -EOPNOTSUPP / -EDOM: a pseudo-syscall for this architecture; skip it.
            if rc == -EOPNOTSUPP || rc == -EDOM {
                unknown.append(rule.syscall)
                continue
            }
            try check(rc, "rule for \(rule.syscall)")
        }
        var programs = [try export(ctx)]
        if let allowed = personalityAllowList {
            if rules.contains(where: { $0.syscall == "personality" }) {
                programs.append(Self.personalityProgram(allowed))
            } else {
                // One program, one load (each costs a JIT compile and a TLB shootdown):
                // the personality check in front, going on into the main program where it
                // would have allowed. Stacked, the kernel takes the stricter verdict; the
                // main program allows personality (no rule names it), so the check's own
                // verdict is the stricter one either way.
                programs[0] = Self.prepend(Self.personalityProgram(allowed), to: programs[0])
            }
        }
        return CompiledFilter(name: name, denyWriteExecute: denyWriteExecute, programs: programs, unknownSyscalls: unknown)
    }

    /// libseccomp 2.5 has no export-to-memory: export to a memfd and read it back.
    func export(_ ctx: scmp_filter_ctx) throws(StigmerError) -> [sock_filter] {
        let fd = stigmer_memfd_create("stigmer-seccomp")
        guard fd >= 0 else {
            throw StigmerError(.notPermitted, "cannot export the seccomp filter (memfd_create); nothing was launched", cause: Errno.current.description)
        }
        defer { Sys.close(fd) }
        let rc = seccomp_export_bpf(ctx, fd)
        guard rc == 0 else {
            throw StigmerError(.notPermitted, "cannot export the seccomp filter; nothing was launched", cause: Errno(-rc).description)
        }
        lseek(fd, 0, SEEK_SET)
        let bytes: [UInt8]
        do { bytes = try IO.readAll(fd, limit: 1 << 20) } catch {
            throw StigmerError(.notPermitted, "cannot read back the seccomp filter; nothing was launched", cause: error.description)
        }
        let size = MemoryLayout<sock_filter>.size
        guard bytes.count % size == 0, bytes.count / size > 0, bytes.count / size <= 4096 else {
            throw StigmerError(.notPermitted, "the seccomp filter has an invalid size (\(bytes.count) bytes); nothing was launched")
        }
        return bytes.withUnsafeBytes { raw in Array(raw.bindMemory(to: sock_filter.self)) }
    }

    /// `check` in front of `main`: each of its `ret ALLOW` becomes a jump to `main`'s first
    /// instruction (classic BPF jumps are relative and forward, so `main`'s own stay valid).
    static func prepend(_ check: [sock_filter], to main: [sock_filter]) -> [sock_filter] {
        let allow = UInt32(SECCOMP_RET_ALLOW)
        var out = check
        for i in out.indices where out[i].code == UInt16(BPF_RET | BPF_K) && out[i].k == allow {
            out[i] = sock_filter(code: UInt16(BPF_JMP | BPF_JA), jt: 0, jf: 0, k: UInt32(out.count - i - 1))
        }
        return out + main
    }

    static func stmt(_ code: Int32, _ k: UInt32) -> sock_filter { sock_filter(code: UInt16(code), jt: 0, jf: 0, k: k) }

    static func jeq(_ k: UInt32, _ jt: UInt8, _ jf: UInt8) -> sock_filter {
        sock_filter(code: UInt16(BPF_JMP | BPF_JEQ | BPF_K), jt: jt, jf: jf, k: k)
    }

    /// The head of a hand-written check: anything but syscall `nr` of architecture `arch`
    /// is allowed (left to the main filter); `nr` goes on to the next instruction.
    static func onlySyscall(_ nr: UInt32, arch: UInt32) -> [sock_filter] {
        let allow = UInt32(SECCOMP_RET_ALLOW)
        return [
            stmt(BPF_LD | BPF_W | BPF_ABS, 4),     // arch
            jeq(arch, 1, 0),
            stmt(BPF_RET | BPF_K, allow),          // other ABIs: the main filter decides
            stmt(BPF_LD | BPF_W | BPF_ABS, 0),     // syscall number
            jeq(nr, 1, 0),
            stmt(BPF_RET | BPF_K, allow),
        ]
    }

    /// What a sandbox refuses at `socket()`, where Landlock cannot:
    /// - `unix`: `socket(AF_UNIX, …)`. Landlock (ABI ≤ 7) does not restrict connecting to a
    ///   Unix socket by its path, so a confined child (or one without a network) could still
    ///   reach `/var/run/docker.sock`. `socketpair` (no path) stays allowed.
    /// - `streamProtocols`: `socket(AF_INET or AF_INET6, …, IPPROTO_MPTCP or IPPROTO_SCTP)`.
    ///   Landlock's TCP rules cover `IPPROTO_TCP` only: MPTCP (which falls back to plain TCP)
    ///   and SCTP would reach any port.
    /// EACCES, as Landlock answers. Every ABI the kernel runs for this machine is checked: the
    /// native one, its 32-bit one (i386's `socketcall` multiplexes socket creation behind a
    /// pointer, so it is refused whole) and x32. io_uring can create sockets without
    /// `socket()`: with a guard its calls answer ENOSYS (runtimes fall back), as the default
    /// filter already does.
    public struct SocketGuard: Sendable, Equatable {
        public var unix = false
        public var streamProtocols = false

        public init(unix: Bool = false, streamProtocols: Bool = false) {
            self.unix = unix
            self.streamProtocols = streamProtocols
        }

        public var isEmpty: Bool { !unix && !streamProtocols }
    }

    /// A classic BPF program with symbolic jump targets, resolved when it is assembled.
    struct Assembler {
        enum Target: Hashable { case label(String), next }
        var code: [(op: sock_filter, jt: Target, jf: Target)] = []
        var labels: [String: Int] = [:]

        mutating func label(_ name: String) { labels[name] = code.count }
        mutating func stmt(_ op: Int32, _ k: UInt32) { code.append((SeccompProfile.stmt(op, k), .next, .next)) }
        mutating func jeq(_ k: UInt32, _ jt: Target, _ jf: Target) {
            code.append((SeccompProfile.jeq(k, 0, 0), jt, jf))
        }

        func assemble() -> [sock_filter] {
            code.enumerated().map { i, entry in
                func offset(_ t: Target) -> UInt8 {
                    guard case .label(let name) = t else { return 0 }
                    // A label missing or behind would make a check fail open: a bug here.
                    guard let at = labels[name], at > i, at - i - 1 <= 255 else { preconditionFailure("bad BPF label \(name)") }
                    return UInt8(at - i - 1)
                }
                var op = entry.op
                op.jt = offset(entry.jt)
                op.jf = offset(entry.jf)
                return op
            }
        }
    }

    /// `guard`'s checks in front of `filter`'s first program (one load), or a program of its
    /// own when there is no filter (`--seccomp none`). Hand-written: no libseccomp work at
    /// launch. nil on an architecture with no entry here.
    public static func guarding(_ filter: CompiledFilter?, with guard_: SocketGuard) -> CompiledFilter? {
        guard !guard_.isEmpty else { return filter }
        // (audit arch, socket syscall numbers, socketcall number or nil); io_uring_setup,
        // _enter and _register are 425-427 on each of them (x32: with its bit).
        let uring: [UInt32] = [425, 426, 427]
        #if arch(x86_64)
        let abis: [(UInt32, [UInt32], UInt32?, [UInt32])] = [
            (0xC000_003E, [41, 0x4000_0000 | 41], nil, uring + uring.map { 0x4000_0000 | $0 }),  // x86_64 and x32
            (0x4000_0003, [359], 102, uring),                                                   // i386
        ]
        #elseif arch(arm64)
        let abis: [(UInt32, [UInt32], UInt32?, [UInt32])] = [
            (0xC000_00B7, [198], nil, uring),  // aarch64
            (0x4000_0028, [281], nil, uring),  // arm (EABI)
        ]
        #else
        return nil
        #endif
        let allow = UInt32(SECCOMP_RET_ALLOW), refuse = UInt32(SECCOMP_RET_ERRNO) | UInt32(EACCES)
        var a = Assembler()
        a.stmt(BPF_LD | BPF_W | BPF_ABS, 4)  // arch
        for (i, abi) in abis.enumerated() { a.jeq(abi.0, .label("abi\(i)"), .next) }
        a.stmt(BPF_RET | BPF_K, allow)  // an ABI not listed: the main filter decides
        for (i, abi) in abis.enumerated() {
            a.label("abi\(i)")
            a.stmt(BPF_LD | BPF_W | BPF_ABS, 0)  // syscall number
            for nr in abi.1 { a.jeq(nr, .label("socket"), .next) }
            if let socketcall = abi.2 { a.jeq(socketcall, .label("refuse"), .next) }
            for nr in abi.3 { a.jeq(nr, .label("enosys"), .next) }
            a.stmt(BPF_RET | BPF_K, allow)
        }
        a.label("socket")
        a.stmt(BPF_LD | BPF_W | BPF_ABS, 16)  // arg0, the family (low 32 bits)
        if guard_.unix { a.jeq(UInt32(AF_UNIX), .label("refuse"), .next) }
        if guard_.streamProtocols {
            a.jeq(UInt32(AF_INET), .label("inet"), .next)
            a.jeq(UInt32(AF_INET6), .label("inet"), .next)
        }
        a.stmt(BPF_RET | BPF_K, allow)
        if guard_.streamProtocols {
            // Only what Landlock's TCP rules cover, or what they never claim to (datagrams,
            // raw): a stream socket of protocol 0 (TCP) or 6, a datagram or raw socket.
            // Anything else — MPTCP (262) or SCTP streams, SEQPACKET (SCTP again), DCCP —
            // would reach any port.
            a.label("inet")
            a.stmt(BPF_LD | BPF_W | BPF_ABS, 24)   // arg1, the type (low 32 bits)
            a.stmt(BPF_ALU | BPF_AND | BPF_K, 0xF)  // without SOCK_NONBLOCK | SOCK_CLOEXEC
            a.jeq(UInt32(SOCK_STREAM.rawValue), .label("stream"), .next)
            a.jeq(UInt32(SOCK_DGRAM.rawValue), .label("allow"), .next)
            a.jeq(UInt32(SOCK_RAW.rawValue), .label("allow"), .next)
            a.stmt(BPF_RET | BPF_K, refuse)
            a.label("stream")
            a.stmt(BPF_LD | BPF_W | BPF_ABS, 32)   // arg2, the protocol (low 32 bits)
            a.jeq(0, .label("allow"), .next)
            a.jeq(UInt32(IPPROTO_TCP), .label("allow"), .next)
            a.stmt(BPF_RET | BPF_K, refuse)
            a.label("allow")
            a.stmt(BPF_RET | BPF_K, allow)
        }
        a.label("refuse")
        a.stmt(BPF_RET | BPF_K, refuse)
        a.label("enosys")
        a.stmt(BPF_RET | BPF_K, UInt32(SECCOMP_RET_ERRNO) | UInt32(ENOSYS))
        let check = a.assemble()
        guard let filter, !filter.programs.isEmpty else {
            return CompiledFilter(name: "socket-guard", denyWriteExecute: false, programs: [check], unknownSyscalls: [])
        }
        var programs = filter.programs
        programs[0] = SeccompProfile.prepend(check, to: programs[0])
        return CompiledFilter(name: filter.name, denyWriteExecute: filter.denyWriteExecute, programs: programs,
                              unknownSyscalls: filter.unknownSyscalls)
    }

    /// A small hand-written program: for the native architecture's `personality`, allow
    /// only the listed values (compared on all 64 bits), else EPERM; everything else is
    /// left to the main filter (stacked, or with `prepend`, run into it).
    static func personalityProgram(_ allowed: [UInt32]) -> [sock_filter] {
        let arch = seccomp_arch_native()
        let nr = UInt32(bitPattern: seccomp_syscall_resolve_name("personality"))
        let allow = UInt32(SECCOMP_RET_ALLOW)
        let deny = UInt32(SECCOMP_RET_ERRNO) | UInt32(EPERM)
        let n = UInt8(allowed.count)
        var prog: [sock_filter] = onlySyscall(nr, arch: arch) + [
            stmt(BPF_LD | BPF_W | BPF_ABS, 20),       // arg0, high 32 bits (little-endian)
            jeq(0, 0, n + 1),                         // non-zero: deny
            stmt(BPF_LD | BPF_W | BPF_ABS, 16),       // arg0, low 32 bits
        ]
        for (i, value) in allowed.enumerated() {
            // Match: jump to the allow at the end; else fall through to the next test.
            prog.append(jeq(value, UInt8(allowed.count - i), 0))
        }
        prog.append(stmt(BPF_RET | BPF_K, deny))
        prog.append(stmt(BPF_RET | BPF_K, allow))
        return prog
    }
}
