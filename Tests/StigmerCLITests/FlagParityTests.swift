import ArgumentParser
import Testing
@testable import StigmerCLI
import StigmerLaunch

/// The hot path parses `run`, `mcp run` and `mcp check` by hand (ArgumentParser's first parse costs ~2 ms
/// in the launcher). These prove the two parsers agree: same flags, and for every argv the
/// fast path accepts, the same result; what ArgumentParser refuses, the fast path refuses.
@Suite("Flag parity: fast parser and ArgumentParser")
struct FlagParityTests {
    static func flags(inHelp help: String) -> Set<String> {
        Set(help.matches(of: /--[a-z][a-z-]*/).map { String($0.output) }).subtracting(["--help", "--version"])
    }

    @Test func runTableHasEveryFlag() {
        #expect(Set(LaunchArguments.runFlags.map(\.name)) == Self.flags(inHelp: RunArguments.helpMessage(columns: 400)))
    }

    @Test func mcpRunTableHasEveryFlag() {
        #expect(Set(LaunchArguments.mcpRunFlags.map(\.name)) == Self.flags(inHelp: McpRunArguments.helpMessage(columns: 400)))
    }

    @Test func mcpCheckTableHasEveryFlag() {
        #expect(Set(LaunchArguments.mcpCheckFlags.map(\.name)) == Self.flags(inHelp: McpCheckArguments.helpMessage(columns: 400)))
    }

    /// A valid value for each flag that takes one.
    static let sample: [String: String] = [
        "--home": "/h", "--key-fd": "3", "--log-level": "debug", "--store": "/s.db", "--execution-id": "e-1",
        "--seccomp": "strict", "--memory-limit": "512Mi", "--token-file": "/t", "--token-fd": "4", "--tls-ca": "/ca.pem",
        "--fetch-timeout": "5s", "--server": "grpc://127.0.0.1:1", "--agent": "a", "--instance": "i", "--env-ref": "base",
        "--env": "A=1", "--secret": "S", "--env-file": "/e.env", "--secret-file": "/s.env", "--config": "/c.json",
        "--context-server": "grpcs://h:2", "--fs-read": "/r", "--fs-write": "/w", "--fs-exec": "/x", "--net-connect": "443,8443",
        "--net-bind": "8080", "--sandbox": "best-effort", "--file-var": "TOKEN", "--error-fd": "9",
    ]

    /// Values each parser must refuse.
    static let bad: [(String, String)] = [
        ("--key-fd", "-1"), ("--key-fd", "x"), ("--token-fd", "three"), ("--log-level", "loud"), ("--error-fd", "2"), ("--error-fd", "x"),
        ("--memory-limit", "512iM"), ("--memory-limit", "0"), ("--memory-limit", "12X"), ("--memory-limit", "M"),
        ("--env", "1A=x"), ("--env", "NOEQUALS"), ("--secret", "bad name"),
        ("--net-connect", "70000"), ("--net-connect", "http"), ("--net-bind", "1,,2"), ("--net-bind", "-5"), ("--file-var", "1X"),
    ]

    static func cases(_ table: [LaunchArguments.Flag], tail: [String]) -> [[String]] {
        var out: [[String]] = []
        for flag in table {
            if flag.takesValue {
                let v = sample[flag.name] ?? "v"
                out.append([flag.name, v] + tail)
                out.append(["\(flag.name)=\(v)"] + tail)
                out.append([flag.name, v, flag.name, v] + tail)  // repeated: last wins, or both kept
                out.append([flag.name] + tail.prefix(0))            // missing value
            } else {
                out.append([flag.name] + tail)
                out.append(["\(flag.name)=1"] + tail)
            }
        }
        for (name, value) in bad where table.contains(where: { $0.name == name }) {
            out.append([name, value] + tail)
            out.append(["\(name)=\(value)"] + tail)
        }
        // A value that looks like an option: ArgumentParser takes it as one.
        for flag in table where flag.takesValue {
            for word in ["--init", "-h", "-1", "--"] { out.append([flag.name, word] + tail) }
        }
        out.append(["--no-such-flag"] + tail)
        out.append(["--instance", "i", "--env-ref", "e"] + tail)  // exclusive
        out.append(tail)
        return out
    }

    static let runCases = cases(LaunchArguments.runFlags, tail: ["--", "cmd", "--not-a-flag", "x"])
        + [["--env", "A=1"], ["--env", "A=1", "--"], ["--", "--"], ["--mask-output", "--init", "--", "a=b"]]
    static let mcpCases = cases(LaunchArguments.mcpRunFlags, tail: ["--config", "/c.json", "--server", "s"])
        + [["--config", "/c.json"], ["--server", "s", "--config", "/c", "--", "x"]]

    static let mcpCheckCases = cases(LaunchArguments.mcpCheckFlags, tail: ["--config", "/c.json"])
        + [["--server", "s"], ["--config", "/c", "--", "x"], ["--config", "/c", "--init"]]

    @Test(arguments: mcpCheckCases)
    func mcpCheckAgrees(_ argv: [String]) {
        let fast = LaunchArguments.fastParse(argv[...], flags: LaunchArguments.mcpCheckFlags, needsCommand: false, needsServer: false)
        let slow = try? McpCheckArguments.parse(argv).arguments
        if let fast {
            #expect(slow != nil, "the fast parser accepted what ArgumentParser refuses: \(argv)")
            #expect(fast == slow, "\(argv)")
        }
    }

    @Test(arguments: runCases)
    func runAgrees(_ argv: [String]) {
        let fast = LaunchArguments.fastParse(argv[...], flags: LaunchArguments.runFlags, needsCommand: true)
        let slow = try? RunArguments.parse(argv).arguments
        if let fast {
            #expect(slow != nil, "the fast parser accepted what ArgumentParser refuses: \(argv)")
            #expect(fast == slow, "\(argv)")
        }
    }

    @Test(arguments: mcpCases)
    func mcpRunAgrees(_ argv: [String]) {
        let fast = LaunchArguments.fastParse(argv[...], flags: LaunchArguments.mcpRunFlags, needsCommand: false)
        let slow = try? McpRunArguments.parse(argv).arguments
        if let fast {
            #expect(slow != nil, "the fast parser accepted what ArgumentParser refuses: \(argv)")
            #expect(fast == slow, "\(argv)")
        }
    }

    /// The hot path must actually be taken for ordinary launches.
    @Test func fastPathTakesOrdinaryLaunches() {
        let run = ["--execution-id", "e", "--seccomp", "strict", "--init", "--memory-limit", "1G", "--", "env"]
        #expect(LaunchArguments.fastParse(run[...], flags: LaunchArguments.runFlags, needsCommand: true) != nil)
        let mcp = ["--execution-id", "e", "--config", "/c.json", "--server", "gh", "--mask-output"]
        #expect(LaunchArguments.fastParse(mcp[...], flags: LaunchArguments.mcpRunFlags, needsCommand: false) != nil)
    }

    @Test func memoryLimits() throws {
        #expect(try HardeningSpec.size("512Mi") == 512 << 20)
        #expect(try HardeningSpec.size("512M") == 512 << 20)
        #expect(try HardeningSpec.size("2G") == 2 << 30)
        #expect(try HardeningSpec.size("64k") == 64 << 10)
        #expect(try HardeningSpec.size("1048576") == 1 << 20)
        for bad in ["512iM", "0", "-1", "12X", "M", "", "i", "5i", "1.5G", "99999999999999999999"] {
            #expect(throws: (any Error).self, "\(bad)") { try HardeningSpec.size(bad) }
        }
    }
}
