#if canImport(Glibc)
import Glibc
#endif
import Testing
import StigmerCore
@testable import StigmerLaunch

@Suite("Sandbox: flags, profiles, what a command needs")
struct SandboxTests {
    @Test func ports() {
        #expect(SandboxSpec.ports("443") == [443])
        #expect(SandboxSpec.ports("80,443,0,65535") == [80, 443, 0, 65535])
        for bad in ["", "65536", "1,,2", "-1", "http", "1 2", "0x10", "443,", "000000443"] {
            #expect(SandboxSpec.ports(bad) == nil, "\(bad)")
        }
    }

    @Test func sandboxValue() {
        var spec = SandboxSpec()
        spec.add("best-effort")
        spec.add("p.yaml")
        #expect(spec.bestEffort && spec.profiles == ["p.yaml"])
    }

    func temporaryDirectory() -> String {
        var template = Array("/tmp/stigmer-sandbox-test.XXXXXX".utf8CString)
        return template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
    }

    func write(_ path: String, _ text: String) {
        let f = fopen(path, "w")!
        fputs(text, f)
        fclose(f)
    }

    @Test func profileMergesUnderTheFlags() throws {
        let dir = temporaryDirectory()
        write(dir + "/p.yaml", """
            fs:
              read: [data, /abs]
              write: [~/w]
              exec: [/usr/bin]
            net:
              connect: [443, 8443]
              bind: [8080]
              none: true
            seccomp: strict
            limits:
              memory: 512M
            best_effort: true
            """)
        var spec = HardeningSpec()
        spec.sandbox.fsRead = ["/flag"]
        spec.sandbox.profiles = [dir + "/p.yaml", dir + "/./p.yaml"]  // the same file: merged once
        let out = try spec.resolved()
        #expect(out.sandbox.fsRead == ["/flag", dir + "/data", "/abs"])
        #expect(out.sandbox.fsWrite == [(getenv("HOME").map { String(cString: $0) } ?? "~") + "/w"])
        #expect(out.sandbox.fsExec == ["/usr/bin"])
        #expect(out.sandbox.netConnect == [443, 8443] && out.sandbox.netBind == [8080])
        #expect(out.sandbox.noNetwork && out.sandbox.bestEffort)
        #expect(out.seccomp == "strict" && out.memoryLimit == "512M")

        // The flags win over the profile's seccomp and limit.
        var flagged = HardeningSpec(seccomp: "none", memoryLimit: "1G")
        flagged.seccompGiven = true
        flagged.sandbox.profiles = [dir + "/p.yaml"]
        let kept = try flagged.resolved()
        #expect(kept.seccomp == "none" && kept.memoryLimit == "1G")
    }

    @Test func emptySectionsStillSandbox() throws {
        let dir = temporaryDirectory()
        write(dir + "/p.yaml", "fs:\n  read: []\nnet:\n  connect: []\n")
        var spec = HardeningSpec()
        spec.sandbox.profiles = [dir + "/p.yaml"]
        let out = try spec.resolved()
        #expect(out.sandbox.hasFS && out.sandbox.hasNet)
        #expect(!HardeningSpec().sandbox.hasFS && !HardeningSpec().sandbox.hasNet)
    }

    @Test func socketGuardJumpsLandInTheProgram() throws {
        for guard_ in [SeccompProfile.SocketGuard(unix: true), .init(streamProtocols: true), .init(unix: true, streamProtocols: true)] {
            let filter = try #require(SeccompProfile.guarding(nil, with: guard_))
            let program = filter.programs[0]
            for (i, op) in program.enumerated() where op.code & 0x07 == 0x05 {  // BPF_JMP
                #expect(i + 1 + Int(op.jt) < program.count && i + 1 + Int(op.jf) < program.count)
            }
            #expect(program.last?.code == 0x06)  // BPF_RET
        }
        #expect(SeccompProfile.guarding(nil, with: .init()) == nil)
    }

    @Test func profileErrorsAreLocated() {
        let dir = temporaryDirectory()
        for (text, needle) in [("fs:\n  red: [x]\n", "p.yaml:2:3"), ("net:\n  connect: [70000]\n", "not a TCP port"),
                               ("limits:\n  memory: lots\n", "invalid memory limit"), ("colour: red\n", "unknown field")] {
            write(dir + "/p.yaml", text)
            var spec = HardeningSpec()
            spec.sandbox.profiles = [dir + "/p.yaml"]
            do {
                _ = try spec.resolved()
                Issue.record("accepted: \(text)")
            } catch {
                #expect(error.code == .dataError, "\(error)")
                #expect(error.description.contains(needle), "\(error)")
            }
        }
    }

    @Test func whatACommandNeedsToStart() {
        // An ELF's interpreter is the dynamic loader (/bin/true is dynamic on Debian).
        let needs = SandboxBase.executables("/bin/true", childPath: "/usr/bin:/bin")
        #expect(needs.first == "/bin/true")
        #expect(needs.contains { $0.contains("ld-linux") }, "\(needs)")
        // A script: its interpreter; through env, the program env finds on PATH.
        let dir = temporaryDirectory()
        write(dir + "/s", "#!/usr/bin/env -S sh -e\necho\n")
        let script = SandboxBase.executables(dir + "/s", childPath: "/usr/bin:/bin")
        #expect(script.prefix(2) == [dir + "/s", "/usr/bin/env"], "\(script)")
        #expect(script.contains { $0.hasSuffix("/sh") }, "\(script)")
        // Not an executable at all: only itself.
        write(dir + "/t", "text")
        #expect(SandboxBase.executables(dir + "/t", childPath: nil) == [dir + "/t"])
    }

    @Test func libraryDirectoriesIncludeTheDefaults() {
        let dirs = SandboxBase.libraryDirectories()
        #expect(["/lib", "/usr/lib"].allSatisfy(dirs.contains))
    }
}
