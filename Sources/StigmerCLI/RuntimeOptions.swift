import ArgumentParser
import StigmerCore
import StigmerEngine
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

