import ArgumentParser
import StigmerCLI
import StigmerCore
import StigmerEngine
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
            66 not found, 69 store/server unavailable, 77 not permitted (key, auth, tamper), \
            78 missing variables or unresolvable placeholders, 126 not executable, 127 not found.
            """,
        version: "0.1.0",
        subcommands: [RunCommand.self, McpCommand.self, ApplyCommand.self, EnvCommand.self, ContextCommand.self, KeyCommand.self, PlanCommand.self]
    )

    /// Parses and runs; every failure leaves as one line on stderr and its documented
    /// status (StigmerError.exitStatus is the only mapping).
    /// execve `stigmer-exec-full` with the same argv (argv[0] replaced) and descriptors:
    /// prompts, exit codes and signals behave as if it were one program.
    static func handOver(_ args: [String]) -> Never {
        do throws(StigmerError) {
            let path = try RemoteFetch.companionPath()
            let argv = [path] + args.dropFirst()
            let cArgs = argv.map { strdup($0) } + [nil]
            execv(path, cArgs)
            throw StigmerError(.unavailable, "cannot start \(quoted(path))", cause: Errno.current.description)
        } catch {
            Stderr.line("stigmer-exec: \(error)")
            Glibc.exit(error.exitStatus)
        }
    }

    /// `--execution-id`, else `STIGMER_EXECUTION_ID`.
    static func executionID(_ option: String?) -> String? {
        if let option { return option }
        if let env = Sys.getenv("STIGMER_EXECUTION_ID"), !env.isEmpty { return env }
        return nil
    }

    static func main() {
        let args = CommandLine.arguments
        if Dispatch.belongsToCompanion(Array(args.dropFirst())) { handOver(args) }
        do {
            if args.count > 2, args[1] == "run", let request = RunRequest.fastParse(args[2...]) {
                try request.perform()
            }
            var command = try parseAsRoot()
            try command.run()
        } catch {
            exitReporting(error)
        }
    }
}
