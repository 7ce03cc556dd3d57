/// The three-layer merge (DESIGN.md §3):
///
///     Agent.env_spec defaults  <  environment_refs, in order  <  runtime (--env/--secret/--env-file)
///
/// A later layer replaces the whole value. A value is secret if the layer that supplied it
/// says so or any lower layer declared the name secret: an override can never downgrade a
/// secret to plaintext. Every required name (in env_spec without a value) must end up with
/// a value; otherwise all missing names are reported together and nothing is produced.
public struct MergeInput: Sendable {
    public var template: EnvironmentSpec?
    public var environments: [Environment]
    public var runtime: Variables<EnvironmentValue>

    public init(template: EnvironmentSpec? = nil, environments: [Environment] = [],
                runtime: Variables<EnvironmentValue> = .init()) {
        self.template = template
        self.environments = environments
        self.runtime = runtime
    }
}

public enum Merge {
    public static func merge(_ input: MergeInput) throws(StigmerError) -> Variables<ExecutionValue> {
        var result = Variables<ExecutionValue>()
        var declaredSecret = Set<String>()
        var required: [String] = []

        func apply(_ data: Variables<EnvironmentValue>, _ layer: Layer) {
            for (name, entry) in data.entries {
                if entry.isSecret { declaredSecret.insert(name) }
                guard let content = entry.content else {
                    if layer == .template { required.append(name) }
                    continue
                }
                result[name] = ExecutionValue(content: content,
                                              isSecret: entry.isSecret || declaredSecret.contains(name),
                                              layer: layer)
            }
        }

        if let template = input.template { apply(template.data, .template) }
        for environment in input.environments { apply(environment.spec.data, .environment(environment.name)) }
        apply(input.runtime, .runtime)

        let missing = required.filter { result[$0] == nil }
        if !missing.isEmpty {
            let names = missing.sorted().joined(separator: ", ")
            var error = StigmerError.unresolved(
                "missing required variable\(missing.count == 1 ? "" : "s"): \(names); "
                    + "supply \(missing.count == 1 ? "it" : "them") with an environment_ref, --env, --secret or --env-file")
            error.names = missing.sorted()
            throw error
        }
        return result
    }
}
