import ArgumentParser
import StigmerCore
import StigmerCrypto
import StigmerManifests
import StigmerSystem

/// Shows what an ExecutionContext would hold — names, secret flag, layer; never values —
/// from manifest files, without storing anything. Every sealed value is opened (and
/// dropped) to prove the key and bindings are right before anything depends on them.
struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Merge manifests and runtime input; print each variable's name, secret flag and layer (never values).")

    @OptionGroup var global: GlobalOptions

    @Option(name: [.customShort("f"), .customLong("file")], help: ArgumentHelp("A manifest: Environment, Agent, AgentInstance (repeatable).", valueName: "FILE"))
    var files: [String] = []

    @Option(help: ArgumentHelp("The Agent whose env_spec is the template layer.", valueName: "NAME"))
    var agent: String?

    @Option(help: ArgumentHelp("An AgentInstance: its agent and environment_refs.", valueName: "NAME"))
    var instance: String?

    @Option(name: .customLong("env-ref"), help: ArgumentHelp("An Environment to layer, in order (instead of --instance).", valueName: "NAME"))
    var envRefs: [String] = []

    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if instance != nil && !envRefs.isEmpty {
            throw ValidationError("give --instance or --env-ref, not both: an instance names its own environments")
        }
        if (agent != nil || instance != nil || !envRefs.isEmpty) && files.isEmpty {
            throw ValidationError("--agent, --instance and --env-ref name resources in the -f manifests; give at least one -f FILE")
        }
    }

    func run() throws {
        let logger = try global.logger()
        var resources: [Resource] = []
        for path in files { resources += try Loader.resources(path: path) }
        let catalog = try Catalog(resources)

        var agentName = agent
        var refs = envRefs
        if let instance {
            guard let found = catalog.instances[instance] else {
                throw StigmerError.notFound("AgentInstance \(quoted(instance)) is not in the given manifests; add its file with -f")
            }
            if let agentName, agentName != found.agentID {
                throw StigmerError.usage("--agent \(agentName) does not match AgentInstance \(instance), whose agent is \(found.agentID)")
            }
            agentName = found.agentID
            refs = found.environmentRefs
        }
        var template: EnvironmentSpec?
        if let agentName {
            guard let found = catalog.agents[agentName] else {
                throw StigmerError.notFound("Agent \(quoted(agentName)) is not in the given manifests; add its file with -f")
            }
            template = found.envSpec
        }
        var environments: [Environment] = []
        for ref in refs {
            guard let found = catalog.environments[ref] else {
                throw StigmerError.notFound("Environment \(quoted(ref)) is not in the given manifests; add its file with -f")
            }
            environments.append(found)
        }

        let layer = try runtime.layer()
        let merged = try Merge.merge(MergeInput(template: template, environments: environments, runtime: layer.values))

        // Open every sealed value that made it into the result (and drop the plaintext).
        let sealed = merged.entries.filter { if case .sealed = $0.value.content { true } else { false } }
        if !sealed.isEmpty {
            let ring = try global.keyRing(logger)
            let known = catalog.sealedBindings
            for (name, value) in sealed {
                guard case .sealed(let text) = value.content, case .environment(let env) = value.layer else { continue }
                var plaintext = try Sealer.open(text, for: .environment(env, name), with: ring, candidates: known)
                for i in plaintext.indices { plaintext[i] = 0 }
            }
            logger.debug("opened sealed values", metadata: ["count": "\(sealed.count)"])
        }

        var out = ""
        let width = max(4, merged.names.map(\.count).max() ?? 0)
        func pad(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(1, n - s.count + 2)) }
        out += pad("NAME", width) + pad("SECRET", 6) + "LAYER\n"
        for (name, value) in merged.sortedEntries {
            out += pad(name, width) + pad(value.isSecret ? "yes" : "no", 6) + "\(value.layer)\n"
        }
        do { try IO.writeAll(1, out) } catch {
            throw StigmerError(.ioError, "cannot write to stdout", cause: error.description)
        }
    }
}

/// Resources by kind and name, from manifests; a name defined twice is an error.
struct Catalog {
    var environments: [String: Environment] = [:]
    var agents: [String: Agent] = [:]
    var instances: [String: AgentInstance] = [:]

    init(_ resources: [Resource]) throws(StigmerError) {
        for resource in resources {
            let duplicate: Bool
            switch resource {
            case .environment(let e): duplicate = environments.updateValue(e, forKey: e.name) != nil
            case .agent(let a), .mcpServer(let a): duplicate = agents.updateValue(a, forKey: a.name) != nil
            case .agentInstance(let i): duplicate = instances.updateValue(i, forKey: i.name) != nil
            }
            if duplicate { throw .data("\(resource) is defined more than once in the given manifests; keep one") }
        }
    }

    /// Every (environment, name) that holds a sealed value: candidates for telling a value
    /// moved between variables apart from a tampered one.
    var sealedBindings: [Binding] {
        environments.values.flatMap { env in
            env.spec.data.entries.compactMap { entry -> Binding? in
                if case .sealed = entry.value.content { return .environment(env.name, entry.name) }
                return nil
            }
        }
    }
}
