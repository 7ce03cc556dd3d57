import ArgumentParser
import StigmerCLI
import StigmerCore
import StigmerLaunch
import StigmerManifests

/// Hardening flags of every launching command (DESIGN.md §6, SECURITY.md).
struct HardeningOptions: ParsableArguments {
    @Option(help: ArgumentHelp("default, strict, none, or the path of an OCI/Docker seccomp JSON profile.", valueName: "PROFILE"))
    var seccomp: String = "default"

    @Option(name: .customLong("memory-limit"), help: ArgumentHelp("The child's address-space limit (RLIMIT_AS), e.g. 512M or 2G.", valueName: "SIZE"))
    var memoryLimit: String?

    @Flag(name: .customLong("allow-core-dumps"), help: "Leave the core-dump limit alone (default: 0, soft and hard).")
    var allowCoreDumps = false

    @Flag(name: .customLong("init"), help: "Stay as a minimal PID 1: forward signals, reap orphans, exit with the child's status.")
    var initMode = false

    @Flag(name: .customLong("mask-output"), help: "Pass the child's stdout/stderr through, with secret values (and their base64, URL and JSON forms) replaced by <concealed>.")
    var maskOutput = false

    var inputs: HardeningInputs {
        HardeningInputs(seccomp: seccomp, memoryLimit: memoryLimit, allowCoreDumps: allowCoreDumps, initMode: initMode, maskOutput: maskOutput)
    }
}

struct HardeningInputs {
    var seccomp = "default"
    var memoryLimit: String?
    var allowCoreDumps = false
    var initMode = false
    var maskOutput = false

    var supervises: Bool { initMode || maskOutput }

    /// Compiles the filter and parses the limit. Runs before any secret is opened, so a
    /// profile that cannot be built stops the launch with nothing decrypted.
    func resolve() throws(StigmerError) -> Hardening {
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
        return hardening
    }

    /// `512M`, `2G`, `1048576`, `64K` (powers of 1024).
    static func size(_ text: String) throws(StigmerError) -> Int64 {
        var digits = Substring(text)
        var unit: Int64 = 1
        if let last = digits.last, !last.isNumber {
            switch last.uppercased() {
            case "K": unit = 1 << 10
            case "M": unit = 1 << 20
            case "G": unit = 1 << 30
            case "T": unit = 1 << 40
            default: unit = 0
            }
            digits = digits.dropLast()
            if digits.last == "i" || digits.last == "I" { digits = digits.dropLast() }
        }
        guard unit > 0, let n = Int64(digits), n > 0, n <= Int64.max / unit else {
            throw .usage("invalid --memory-limit \(quoted(text)); use bytes or a K, M, G or T suffix, e.g. 512M")
        }
        return n * unit
    }
}
