import ArgumentParser
import Logging
import StigmerCLI
import StigmerCore
import StigmerSystem

#if canImport(Glibc)
import Glibc
#endif

/// The companion (DESIGN.md §9): everything that needs NIO, gRPC or PostgreSQL. Users
/// reach it through `stigmer-exec`, which hands these commands over by `execve`.
@main
struct StigmerExecFull: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stigmer-exec",
        abstract: "stigmer-exec's companion: the gRPC service, remote contexts, the PostgreSQL store and the MCP HTTP bridge.",
        version: "0.2.0",
        subcommands: [Serve.self, ContextCommand.self, ApplyCommand.self, EnvCommand.self, PlanCommand.self, KeyCommand.self, Fetch.self,
                      McpBridgeCommand.self, WebhookCommand.self, InjectCommand.self]
    )

    static func main() async {
        do {
            // Every process of the companion (serve, the fetch helper, remote commands)
            // holds a key, a token or sealed values: not dumpable, no core, from here on.
            try SelfProtection.begin()
            try SelfProtection.finish()
            // NIO, gRPC and PostgreSQL log through LoggingSystem: same handler and level.
            Log.bootstrapsSystem = true
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exitReporting(error)
        }
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s = s.dropFirst() }
        while let c = s.last, c.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}
