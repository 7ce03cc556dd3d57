import ArgumentParser
import StigmerCore
import StigmerCrypto
import StigmerStore
import StigmerSystem

/// How to reach a server and prove who we are.
public struct RemoteOptions: ParsableArguments {
    public init() {}

    @Option(help: ArgumentHelp("grpc://HOST:PORT or grpcs://HOST:PORT. Default: $STIGMER_SERVER.", valueName: "URL"))
    public var server: String?

    @Option(name: .customLong("token-file"), help: ArgumentHelp("Read the bearer token from this file.", valueName: "FILE"))
    public var tokenFile: String?

    @Option(name: .customLong("token-fd"), help: ArgumentHelp("Read the bearer token from this descriptor (then close it).", valueName: "N"))
    public var tokenFD: Int32?

    @Option(name: .customLong("tls-ca"), help: ArgumentHelp("Trust this CA (PEM) for grpcs:// instead of the system roots.", valueName: "FILE"))
    public var tlsCA: String?

    @Option(name: .customLong("fetch-timeout"), help: ArgumentHelp("Retry while the server is unavailable for at most this long (e.g. 30s).", valueName: "DURATION"))
    public var fetchTimeout: String = "30s"

    @Flag(name: .customLong("allow-plaintext"), help: "Allow grpc:// (no TLS) to a host other than loopback: the token then crosses the network in clear.")
    public var allowPlaintext = false

    @Option(name: .customLong("server-key"), help: ArgumentHelp("Trust only values sealed by this server key (base64, as `serve` prints it). Default: $STIGMER_SERVER_KEY, else the key inside the execution token.", valueName: "KEY"))
    public var serverKey: String?

    public func validate() throws {
        if let tokenFD, tokenFD < 0 { throw ValidationError("--token-fd must be a descriptor number (0 or more)") }
    }

    public var inputs: RemoteInputs {
        RemoteInputs(server: server, tokenFile: tokenFile, tokenFD: tokenFD, tlsCA: tlsCA, fetchTimeout: fetchTimeout,
                     allowPlaintext: allowPlaintext, serverKey: serverKey)
    }

    public var serverURL: String? { inputs.serverURL }
    public func token() throws(StigmerError) -> String { try inputs.token() }
}

public struct RemoteInputs: Equatable {
    public var server: String?
    public var tokenFile: String?
    public var tokenFD: Int32?
    public var tlsCA: String?
    public var fetchTimeout = "30s"
    public var allowPlaintext = false
    public var serverKey: String?

    public init(server: String? = nil, tokenFile: String? = nil, tokenFD: Int32? = nil, tlsCA: String? = nil, fetchTimeout: String = "30s",
                allowPlaintext: Bool = false, serverKey: String? = nil) {
        self.allowPlaintext = allowPlaintext
        self.serverKey = serverKey
        self.server = server
        self.tokenFile = tokenFile
        self.tokenFD = tokenFD
        self.tlsCA = tlsCA
        self.fetchTimeout = fetchTimeout
    }

    public var serverURL: String? { ControlVariable.server.or(server) }

    /// The server key to pin: `--server-key`, `STIGMER_SERVER_KEY`, else the one inside
    /// `token` (an execution token's). Both given and different: refused.
    public func pinnedServerKey(token: ExecutionToken?) throws(StigmerError) -> [UInt8] {
        let given: [UInt8]?
        if let serverKey {
            given = try ServerIdentity.parsePublicKey(serverKey, source: "--server-key")
        } else if let env = ControlVariable.serverKey.value {
            given = try ServerIdentity.parsePublicKey(env, source: ControlVariable.serverKey.rawValue)
        } else {
            given = nil
        }
        if let given, let token, given != token.serverKey {
            throw .notPermitted("the execution token was issued by a server whose key is not the pinned --server-key/\(ControlVariable.serverKey.rawValue); refusing to trust either")
        }
        guard let key = given ?? token?.serverKey else {
            throw .usage("nothing pins the server's key: give --server-key (or \(ControlVariable.serverKey.rawValue)) with the key `serve` prints, or use an execution token")
        }
        return key
    }

    /// What the fetch helper needs from the launcher's command line.
    public var helperArgs: [String] {
        var out: [String] = []
        if let tokenFile { out += ["--token-file", tokenFile] }
        if let tokenFD { out += ["--token-fd", "\(tokenFD)"] }
        if let tlsCA { out += ["--tls-ca", tlsCA] }
        if allowPlaintext { out.append("--allow-plaintext") }
        if let serverKey { out += ["--server-key", serverKey] }
        return out + ["--fetch-timeout", fetchTimeout]
    }

    /// `--token-file`, `--token-fd`, then `STIGMER_TOKEN`; surrounding whitespace dropped.
    public func token() throws(StigmerError) -> String {
        var bytes: [UInt8]
        if let tokenFile {
            bytes = try IO.readFile(tokenFile, limit: 64 << 10)
        } else if let tokenFD {
            defer { Sys.closeConsumed(tokenFD) }
            do { bytes = try IO.readAll(tokenFD, limit: 64 << 10) } catch {
                throw StigmerError(.notPermitted, "cannot read the token from --token-fd \(tokenFD)", cause: error.description)
            }
        } else if let env = ControlVariable.token.value {
            bytes = Array(env.utf8)
        } else {
            throw StigmerError(.notPermitted, "no token: give --token-file, --token-fd or STIGMER_TOKEN")
        }
        var text = Substring(String(decoding: bytes, as: UTF8.self))
        while let c = text.first, c.isWhitespace { text = text.dropFirst() }
        while let c = text.last, c.isWhitespace { text = text.dropLast() }
        guard !text.isEmpty else { throw StigmerError(.notPermitted, "the token is empty") }
        return String(text)
    }
}

/// Git-style hand-over (DESIGN.md §9): commands and stores the lean launcher does not
/// implement go to `stigmer-exec-full`, by execve with the same argv and descriptors.
public enum Dispatch {
    /// Whether `args` (argv without argv[0]) belong to the companion.
    public static func belongsToCompanion(_ args: [String]) -> Bool {
        guard let command = args.first else { return false }
        if ["serve", "webhook", "inject"].contains(command) { return true }
        // `key list|rotate|retire` on PostgreSQL too (init, seal and open touch no store).
        let storeKeyCommand = command == "key" && args.count > 1 && ["list", "rotate", "retire"].contains(args[1])
        guard ["context", "apply", "env", "plan"].contains(command) || storeKeyCommand else { return false }
        func flag(_ name: String) -> String? {
            for (i, arg) in args.enumerated() {
                if arg == "--" { return nil }
                if arg == name, i + 1 < args.count { return args[i + 1] }
                if arg.hasPrefix(name + "=") { return String(arg.dropFirst(name.count + 1)) }
            }
            return nil
        }
        if StoreLocation(flag("--store")).isPostgres { return true }
        if command == "context" && ControlVariable.server.or(flag("--server")) != nil { return true }
        return false
    }
}
