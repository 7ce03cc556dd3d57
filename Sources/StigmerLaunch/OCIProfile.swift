#if canImport(Glibc)
import Glibc
#endif
import CSeccomp
import StigmerCore

/// An OCI/Docker seccomp JSON profile (`defaultAction`, `defaultErrnoRet`, `architectures`
/// or `archMap`, `syscalls` with `names`/`action`/`errnoRet`/`args`/`includes`/`excludes`),
/// as Docker itself applies it to an unprivileged container:
/// - rules that `includes.caps` are skipped and rules that `excludes.caps` are kept — the
///   child is treated as holding no capabilities (stricter than a privileged container);
/// - `includes.arches`/`excludes.arches` are matched against the native architecture;
///   `includes.minKernel` against the running kernel;
/// - names this kernel's libseccomp does not know are skipped, as Docker does.
public enum OCIProfile {
    public static func decode(_ root: Field) throws(StigmerError) -> SeccompProfile {
        let top = try root.mapping()
        let defaultErrno = try top.optional("defaultErrnoRet").map(Self.errno)
        let defaultField = try top.require("defaultAction")
        var profile = SeccompProfile(name: root.file, defaultAction: try action(defaultField, errno: defaultErrno))

        let native = seccomp_arch_native()
        var arches: [String] = []
        for item in try top.optional("architectures")?.sequence() ?? [] { arches.append(try item.string()) }
        for entry in try top.optional("archMap")?.sequence() ?? [] {
            let map = try entry.mapping()
            let arch = try map.require("architecture").string()
            guard architecture(arch) == native else { continue }
            arches.append(arch)
            for sub in try map.optional("subArchitectures")?.sequence() ?? [] { arches.append(try sub.string()) }
        }
        for name in arches {
            guard let value = architecture(name) else { continue }  // unknown to this libseccomp
            if value != native && !profile.extraArchitectures.contains(value) { profile.extraArchitectures.append(value) }
        }

        let kernel = kernelVersion()
        for entry in try top.optional("syscalls")?.sequence() ?? [] {
            let map = try entry.mapping()
            if let includes = try map.optional("includes")?.mapping() {
                if let caps = includes.optional("caps"), !(try caps.sequence()).isEmpty { continue }
                if let list = includes.optional("arches"), !(try list.stringList()).contains(where: { goArch($0) == native }) { continue }
                if let min = try includes.optional("minKernel")?.string(), compare(kernel, parseVersion(min)) < 0 { continue }
            }
            if let excludes = try map.optional("excludes")?.mapping() {
                if let list = excludes.optional("arches"), (try list.stringList()).contains(where: { goArch($0) == native }) { continue }
            }
            let errno = try map.optional("errnoRet").map(Self.errno)
            let act = try action(try map.require("action"), errno: errno ?? defaultErrno)
            var args: [SeccompProfile.Comparison] = []
            for arg in try map.optional("args")?.sequence() ?? [] {
                let a = try arg.mapping()
                let opField = try a.require("op")
                guard let op = comparison(try opField.string()) else {
                    throw opField.error("unknown comparison; expected SCMP_CMP_NE, LT, LE, EQ, GE, GT or MASKED_EQ")
                }
                let index = try a.require("index").int()
                guard (0...5).contains(index) else { throw arg.error("argument index must be 0 to 5") }
                args.append(SeccompProfile.Comparison(UInt32(index), op, try uint64(a.require("value")),
                                                      try a.optional("valueTwo").map { (f) throws(StigmerError) in try uint64(f) } ?? 0))
            }
            var names: [String] = []
            if let list = map.optional("names") { names = try list.stringList() }
            if let single = try map.optional("name")?.string() { names.append(single) }
            for name in names { profile.rules.append(SeccompProfile.Rule(name, act, args)) }
        }
        return profile
    }

    static func action(_ field: Field, errno: Int32?) throws(StigmerError) -> SeccompProfile.Action {
        switch try field.string() {
        case "SCMP_ACT_ALLOW": return .allow
        case "SCMP_ACT_ERRNO": return .errno(errno ?? EPERM)
        case "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD": return .killThread
        case "SCMP_ACT_KILL_PROCESS": return .killProcess
        case "SCMP_ACT_TRAP": return .trap
        case "SCMP_ACT_LOG": return .log
        case "SCMP_ACT_TRACE": return .trace(UInt16(truncatingIfNeeded: errno ?? 0))
        default: throw field.error("unsupported action; expected SCMP_ACT_ALLOW, ERRNO, KILL, KILL_PROCESS, KILL_THREAD, TRAP, LOG or TRACE (NOTIFY needs a supervisor stigmer-exec does not run)")
        }
    }

    /// `defaultErrnoRet`/`errnoRet`: the 16 bits of data a seccomp action carries. A larger
    /// number trapped converting to Int32 (found by fuzzing): refused, as a negative one.
    static func errno(_ field: Field) throws(StigmerError) -> Int32 {
        let value = try field.int()
        guard (0...0xFFFF).contains(value) else { throw field.error("expected an errno from 0 to 65535") }
        return Int32(value)
    }

    static func comparison(_ name: String) -> scmp_compare? {
        switch name {
        case "SCMP_CMP_NE": SCMP_CMP_NE
        case "SCMP_CMP_LT": SCMP_CMP_LT
        case "SCMP_CMP_LE": SCMP_CMP_LE
        case "SCMP_CMP_EQ": SCMP_CMP_EQ
        case "SCMP_CMP_GE": SCMP_CMP_GE
        case "SCMP_CMP_GT": SCMP_CMP_GT
        case "SCMP_CMP_MASKED_EQ": SCMP_CMP_MASKED_EQ
        default: nil
        }
    }

    static func uint64(_ field: Field) throws(StigmerError) -> UInt64 {
        guard case .scalar(let text, _) = field.node.kind, let v = UInt64(text) else {
            throw field.error("expected a non-negative whole number")
        }
        return v
    }

    /// `SCMP_ARCH_X86_64` → libseccomp's token for it, nil when unknown.
    static func architecture(_ name: String) -> UInt32? {
        guard name.hasPrefix("SCMP_ARCH_") else { return nil }
        let token = seccomp_arch_resolve_name(String(name.dropFirst("SCMP_ARCH_".count)).lowercased())
        return token == 0 ? nil : token
    }

    /// Docker's Go architecture names in includes/excludes.
    static func goArch(_ name: String) -> UInt32? {
        let map = ["amd64": "x86_64", "x86": "x86", "386": "x86", "x32": "x32", "arm64": "aarch64", "arm": "arm",
                   "ppc64le": "ppc64le", "s390x": "s390x", "s390": "s390", "riscv64": "riscv64", "mips64": "mips64"]
        guard let libName = map[name] else { return nil }
        let token = seccomp_arch_resolve_name(libName)
        return token == 0 ? nil : token
    }

    static func kernelVersion() -> [Int] {
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: &u.release) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
        return parseVersion(release)
    }

    static func parseVersion(_ text: String) -> [Int] {
        text.split(whereSeparator: { !$0.isNumber }).prefix(3).compactMap { Int($0) }
    }

    static func compare(_ a: [Int], _ b: [Int]) -> Int {
        for i in 0..<max(a.count, b.count) {
            let x = i < a.count ? a[i] : 0, y = i < b.count ? b[i] : 0
            if x != y { return x < y ? -1 : 1 }
        }
        return 0
    }
}
