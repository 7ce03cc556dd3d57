import StigmerCore
import StigmerManifests

/// The pod annotations the injector reads and writes. A pod opts in with the annotation
/// or the label `stigmer.ai/inject: "true"` (the label lets a MutatingWebhookConfiguration's
/// objectSelector spare the API server a call for every other pod).
public enum InjectAnnotation {
    public static let inject = "stigmer.ai/inject"
    public static let executionID = "stigmer.ai/execution-id"
    public static let tokenSecret = "stigmer.ai/token-secret"
    public static let server = "stigmer.ai/server"
    /// A ConfigMap in the pod's namespace holding the server's CA (`NAME` or `NAME/KEY`,
    /// default key `ca.crt`), for a grpcs:// server whose certificate no image trusts.
    public static let serverCA = "stigmer.ai/server-ca-configmap"
    public static let containers = "stigmer.ai/containers"
    public static let initProcess = "stigmer.ai/init"
    public static let seccomp = "stigmer.ai/seccomp"
    public static let maskOutput = "stigmer.ai/mask-output"
    /// The command (a JSON list) when the container has none: `stigmer.ai/command.NAME`
    /// for one container, `stigmer.ai/command` for all.
    public static let command = "stigmer.ai/command"
    /// Written by the injector: the version that injected the pod.
    public static let injected = "stigmer.ai/injected"
}

/// Why a pod that asked for injection cannot have it. The webhook denies the pod with
/// this message; `inject` prints it. Names and annotations only, never a value.
public struct InjectionDenied: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// An image's Entrypoint and Cmd, from its config (nil where the config has none).
public struct ImageConfig: Sendable, Equatable {
    public var entrypoint: [String]?
    public var cmd: [String]?
    public init(entrypoint: [String]?, cmd: [String]?) {
        self.entrypoint = entrypoint
        self.cmd = cmd
    }
}

/// What every injection shares: where the launcher comes from and where it is mounted.
public struct InjectorSettings: Sendable {
    /// The init container's image; it holds the bundle (`scripts/k8s-bundle.sh`) at `bundlePath`.
    public var image: String
    /// The server for pods that name none (`stigmer.ai/server`).
    public var server: String?
    /// The ConfigMap with the server's CA for pods that name none (`stigmer.ai/server-ca-configmap`).
    public var serverCAConfigMap: String?
    public var bundlePath = "/stigmer-dist"
    public var mountPath = "/stigmer"
    public var version = "0.2.0"
    /// The init container's user: non-root, as the restricted Pod Security Standard asks.
    public var user = 65532

    public static let volumeName = "stigmer-exec"
    public static let caVolumeName = "stigmer-exec-ca"
    public static let caMountPath = "/stigmer-ca"
    public static let initContainerName = "stigmer-exec-install"

    public init(image: String, server: String?) {
        self.image = image
        self.server = server
    }
}

/// One container the pod asked to inject, and what it runs today.
public struct ChosenContainer: Sendable {
    public var index: Int
    public var name: String
    public var image: String
    var command: [String]?
    var args: [String]?
    var annotated: [String]?

    /// Whether its command can only come from the image's config.
    public var needsImageConfig: Bool { command == nil && annotated == nil }
}

/// What a pod asked for, read and checked before anything is looked up or changed.
public struct InjectionPlan: Sendable {
    public var executionID: String
    public var server: String
    public var tokenSecret: (name: String, key: String)
    public var serverCA: (name: String, key: String)?
    public var launcherOptions: [String]
    public var containers: [ChosenContainer]
    public var pullSecrets: [String]
    /// Paths in the pod that exist already (the patch adds to a list, or creates it).
    var hasAnnotations: Bool
    var hasVolumes: Bool
    var hasInitContainers: Bool
    var hasMounts: [Int: Bool]
    var hasEnv: [Int: Bool]

    /// The images whose config is needed, each once.
    public var imagesToLookUp: [String] {
        var seen: [String] = []
        for c in containers where c.needsImageConfig && !seen.contains(c.image) { seen.append(c.image) }
        return seen
    }
}

/// Decides and builds the injection: a pure function of the pod, the settings and the
/// images' configs (looked up by the caller between `plan` and `patch`), so that a pod is
/// either injected whole or denied whole, never half.
public struct PodInjector: Sendable {
    public var settings: InjectorSettings

    public init(settings: InjectorSettings) { self.settings = settings }

    /// The plan, or nil when the pod is not to be touched (it did not opt in, or it is
    /// already injected: the webhook may be called again under `reinvocationPolicy: IfNeeded`).
    public func plan(_ pod: Document) throws(InjectionDenied) -> InjectionPlan? {
        let metadata = pod["metadata"] ?? .object([])
        let annotations = try Self.stringMap(metadata["annotations"], "metadata.annotations")
        let labels = try Self.stringMap(metadata["labels"], "metadata.labels")
        guard annotations[InjectAnnotation.inject] == "true" || labels[InjectAnnotation.inject] == "true" else { return nil }
        guard let spec = pod["spec"], case .mapping = spec.kind else { throw InjectionDenied("the pod has no spec") }
        let initContainers = Self.items(spec["initContainers"])
        if annotations[InjectAnnotation.injected] != nil
            || initContainers.contains(where: { Self.text($0["name"]) == InjectorSettings.initContainerName }) {
            return nil
        }

        guard let executionID = annotations[InjectAnnotation.executionID], !executionID.isEmpty else {
            throw InjectionDenied("the pod asks for stigmer-exec (\(InjectAnnotation.inject)) but has no \(InjectAnnotation.executionID) annotation; add it")
        }
        guard executionID.utf8.count <= 256, executionID.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }),
              !executionID.hasPrefix("-"), !executionID.contains("$(") else {
            throw InjectionDenied("\(InjectAnnotation.executionID) is not a valid execution id: use 1 to 256 printable ASCII characters without spaces, not starting with '-'")
        }
        guard let secretRef = annotations[InjectAnnotation.tokenSecret] else {
            throw InjectionDenied("the pod asks for stigmer-exec but has no \(InjectAnnotation.tokenSecret) annotation; name the Secret that holds the execution token (NAME or NAME/KEY)")
        }
        let secretParts = secretRef.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard (1...2).contains(secretParts.count), Self.isDNSSubdomain(secretParts[0]),
              secretParts.count == 1 || Self.isSecretKey(secretParts[1]) else {
            throw InjectionDenied("\(InjectAnnotation.tokenSecret) must be a Secret's name, or NAME/KEY (a lower-case DNS name, and a key of letters, digits, '-', '_' or '.')")
        }
        guard let server = annotations[InjectAnnotation.server] ?? settings.server else {
            throw InjectionDenied("no server for the pod: set the \(InjectAnnotation.server) annotation, or start the webhook with --server")
        }
        guard server.hasPrefix("grpc://") || server.hasPrefix("grpcs://"), !server.contains("$("),
              server.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw InjectionDenied("\(InjectAnnotation.server) must be grpc://HOST:PORT or grpcs://HOST:PORT")
        }

        var serverCA: (name: String, key: String)?
        if let reference = annotations[InjectAnnotation.serverCA] ?? settings.serverCAConfigMap {
            let parts = reference.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            guard (1...2).contains(parts.count), Self.isDNSSubdomain(parts[0]), parts.count == 1 || Self.isSecretKey(parts[1]) else {
                throw InjectionDenied("\(InjectAnnotation.serverCA) must be a ConfigMap's name, or NAME/KEY")
            }
            serverCA = (parts[0], parts.count == 2 ? parts[1] : "ca.crt")
        }
        var options: [String] = []
        if serverCA != nil { options += ["--tls-ca", InjectorSettings.caMountPath + "/ca.crt"] }
        if try Self.flag(annotations, InjectAnnotation.initProcess) { options.append("--init") }
        if try Self.flag(annotations, InjectAnnotation.maskOutput) { options.append("--mask-output") }
        if let profile = annotations[InjectAnnotation.seccomp] {
            guard ["default", "strict", "none"].contains(profile) || (profile.hasPrefix("/") && !profile.contains("$(")) else {
                throw InjectionDenied("\(InjectAnnotation.seccomp) must be default, strict, none, or an absolute path inside the container")
            }
            options += ["--seccomp", profile]
        }

        let containers = Self.items(spec["containers"])
        guard !containers.isEmpty else { throw InjectionDenied("the pod has no containers") }
        let names = containers.map { Self.text($0["name"]) ?? "" }
        var chosenNames = names
        if let list = annotations[InjectAnnotation.containers] {
            chosenNames = list.split(separator: ",").map { $0.trimmingSpaces() }.filter { !$0.isEmpty }
            guard !chosenNames.isEmpty else { throw InjectionDenied("\(InjectAnnotation.containers) names no container") }
            for name in chosenNames where !names.contains(name) {
                throw InjectionDenied("\(InjectAnnotation.containers) names \(quoted(name)), which is not a container of this pod (it has \(names.map(quoted).joined(separator: ", ")))")
            }
        }
        for volume in Self.items(spec["volumes"]) {
            if let name = Self.text(volume["name"]), [InjectorSettings.volumeName, InjectorSettings.caVolumeName].contains(name) {
                throw InjectionDenied("the pod already has a volume named \(quoted(name)); rename it")
            }
        }
        // A mount of the injector's volume elsewhere (say, read-write in a sidecar) would
        // let that container change the launcher under the others.
        for kind in ["containers", "initContainers", "ephemeralContainers"] {
            for other in Self.items(spec[kind]) {
                for mount in Self.items(other["volumeMounts"]) {
                    if let volume = Self.text(mount["name"]), [InjectorSettings.volumeName, InjectorSettings.caVolumeName].contains(volume) {
                        throw InjectionDenied("container \(quoted(Self.text(other["name"]) ?? "")) mounts \(quoted(volume)), the injector's volume; rename the mount")
                    }
                }
            }
        }
        let allCommand = try Self.commandAnnotation(annotations, InjectAnnotation.command)
        var chosen: [ChosenContainer] = []
        var hasMounts: [Int: Bool] = [:], hasEnv: [Int: Bool] = [:]
        for (index, container) in containers.enumerated() where chosenNames.contains(names[index]) {
            let name = names[index]
            // The launcher's control variables are the injector's to set: one from the pod
            // (STIGMER_EXEC_FULL, say) would steer the launcher.
            for entry in Self.items(container["env"]) {
                if let variable = Self.text(entry["name"]), variable.hasPrefix("STIGMER_") {
                    throw InjectionDenied("container \(quoted(name)) sets \(variable) itself; the injector sets the launcher's STIGMER_* variables (remove it from env)")
                }
            }
            if !Self.items(container["envFrom"]).isEmpty {
                throw InjectionDenied("container \(quoted(name)) uses envFrom, which could set the launcher's STIGMER_* variables; list its variables under env instead")
            }
            for mount in Self.items(container["volumeMounts"]) {
                if let path = Self.text(mount["mountPath"]), [settings.mountPath, InjectorSettings.caMountPath].contains(path) {
                    throw InjectionDenied("container \(quoted(name)) already mounts something at \(path), where the injector puts stigmer-exec")
                }
            }
            guard let image = Self.text(container["image"]), !image.isEmpty else {
                throw InjectionDenied("container \(quoted(name)) has no image")
            }
            // An empty list is no list, to Kubernetes (the image's Entrypoint or Cmd runs).
            let command = try Self.stringList(container["command"], "containers[\(index)].command").flatMap { $0.isEmpty ? nil : $0 }
            let args = try Self.stringList(container["args"], "containers[\(index)].args").flatMap { $0.isEmpty ? nil : $0 }
            let annotated = try Self.commandAnnotation(annotations, InjectAnnotation.command + "." + name) ?? allCommand
            // The kubelet expands $(VAR) in command and args against the container's env,
            // where STIGMER_TOKEN now is: a reference would put the token in argv.
            for word in (command ?? []) + (args ?? []) + (annotated ?? []) where word.contains("$(STIGMER_") {
                throw InjectionDenied("container \(quoted(name)) refers to a $(STIGMER_…) variable in its command or args; the kubelet would expand it to the execution token")
            }
            chosen.append(ChosenContainer(index: index, name: name, image: image, command: command, args: args, annotated: annotated))
            hasMounts[index] = container["volumeMounts"] != nil
            hasEnv[index] = container["env"] != nil
        }
        let pullSecrets = Self.items(spec["imagePullSecrets"]).compactMap { Self.text($0["name"]) }
        let lookups = Set(chosen.filter(\.needsImageConfig).map(\.image))
        guard lookups.count <= Self.maxLookups else {
            throw InjectionDenied("\(lookups.count) images would have to be looked up; at most \(Self.maxLookups) per pod: give the others their command (or the \(InjectAnnotation.command).NAME annotation)")
        }
        return InjectionPlan(executionID: executionID, server: server,
                             tokenSecret: (secretParts[0], secretParts.count == 2 ? secretParts[1] : "token"), serverCA: serverCA,
                             launcherOptions: options, containers: chosen, pullSecrets: pullSecrets,
                             hasAnnotations: metadata["annotations"] != nil, hasVolumes: spec["volumes"] != nil,
                             hasInitContainers: spec["initContainers"] != nil, hasMounts: hasMounts, hasEnv: hasEnv)
    }

    /// The JSON Patch that injects the pod, given the configs of `plan.imagesToLookUp`.
    public func patch(_ plan: InjectionPlan, images: [String: ImageConfig]) throws(InjectionDenied) -> [PatchOperation] {
        var ops: [PatchOperation] = []
        let marker = Document.string(settings.version)
        ops.append(plan.hasAnnotations
            ? .add("/metadata/annotations/" + PatchOperation.escape(InjectAnnotation.injected), marker)
            : .add("/metadata/annotations", .object([(InjectAnnotation.injected, marker)])))
        let volume = Document.object([
            ("name", .string(InjectorSettings.volumeName)),
            ("emptyDir", .object([("medium", .string("Memory")), ("sizeLimit", .string("256Mi"))])),
        ])
        var volumes = [volume]
        if let ca = plan.serverCA {
            volumes.append(.object([
                ("name", .string(InjectorSettings.caVolumeName)),
                ("configMap", .object([("name", .string(ca.name)), ("items", Document(.sequence([.object([("key", .string(ca.key)), ("path", .string("ca.crt"))])])))])),
            ]))
        }
        if plan.hasVolumes {
            for volume in volumes { ops.append(.add("/spec/volumes/-", volume)) }
        } else {
            ops.append(.add("/spec/volumes", Document(.sequence(volumes))))
        }
        let install = initContainer()
        ops.append(plan.hasInitContainers ? .add("/spec/initContainers/0", install) : .add("/spec/initContainers", Document(.sequence([install]))))

        let launcher = settings.mountPath + "/stigmer-exec"
        // The kubelet expands $(VAR) and turns $$ into $ in command and args: our own
        // words are escaped so they arrive as written.
        let command = Self.escape([launcher, "run", "--execution-id", plan.executionID, "--server", plan.server] + plan.launcherOptions + ["--"])
        for container in plan.containers {
            let argv = try self.argv(container, images: images)
            let base = "/spec/containers/\(container.index)"
            let mount = Document.object([
                ("name", .string(InjectorSettings.volumeName)), ("mountPath", .string(settings.mountPath)), ("readOnly", Document(.scalar("true", plain: true))),
            ])
            var mounts = [mount]
            if plan.serverCA != nil {
                mounts.append(.object([
                    ("name", .string(InjectorSettings.caVolumeName)), ("mountPath", .string(InjectorSettings.caMountPath)), ("readOnly", Document(.scalar("true", plain: true))),
                ]))
            }
            if plan.hasMounts[container.index] == true {
                for mount in mounts { ops.append(.add(base + "/volumeMounts/-", mount)) }
            } else {
                ops.append(.add(base + "/volumeMounts", Document(.sequence(mounts))))
            }
            let token = Document.object([
                ("name", .string("STIGMER_TOKEN")),
                ("valueFrom", .object([("secretKeyRef", .object([("name", .string(plan.tokenSecret.name)), ("key", .string(plan.tokenSecret.key))]))])),
            ])
            // The companion beside the launcher, by name: the image's own ENV must not choose
            // another fetch helper.
            let companion = Document.object([("name", .string("STIGMER_EXEC_FULL")), ("value", .string(settings.mountPath + "/stigmer-exec-full"))])
            if plan.hasEnv[container.index] == true {
                ops.append(.add(base + "/env/-", token))
                ops.append(.add(base + "/env/-", companion))
            } else {
                ops.append(.add(base + "/env", Document(.sequence([token, companion]))))
            }
            // `add` on an existing member replaces it (RFC 6902 §4.1).
            ops.append(.add(base + "/command", .list(command)))
            ops.append(.add(base + "/args", .list(argv)))
        }
        return ops
    }

    /// What the container ran before, by Kubernetes' rules: `command` replaces the image's
    /// Entrypoint and `args` its Cmd. The image's words are escaped (`$` → `$$`), since in
    /// `args` the kubelet would expand `$(VAR)` and `$$` in them, which it never did before.
    func argv(_ container: ChosenContainer, images: [String: ImageConfig]) throws(InjectionDenied) -> [String] {
        if let command = container.command { return command + (container.args ?? []) }
        if let annotated = container.annotated { return annotated + (container.args ?? []) }
        guard let config = images[container.image] else {
            throw InjectionDenied("container \(quoted(container.name)): the command of image \(quoted(container.image)) is not known; set the \(InjectAnnotation.command).\(container.name) annotation (a JSON list)")
        }
        let argv = Self.escape(config.entrypoint ?? []) + (container.args ?? Self.escape(config.cmd ?? []))
        guard !argv.isEmpty else {
            throw InjectionDenied("container \(quoted(container.name)): image \(quoted(container.image)) has neither Entrypoint nor Cmd and the container no command; set command, or the \(InjectAnnotation.command).\(container.name) annotation")
        }
        return argv
    }

    /// Copies the launcher into the shared volume, as locked down as a container can be.
    func initContainer() -> Document {
        let user = Document(.scalar("\(settings.user)", plain: true))
        let yes = Document(.scalar("true", plain: true)), no = Document(.scalar("false", plain: true))
        return .object([
            ("name", .string(InjectorSettings.initContainerName)),
            ("image", .string(settings.image)),
            ("imagePullPolicy", .string("IfNotPresent")),
            ("command", .list([settings.bundlePath + "/stigmer-exec", "install", settings.mountPath])),
            ("volumeMounts", Document(.sequence([.object([("name", .string(InjectorSettings.volumeName)), ("mountPath", .string(settings.mountPath))])]))),
            ("resources", .object([
                ("requests", .object([("cpu", .string("10m")), ("memory", .string("32Mi"))])),
                ("limits", .object([("memory", .string("256Mi"))])),
            ])),
            ("securityContext", .object([
                ("runAsNonRoot", yes), ("runAsUser", user), ("runAsGroup", user),
                ("allowPrivilegeEscalation", no), ("readOnlyRootFilesystem", yes), ("privileged", no),
                ("capabilities", .object([("drop", .list(["ALL"]))])),
                ("seccompProfile", .object([("type", .string("RuntimeDefault"))])),
            ])),
        ])
    }

    // MARK: reading the pod

    /// Distinct images one pod may have looked up (each lookup holds memory and a budget
    /// of time the API server is waiting for).
    static let maxLookups = 8

    static func items(_ node: Document?) -> [Document] {
        guard let node, case .sequence(let items) = node.kind else { return [] }
        return items
    }

    public static func text(_ node: Document?) -> String? {
        guard let node, case .scalar(let text, _) = node.kind else { return nil }
        return text
    }

    static func stringMap(_ node: Document?, _ path: String) throws(InjectionDenied) -> [String: String] {
        guard let node else { return [:] }
        switch node.kind {
        case .null: return [:]
        case .mapping(let entries):
            var out: [String: String] = [:]
            for entry in entries {
                guard let text = text(entry.value) else { throw InjectionDenied("\(path).\(entry.key) must be a string") }
                out[entry.key] = text
            }
            return out
        default: throw InjectionDenied("\(path) must be a mapping")
        }
    }

    static func stringList(_ node: Document?, _ path: String) throws(InjectionDenied) -> [String]? {
        guard let node else { return nil }
        switch node.kind {
        case .null: return nil
        case .sequence(let items):
            var out: [String] = []
            for item in items {
                guard let text = text(item) else { throw InjectionDenied("\(path) must be a list of strings") }
                out.append(text)
            }
            return out
        default: throw InjectionDenied("\(path) must be a list of strings")
        }
    }

    static func flag(_ annotations: [String: String], _ name: String) throws(InjectionDenied) -> Bool {
        switch annotations[name] {
        case nil, "false": return false
        case "true": return true
        default: throw InjectionDenied("\(name) must be \"true\" or \"false\"")
        }
    }

    /// Words as the kubelet must leave them: every `$` doubled (`$$` → `$`; `$(X)` is
    /// then never a reference).
    static func escape(_ words: [String]) -> [String] {
        words.map { $0.replacingAll("$", with: "$$") }
    }

    static func commandAnnotation(_ annotations: [String: String], _ name: String) throws(InjectionDenied) -> [String]? {
        guard let text = annotations[name] else { return nil }
        let words: [String]?
        // JSON only (the reader that bounds its depth): an annotation is the pod author's.
        if let document = try? Loader.documents(text, file: name + ".json").first, case .sequence = document.kind {
            words = try? stringList(document, name)
        } else {
            words = nil
        }
        guard let words, !words.isEmpty else {
            throw InjectionDenied("\(name) must be a non-empty JSON list of strings, e.g. [\"/app/server\", \"--port\", \"8080\"]")
        }
        return words
    }

    /// RFC 1123 subdomain, as Kubernetes checks object names.
    static func isDNSSubdomain(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...253).contains(bytes.count) else { return false }
        func alnum(_ b: UInt8) -> Bool { (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) }
        guard alnum(bytes.first!), alnum(bytes.last!) else { return false }
        return bytes.allSatisfy { alnum($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") }
    }

    static func isSecretKey(_ key: String) -> Bool {
        let bytes = Array(key.utf8)
        guard (1...253).contains(bytes.count), key != ".", key != ".." else { return false }
        return bytes.allSatisfy { b in
            (b >= 0x61 && b <= 0x7A) || (b >= 0x41 && b <= 0x5A) || (b >= 0x30 && b <= 0x39) || b == 0x2D || b == 0x5F || b == 0x2E
        }
    }
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" { s = s.dropLast() }
        return String(s)
    }

    /// Every occurrence of `target` replaced, byte-wise (no _StringProcessing).
    func replacingAll(_ target: String, with replacement: String) -> String {
        let bytes = Array(utf8), needle = Array(target.utf8), with = Array(replacement.utf8)
        guard !needle.isEmpty, bytes.count >= needle.count else { return String(self) }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            if i + needle.count <= bytes.count, bytes[i..<(i + needle.count)].elementsEqual(needle) {
                out += with
                i += needle.count
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
