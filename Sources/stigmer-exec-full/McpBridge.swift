import ArgumentParser
import StigmerBridge
import StigmerCLI
import StigmerCore

#if canImport(Glibc)
import Glibc
#endif

/// `mcp run` on an http server lands here: the launcher has opened the values and handed
/// the resolved url, headers and query parameters over `--spec-fd` (never argv or
/// environment); this process speaks stdio to the client and HTTP to the server.
struct McpBridgeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mcp-bridge",
        abstract: "Internal: the stdio bridge to an http MCP server, started by `stigmer-exec mcp run`.",
        shouldDisplay: false)

    @OptionGroup var global: GlobalOptions
    @Option(help: "The server's name in the config (for messages).") var server: String
    @Option(help: "streamable-http or sse (the legacy HTTP+SSE transport).") var transport = "streamable-http"
    @Option(help: "Seconds to wait for a connection and an answer's first line.") var timeout: Int?
    @Flag(name: .customLong("allow-insecure-http")) var allowInsecureHTTP = false
    @Option(name: .customLong("http-ca")) var httpCA: String?
    @Option(name: .customLong("spec-fd"), help: "Read the url, headers and query parameters from this descriptor (then close it).") var specFD: Int32

    func validate() throws {
        guard ["streamable-http", "sse"].contains(transport) else { throw ValidationError("--transport is streamable-http or sse") }
        if let timeout, !(1...86_400).contains(timeout) { throw ValidationError("--timeout (timeout_seconds) must be 1 to 86400 seconds") }
        // 0-2 are the protocol channel and stderr, never the handoff.
        if specFD < 3 { throw ValidationError("--spec-fd must be a descriptor number of 3 or more") }
    }

    func run() async throws {
        let logger = try global.logger()
        let spec = try BridgeSpec.read(fd: specFD, server: server, allowInsecureHTTP: allowInsecureHTTP)
        let bridge = try Bridge(options: Bridge.Options(server: server, legacySSE: transport == "sse", timeoutSeconds: timeout ?? 60, caFile: httpCA),
                                spec: spec, logger: logger)
        let status = await bridge.run()
        Glibc.exit(status)
    }
}
