import ArgumentParser
import StigmerCore
import StigmerEngine

/// Which stored resources feed the template and environment layers.
public struct SourceOptions: ParsableArguments {
    public init() {}

    @Option(help: ArgumentHelp("The Agent whose env_spec is the template layer.", valueName: "NAME"))
    public var agent: String?

    @Option(help: ArgumentHelp("An AgentInstance: its agent and environment_refs.", valueName: "NAME"))
    public var instance: String?

    @Option(name: .customLong("env-ref"), help: ArgumentHelp("An Environment to layer, in order (instead of --instance).", valueName: "NAME"))
    public var envRefs: [String] = []

    public var sources: Sources { Sources(agent: agent, instance: instance, envRefs: envRefs) }
    public var isEmpty: Bool { sources.isEmpty }

    public func validate() throws { try usageCheck { () throws(StigmerError) in try sources.check() } }
}

