import ArgumentParser
import StigmerCLI
import StigmerCore
import StigmerLaunch
import StigmerSystem

#if canImport(Glibc)
import Glibc
#endif

@main
struct StigmerExec: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stigmer-exec",
        abstract: "Run processes with an execution's secrets injected: decrypted in memory, never on disk.",
        discussion: """
            Exit status: the child's own when it ran; else 64 usage, 65 bad input data, \
            66 not found, 69 store/server unavailable (or the store damaged), 74 I/O error (a full \
            disk: nothing is changed), 77 not permitted (key, auth, tamper), 78 missing variables or \
            unresolvable placeholders, 126 not executable, 127 not found.
            """,
        version: "0.2.0",
        subcommands: [RunCommand.self, McpCommand.self, ApplyCommand.self, EnvCommand.self, ContextCommand.self, KeyCommand.self, PlanCommand.self, InstallCommand.self]
    )

    /// Parses and runs; every failure leaves as one line on stderr and its documented
    /// status (StigmerError.exitStatus is the only mapping). The launch commands try the
    /// fast parser first; the companion's commands are handed over by execve.
    static func main() {
        let args = CommandLine.arguments
        do {
            try SelfProtection.begin()
            if Dispatch.belongsToCompanion(Array(args.dropFirst())) { try Companion.handOver(args) }
            if args.count > 2, args[1] == "run",
               let arguments = LaunchArguments.fastParse(args[2...], flags: LaunchArguments.runFlags, needsCommand: true) {
                try Launch.run(try arguments.runPlan())
            }
            if args.count > 3, args[1] == "mcp", args[2] == "run",
               let arguments = LaunchArguments.fastParse(args[3...], flags: LaunchArguments.mcpRunFlags, needsCommand: false) {
                try Launch.run(try arguments.mcpPlan())
            }
            if args.count > 3, args[1] == "mcp", args[2] == "check",
               let arguments = LaunchArguments.fastParse(args[3...], flags: LaunchArguments.mcpCheckFlags, needsCommand: false, needsServer: false) {
                try arguments.mcpCheck()
                Glibc.exit(0)
            }
            var command = try parseAsRoot()
            try command.run()
        } catch {
            exitReporting(error)
        }
    }
}
