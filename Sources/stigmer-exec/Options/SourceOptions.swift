import ArgumentParser
import StigmerCore

/// Which stored resources feed the template and environment layers.
struct SourceOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The Agent whose env_spec is the template layer.", valueName: "NAME"))
    var agent: String?

    @Option(help: ArgumentHelp("An AgentInstance: its agent and environment_refs.", valueName: "NAME"))
    var instance: String?

    @Option(name: .customLong("env-ref"), help: ArgumentHelp("An Environment to layer, in order (instead of --instance).", valueName: "NAME"))
    var envRefs: [String] = []

    var sources: Sources { Sources(agent: agent, instance: instance, envRefs: envRefs) }
    var isEmpty: Bool { sources.isEmpty }

    func validate() throws { try sources.check() }
}

struct Sources {
    var agent: String?
    var instance: String?
    var envRefs: [String] = []

    var isEmpty: Bool { agent == nil && instance == nil && envRefs.isEmpty }

    func check() throws(StigmerError) {
        if instance != nil && !envRefs.isEmpty {
            throw .usage("give --instance or --env-ref, not both: an instance names its own environments")
        }
    }
}
