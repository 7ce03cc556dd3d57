/// The runtime layer (`--env`, `--secret`, `--env-file`, `--secret-file`), built in a fixed
/// order: files first, then flags, so a flag overrides a file (as Docker's `-e` overrides
/// `--env-file`). Within the layer, too, a name once given as secret stays secret.
public struct RuntimeLayer: Sendable {
    public private(set) var values = Variables<EnvironmentValue>()

    public init() {}

    public mutating func set(_ name: String, _ value: String, secret: Bool) {
        let wasSecret = values[name]?.isSecret ?? false
        values[name] = EnvironmentValue(content: .plain(value), isSecret: secret || wasSecret)
    }

    public mutating func add(_ entries: [EnvFileEntry], secret: Bool) {
        for entry in entries { set(entry.name, entry.value, secret: secret) }
    }

    /// Splits `K=V` from a flag. The error names the flag and the name, never the value.
    public static func assignment(_ text: String, flag: String) throws(StigmerError) -> (name: String, value: String) {
        guard let eq = text.firstIndex(of: "=") else {
            throw .usage("\(flag) expects NAME=VALUE; got no '='")
        }
        let name = String(text[..<eq])
        guard VariableName.isValid(name) else { throw .usage("\(flag): \(VariableName.problem(name))") }
        let value = String(text[text.index(after: eq)...])
        guard !value.utf8.contains(0) else { throw .data("\(flag) \(name): the value holds a NUL byte, which no environment variable can carry") }
        return (name, value)
    }
}
