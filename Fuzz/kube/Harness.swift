import FuzzSupport
import StigmerCore
import StigmerKube
import StigmerManifests

/// The Kubernetes injector's parsers of outside input (StigmerKube): a pod as an
/// AdmissionReview or `inject -f` brings it, image references, and a registry's
/// `WWW-Authenticate` challenge. The first byte picks: even, the rest is an AdmissionReview
/// or a pod (YAML or JSON); odd, its first line is an image reference and the rest a challenge.
let injector = PodInjector(settings: InjectorSettings(image: "registry.example/stigmer-exec:1", server: "stigmer.example:7443"))

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzKube(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = Fuzz.bytes(data, size)
    guard let which = bytes.first else { return 0 }
    let rest = Array(bytes.dropFirst())
    if which & 1 == 0 {
        guard let document = try? Loader.documents(Fuzz.text(rest), file: "pod.yaml").first, Fuzz.nodeCount(document) <= 5_000 else { return 0 }
        // An AdmissionReview carries the pod as request.object; `inject -f` reads a bare one.
        checkPod(document["request"]?["object"] ?? document)
    } else {
        let line = rest.firstIndex(of: 0x0A) ?? rest.endIndex
        checkImage(Fuzz.text(Array(rest[..<line])))
        let parameters = RegistryClient.challengeParameters(Fuzz.text(Array(rest[line...])))
        Fuzz.expect(parameters.keys.allSatisfy { $0 == $0.lowercased() }, "a challenge parameter name not lowercased")
    }
    return 0
}

/// A parsed reference prints as what parses back to it (the cache and the log use it).
func checkImage(_ text: String) {
    guard let reference = ImageReference.parse(text) else { return }
    Fuzz.expect(ImageReference.parse(reference.description) == reference, "\(text) → \(reference) does not parse back the same")
}

/// Injected whole or denied whole: the patch applies to the pod, and the patched pod is
/// left alone when the webhook is called again (reinvocationPolicy: IfNeeded).
func checkPod(_ pod: Document) {
    let plan: InjectionPlan
    do {
        guard let found = try injector.plan(pod) else { return }
        plan = found
    } catch {
        return
    }
    for image in plan.imagesToLookUp { checkImage(image) }
    let images = Dictionary(uniqueKeysWithValues: plan.imagesToLookUp.map { ($0, ImageConfig(entrypoint: ["/bin/app"], cmd: ["serve"])) })
    let ops: [PatchOperation]
    do { ops = try injector.patch(plan, images: images) } catch { return }
    do {
        let patched = try PatchOperation.apply(ops, to: pod)
        Fuzz.expect(try injector.plan(patched) == nil, "an injected pod would be injected again")
        _ = try Loader.documents(PatchOperation.json(ops), file: "patch.json")
    } catch {
        Fuzz.violation("the injector's own patch does not apply, or its JSON does not read: \(error)")
    }
}
