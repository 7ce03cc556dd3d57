import StigmerCore
import StigmerManifests
import StigmerSystem

/// Which stored resources feed the template and environment layers.
public struct Sources: Sendable, Equatable {
    public var agent: String?
    public var instance: String?
    public var envRefs: [String] = []

    public init(agent: String? = nil, instance: String? = nil, envRefs: [String] = []) {
        self.agent = agent
        self.instance = instance
        self.envRefs = envRefs
    }

    public var isEmpty: Bool { agent == nil && instance == nil && envRefs.isEmpty }

    public func check() throws(StigmerError) {
        if instance != nil && !envRefs.isEmpty {
            throw .usage("give --instance or --env-ref, not both: an instance names its own environments")
        }
    }
}

/// The runtime layer's inputs (DESIGN.md §3, §8), read only when the layer is built.
public struct RuntimeInputs: Sendable, Equatable {
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
