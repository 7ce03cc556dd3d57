import StigmerCore
import StigmerManifests
import StigmerSystem

/// The hardening a launch asks for, as the user wrote it (DESIGN.md §6): compiled into a
/// `Hardening` before anything is opened.
public struct HardeningSpec: Sendable, Equatable {
    /// `default`, `strict`, `none`, or the path of an OCI/Docker seccomp JSON profile.
    public var seccomp = "default"
    /// `--seccomp` was given: a sandbox profile's `seccomp` does not replace it.
    public var seccompGiven = false
    /// `512M`, `2G`, `512Mi`, `1048576`: RLIMIT_AS for the child.
    public var memoryLimit: String?
    public var allowCoreDumps = false
    public var initMode = false
    public var maskOutput = false
    /// Whether the child is kept out of the launcher's home, store and token files.
    public var isolation = Isolation.Policy.auto
    /// What else the child may reach: filesystem trees, TCP ports, a network of its own.
    public var sandbox = SandboxSpec()

    public init(seccomp: String = "default", memoryLimit: String? = nil, allowCoreDumps: Bool = false,
                initMode: Bool = false, maskOutput: Bool = false, isolation: Isolation.Policy = .auto) {
        self.isolation = isolation
        self.seccomp = seccomp
        self.memoryLimit = memoryLimit
        self.allowCoreDumps = allowCoreDumps
        self.initMode = initMode
        self.maskOutput = maskOutput
    }

    public var supervises: Bool { initMode || maskOutput }

    /// With every sandbox profile merged in (each file once): its trees and ports added to
    /// the flags', its seccomp and memory limit used where the flags left the default.
    public func resolved() throws(StigmerError) -> HardeningSpec {
        var out = self
        // Expanded once, here: the launch keeps these names from a sandboxed child too.
        out.sandbox.profiles = sandbox.profiles.map { RelativePath.expandingHome($0, home: Sys.getenv("HOME")) }
        var seen: [String] = []
        for path in out.sandbox.profiles {
            let real = Isolation.realPath(path) ?? path
            guard !seen.contains(real) else { continue }
            seen.append(real)
            try SandboxProfile.apply(path, to: &out)
        }
        return out
    }

    /// Compiles the filter and parses the limit.
    public func compile() throws(StigmerError) -> Hardening {
        var hardening = Hardening(allowCoreDumps: allowCoreDumps)
        if let memoryLimit { hardening.addressSpaceLimit = try Self.size(memoryLimit) }
        switch seccomp {
        case "none": break
        case "default": hardening.filter = try SeccompProfile.default.compile()
        case "strict": hardening.filter = try SeccompProfile.strict.compile()
        default:
            let documents = try Loader.documents(try Loader.text(seccomp), file: seccomp)
            guard documents.count == 1 else { throw .data("\(seccomp): expected one seccomp profile (JSON)") }
            hardening.filter = try OCIProfile.decode(Field(root: documents[0], file: seccomp)).compile()
        }
        let guard_ = SeccompProfile.SocketGuard(unix: (sandbox.hasFS || sandbox.noNetwork) && !sandbox.unixSockets,
                                                 streamProtocols: sandbox.hasNet)
        if !guard_.isEmpty {
            guard let filter = SeccompProfile.guarding(hardening.filter, with: guard_) else {
                throw .notPermitted("cannot refuse Unix, MPTCP and SCTP sockets to a sandbox on this architecture; nothing was launched")
            }
            hardening.filter = filter
        }
        return hardening
    }

    /// Bytes, or a K, M, G or T suffix (powers of 1024), optionally followed by `i`
    /// (Kubernetes' `512Mi`): `1048576`, `64K`, `512M`, `512Mi`, `2G`.
    public static func size(_ text: String) throws(StigmerError) -> Int64 {
        var digits = Substring(text)
        var unit: Int64 = 1
        if digits.last == "i" || digits.last == "I" { digits = digits.dropLast() }
        if let last = digits.last, !last.isNumber {
            switch last {
            case "K", "k": unit = 1 << 10
            case "M", "m": unit = 1 << 20
            case "G", "g": unit = 1 << 30
            case "T", "t": unit = 1 << 40
            default: unit = 0
            }
            digits = digits.dropLast()
        } else if digits.count != text.count {
            unit = 0  // an `i` without a unit
        }
        guard unit > 0, !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
              let n = Int64(digits), n > 0, n <= Int64.max / unit else {
            throw .usage("invalid --memory-limit \(quoted(text)); use bytes or a K, M, G or T suffix (optionally Ki, Mi, Gi, Ti), e.g. 512M")
        }
        return n * unit
    }
}
