import ArgumentParser
import StigmerCore
import StigmerManifests
import StigmerSystem

/// The runtime layer's inputs (DESIGN.md §3, §8).
public struct RuntimeOptions: ParsableArguments {
    public init() {}

    @Option(name: .customLong("env"), help: ArgumentHelp("Set a plain variable (repeatable).", valueName: "NAME=VALUE"))
    public var env: [String] = []

    @Option(name: .customLong("secret"), help: ArgumentHelp("Set a secret. Without =VALUE it is read without echo on a terminal, else one line from stdin; NAME=VALUE works but shows in /proc/*/cmdline.", valueName: "NAME[=VALUE]"))
    public var secret: [String] = []

    @Option(name: .customLong("env-file"), help: ArgumentHelp("Read plain variables from a file (repeatable; later wins).", valueName: "FILE"))
    public var envFile: [String] = []

    @Option(name: .customLong("secret-file"), help: ArgumentHelp("Read secrets from a file in the env-file format (repeatable).", valueName: "FILE"))
    public var secretFile: [String] = []

    public var inputs: RuntimeInputs { RuntimeInputs(env: env, secret: secret, envFile: envFile, secretFile: secretFile) }
    public var isEmpty: Bool { inputs.isEmpty }

    public func validate() throws { try usageCheck { () throws(StigmerError) in try inputs.check() } }

    public func layer() throws(StigmerError) -> RuntimeLayer { try inputs.layer() }
}

public struct RuntimeInputs {
    public var env: [String] = []
    public var secret: [String] = []
    public var envFile: [String] = []
    public var secretFile: [String] = []

    public init(env: [String] = [], secret: [String] = [], envFile: [String] = [], secretFile: [String] = []) {
        self.env = env
        self.secret = secret
        self.envFile = envFile
        self.secretFile = secretFile
    }

    public var isEmpty: Bool { env.isEmpty && secret.isEmpty && envFile.isEmpty && secretFile.isEmpty }

    public func check() throws(StigmerError) {
        for item in env { _ = try RuntimeLayer.assignment(item, flag: "--env") }
        for item in secret where item.contains("=") { _ = try RuntimeLayer.assignment(item, flag: "--secret") }
        for item in secret where !item.contains("=") && !VariableName.isValid(item) {
            throw .usage("--secret: \(VariableName.problem(item))")
        }
    }

    /// Builds the layer: files first, then flags (flags win). Prompts for value-less
    /// `--secret NAME`s last, once every file has parsed, so bad input never costs a prompt.
    public func layer() throws(StigmerError) -> RuntimeLayer {
        var layer = RuntimeLayer()
        for path in envFile { layer.add(try Loader.envFile(path: path), secret: false) }
        for path in secretFile { layer.add(try Loader.envFile(path: path), secret: true) }
        for item in env {
            let (name, value) = try RuntimeLayer.assignment(item, flag: "--env")
            layer.set(name, value, secret: false)
        }
        var prompted: [String] = []
        for item in secret {
            if item.contains("=") {
                let (name, _) = try RuntimeLayer.assignment(item, flag: "--secret")
                Stderr.line("stigmer-exec: warning: --secret \(name)=… puts the value in the process's argv, readable in /proc; prefer --secret \(name) (prompt or stdin) or --secret-file")
                let (_, value) = try RuntimeLayer.assignment(item, flag: "--secret")
                layer.set(name, value, secret: true)
            } else {
                prompted.append(item)
            }
        }
        for name in prompted {
            let bytes = try Terminal.readSecretLine(prompt: "Value for secret \(name): ")
            layer.set(name, String(decoding: bytes, as: UTF8.self), secret: true)
        }
        return layer
    }
}
