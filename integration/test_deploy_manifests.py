"""The Kubernetes deployment (deploy/kubernetes/*.yaml) and the webhook's AdmissionReview
fixtures (integration/admission/*.json), checked against the official client's models.

No cluster and no binary: every document is read with PyYAML and deserialized with
`kubernetes.client.ApiClient().deserialize` into the model its apiVersion/kind names, then
serialized back (`sanitize_for_serialization`) and compared with what was read. A misspelled
or misplaced field is dropped silently by deserialization, so the round trip is what catches
it. Then the safety properties the manifests promise: locked-down containers, a webhook
registration that cannot hang or wedge the cluster, no secret material in the repository.
"""

from __future__ import annotations

import base64
import json
import re

import pytest
import yaml
from kubernetes import client

from helpers import INTEGRATION_DIR, k8s_model, k8s_round_trip

DEPLOY_DIR = INTEGRATION_DIR.parent / "deploy" / "kubernetes"
ADMISSION_DIR = INTEGRATION_DIR / "admission"

# (apiVersion, kind) -> the client's model. A kind not listed here fails the test, so adding
# a new kind to deploy/ means saying here which model checks it.
MODELS = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "Service"): "V1Service",
    ("v1", "Secret"): "V1Secret",
    ("v1", "Pod"): "V1Pod",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "V1ClusterRoleBinding",
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"): "V1MutatingWebhookConfiguration",
}

EXPECTED_FILES = {"namespace.yaml", "webhook.yaml", "mutatingwebhook.yaml", "server.yaml", "example-pod.yaml"}
FIXTURES = [
    "pod-with-command.json",
    "pod-without-command.json",
    "pod-not-opted-in.json",
    "pod-already-injected.json",
    "pod-missing-execution-id.json",
    "pod-hardened.json",
]

CA_PLACEHOLDER = "REPLACE_WITH_BASE64_PEM_CA"


def with_ca_bundle_filled(doc: dict) -> dict:
    """The caBundle placeholder is deliberately not base64 (an unfilled apply fails), so the
    model refuses it: check the rest of the document with a stand-in, as it will be filled."""
    if doc.get("kind") != "MutatingWebhookConfiguration":
        return doc
    doc = json.loads(json.dumps(doc))
    for hook in doc.get("webhooks", []):
        if hook.get("clientConfig", {}).get("caBundle") == CA_PLACEHOLDER:
            hook["clientConfig"]["caBundle"] = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode()
    return doc


# --------------------------------------------------------------------------
# Loading


def _load_deploy() -> list[tuple[str, int, dict]]:
    docs = []
    for path in sorted(DEPLOY_DIR.glob("*.yaml")):
        with path.open() as f:
            for index, doc in enumerate(yaml.safe_load_all(f)):
                if doc is not None:  # a leading `---` or a comment-only document
                    docs.append((path.name, index, doc))
    return docs


DEPLOY_DOCS = _load_deploy()


def docs_of(kind: str, file: str | None = None) -> list[dict]:
    return [d for name, _, d in DEPLOY_DOCS if d.get("kind") == kind and (file is None or name == file)]


def one(kind: str, name: str) -> dict:
    found = [d for d in docs_of(kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name!r} in deploy/kubernetes, found {len(found)}"
    return found[0]


def load_fixture(name: str, registry: str | None = None) -> dict:
    text = (ADMISSION_DIR / name).read_text()
    if registry is not None:
        text = text.replace("{{REGISTRY}}", registry)
    return json.loads(text)


def pod_specs() -> list[tuple[str, dict]]:
    """Every pod spec in deploy/: Pods' and workload templates'."""
    out = []
    for file, index, doc in DEPLOY_DOCS:
        where = f"{file}#{index} {doc['kind']} {doc['metadata'].get('name')}"
        if doc["kind"] == "Pod":
            out.append((where, doc["spec"]))
        elif doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            out.append((where, doc["spec"]["template"]["spec"]))
        elif doc["kind"] == "CronJob":
            out.append((where, doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
    return out


def containers_of(spec: dict) -> list[dict]:
    return [*spec.get("initContainers", []), *spec.get("containers", []), *spec.get("ephemeralContainers", [])]


def flag(command: list[str], name: str) -> str | None:
    """The value after `name` in an argv, or None."""
    if name in command:
        i = command.index(name)
        assert i + 1 < len(command), f"{name} has no value in {command}"
        return command[i + 1]
    return None


def selector_matches(selector: dict, labels: dict) -> bool:
    """metav1.LabelSelector semantics (matchLabels AND every matchExpression)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        assert op in ("In", "NotIn", "Exists", "DoesNotExist"), f"unknown operator {op}"
    return True


def opted_in(pod: dict) -> bool:
    """The opt-in rule the webhook and mutatingwebhook.yaml's matchConditions share:
    `stigmer.ai/inject` exactly "true", as an annotation or as a label."""
    meta = pod["metadata"]
    return (meta.get("annotations") or {}).get("stigmer.ai/inject") == "true" or (meta.get("labels") or {}).get(
        "stigmer.ai/inject"
    ) == "true"


# --------------------------------------------------------------------------
# Every document deserializes into its model with nothing dropped


def test_the_expected_files_exist_and_hold_documents():
    names = {p.name for p in DEPLOY_DIR.glob("*.yaml")}
    assert EXPECTED_FILES <= names, f"missing: {sorted(EXPECTED_FILES - names)}"
    for name in names:
        assert any(f == name for f, _, _ in DEPLOY_DOCS), f"{name} holds no document"


def test_every_file_starts_with_a_comment():
    for path in DEPLOY_DIR.glob("*.yaml"):
        assert path.read_text().startswith("# "), f"{path.name}: start with a comment saying what it is"


@pytest.mark.parametrize(
    "file,index,doc", DEPLOY_DOCS, ids=[f"{f}#{i}-{d.get('kind')}" for f, i, d in DEPLOY_DOCS]
)
def test_document_round_trips_through_its_model(file, index, doc):
    key = (doc.get("apiVersion"), doc.get("kind"))
    assert key in MODELS, f"{file}#{index}: no model for {key}; add it to MODELS"
    model = MODELS[key]
    doc = with_ca_bundle_filled(doc)
    obj = k8s_round_trip(doc, model, f"{file}#{index} {doc['kind']} {doc['metadata'].get('name')}")
    assert isinstance(obj, getattr(client, model))
    assert (obj.api_version, obj.kind) == key


def test_round_trip_catches_a_misspelled_field():
    """The check itself: a typo must not pass."""
    doc = json.loads(json.dumps(one("Deployment", "stigmer-webhook")))
    doc["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    with pytest.raises(AssertionError, match="readOnlyRootFileSystem: dropped"):
        k8s_round_trip(doc, "V1Deployment", "typo")
    doc = json.loads(json.dumps(one("Namespace", "stigmer-system")))
    doc["metadata"]["labels"]["stigmer.ai/injection"] = False  # an unquoted YAML boolean
    with pytest.raises(AssertionError, match="became 'False'"):
        k8s_round_trip(doc, "V1Namespace", "boolean label")


def test_names_are_unique_per_kind_and_namespace():
    seen = set()
    for file, _, doc in DEPLOY_DOCS:
        key = (doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"])
        assert key not in seen, f"{file}: {key} defined twice"
        seen.add(key)


# --------------------------------------------------------------------------
# Safety properties of every container


@pytest.mark.parametrize("where,spec", pod_specs(), ids=[w for w, _ in pod_specs()])
def test_every_container_is_locked_down(where, spec):
    pod_sc = spec.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(key), f"{where}: {key}"
    for volume in spec.get("volumes", []):
        assert "hostPath" not in volume, f"{where}: hostPath volume {volume['name']}"
    assert containers_of(spec), f"{where}: no containers"
    for c in containers_of(spec):
        sc = c.get("securityContext") or {}
        name = f"{where} container {c['name']}"
        run_as_non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        assert run_as_non_root is True, f"{name}: runAsNonRoot"
        assert sc.get("runAsUser", pod_sc.get("runAsUser")) != 0, f"{name}: runAsUser 0"
        assert sc.get("readOnlyRootFilesystem") is True, f"{name}: readOnlyRootFilesystem"
        assert sc.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation"
        assert sc.get("privileged") is not True, f"{name}: privileged"
        caps = sc.get("capabilities") or {}
        assert "ALL" in (caps.get("drop") or []), f"{name}: capabilities.drop ALL"
        assert not caps.get("add"), f"{name}: capabilities.add {caps.get('add')}"
        seccomp = sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}
        assert seccomp.get("type") in ("RuntimeDefault", "Localhost"), f"{name}: seccompProfile {seccomp}"
        resources = c.get("resources") or {}
        assert resources.get("requests"), f"{name}: no resource requests"
        assert (resources.get("limits") or {}).get("memory"), f"{name}: no memory limit"


@pytest.mark.parametrize("where,spec", pod_specs(), ids=[w for w, _ in pod_specs()])
def test_no_credential_is_written_into_a_pod_spec(where, spec):
    """Credentials come from Secrets (secretKeyRef or volumes), never literal env values or argv."""
    sensitive = re.compile(r"TOKEN|KEY|PASSWORD|SECRET|STORE|CREDENTIAL", re.I)
    for c in containers_of(spec):
        for env in c.get("env", []):
            if sensitive.search(env["name"]):
                assert "value" not in env, f"{where} {c['name']}: {env['name']} has a literal value"
        argv = [*c.get("command", []), *c.get("args", [])]
        assert not any("postgres://" in a or "postgresql://" in a for a in argv), f"{where}: a database URL in argv"
        assert "--store" not in argv, f"{where}: --store in argv (a password would be world-readable in /proc)"


def test_no_secret_in_deploy_carries_real_data():
    secrets = docs_of("Secret")
    for secret in secrets:
        name = secret["metadata"]["name"]
        assert not secret.get("data"), f"Secret {name}: `data` in the repository"
        for key, value in (secret.get("stringData") or {}).items():
            assert value.startswith("REPLACE_"), f"Secret {name}: {key} is not a REPLACE_ placeholder"
    # Secrets the deployment reads (TLS, key, token, database) are created by the operator,
    # never committed: none of them may be defined in deploy/.
    committed = {s["metadata"]["name"] for s in secrets}
    for where, spec in pod_specs():
        if "example-pod.yaml" in where:
            continue
        refs = {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
        refs |= {
            e["valueFrom"]["secretKeyRef"]["name"]
            for c in containers_of(spec)
            for e in c.get("env", [])
            if "secretKeyRef" in (e.get("valueFrom") or {})
        }
        assert not refs & committed, f"{where}: reads committed Secrets {sorted(refs & committed)}"


def test_no_private_key_or_token_text_anywhere_in_deploy():
    for path in DEPLOY_DIR.glob("*.yaml"):
        text = path.read_text()
        assert "PRIVATE KEY" not in text, path.name
        assert not re.search(r"stx2?_[A-Za-z0-9_-]{20,}", text), f"{path.name}: an execution token"
        assert not re.search(r"postgres(ql)?://[^\s:@/]+:[^\s@]+@", text.replace("USER:PASSWORD@", "")), (
            f"{path.name}: a database URL with a password"
        )


# --------------------------------------------------------------------------
# The webhook registration


def webhook_registration() -> dict:
    configs = docs_of("MutatingWebhookConfiguration", "mutatingwebhook.yaml")
    assert len(configs) == 1
    hooks = [h for h in configs[0]["webhooks"] if h["name"] == "inject.stigmer.ai"]
    assert len(hooks) == 1, "one webhook named inject.stigmer.ai"
    return hooks[0]


def test_webhook_registration_is_safe():
    hook = webhook_registration()
    assert hook["sideEffects"] == "None"
    assert "v1" in hook["admissionReviewVersions"]
    assert 1 <= hook["timeoutSeconds"] <= 10
    assert hook["reinvocationPolicy"] == "IfNeeded"
    assert hook["failurePolicy"] == "Fail"
    assert hook["rules"] == [
        {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced"}
    ]


def test_webhook_is_never_called_for_the_control_plane_or_its_own_namespace():
    selector = webhook_registration()["namespaceSelector"]
    own = one("Namespace", "stigmer-system")
    # The API server labels every namespace with its name.
    own_labels = {**own["metadata"].get("labels", {}), "kubernetes.io/metadata.name": "stigmer-system"}
    assert not selector_matches(selector, own_labels), "the webhook's own namespace is selected"
    assert not selector_matches(selector, {"kubernetes.io/metadata.name": "stigmer-system"})
    assert not selector_matches(selector, {"kubernetes.io/metadata.name": "kube-system"})
    assert not selector_matches(
        selector, {"kubernetes.io/metadata.name": "team-b", "stigmer.ai/injection": "disabled"}
    ), "a namespace cannot opt out"
    assert selector_matches(selector, {"kubernetes.io/metadata.name": "team-a"})
    assert selector_matches(selector, {"kubernetes.io/metadata.name": "default"})


def test_webhook_is_called_only_for_opted_in_pods():
    """matchConditions (CEL) are not evaluated here (no CEL in this environment): check that
    the one condition tests the opt-in key against "true" in both annotations and labels,
    or, on the objectSelector variant, that the label selects exactly that."""
    hook = webhook_registration()
    conditions = hook.get("matchConditions") or []
    if conditions:
        assert len(conditions) == 1
        expression = " ".join(conditions[0]["expression"].split())
        for where in ("annotations", "labels"):
            assert f"object.metadata.{where}['stigmer.ai/inject'] == 'true'" in expression, where
            assert f"has(object.metadata.{where})" in expression, f"{where}: a pod without any must not error"
            assert f"'stigmer.ai/inject' in object.metadata.{where}" in expression, f"{where}: a missing key must not error"
        assert "objectSelector" not in hook, "objectSelector AND matchConditions would require the label"
    else:
        assert hook["objectSelector"] == {"matchLabels": {"stigmer.ai/inject": "true"}}


def test_ca_bundle_is_a_placeholder_that_cannot_be_applied_unfilled():
    """Not a committed CA (it would be some other cluster's), and not valid base64: the API
    server (and the client's model) refuse it, so a forgotten fill-in fails at apply time
    instead of at the first opted-in pod. (Absent is fine too: cert-manager's CA injector.)"""
    config = webhook_registration()["clientConfig"]
    if "caBundle" in config:
        assert config["caBundle"] == CA_PLACEHOLDER
        with pytest.raises(ValueError, match="ca_bundle"):
            k8s_model(config, "AdmissionregistrationV1WebhookClientConfig")


def test_webhook_registration_reaches_the_webhook_deployment():
    service_ref = webhook_registration()["clientConfig"]["service"]
    assert service_ref["path"] == "/mutate"
    service = one("Service", service_ref["name"])
    assert service["metadata"]["namespace"] == service_ref["namespace"] == "stigmer-system"
    port = [p for p in service["spec"]["ports"] if p["port"] == service_ref.get("port", 443)]
    assert len(port) == 1, "the registration's port is not on the Service"
    deployment = one("Deployment", "stigmer-webhook")
    pod = deployment["spec"]["template"]
    assert selector_matches({"matchLabels": service["spec"]["selector"]}, pod["metadata"]["labels"])
    container = pod["spec"]["containers"][0]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    target = port[0]["targetPort"]
    container_port = named[target] if isinstance(target, str) else target
    assert flag(container["command"], "--listen") == f"0.0.0.0:{container_port}"


# --------------------------------------------------------------------------
# The webhook Deployment


def test_webhook_deployment_follows_the_cli_contract():
    deployment = one("Deployment", "stigmer-webhook")
    assert deployment["metadata"]["namespace"] == "stigmer-system"
    assert deployment["spec"]["replicas"] >= 2
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    command = container["command"]
    assert command[:3] == ["stigmer-exec-full", "webhook", "serve"]
    # The launcher injected is the webhook's own version.
    assert flag(command, "--image") == container["image"] == "ghcr.io/stigmer/stigmer-exec:0.2.0"
    # --server names the context server's Service and port.
    server = re.fullmatch(r"grpcs://([a-z0-9-]+)\.([a-z0-9-]+)\.svc:(\d+)", flag(command, "--server"))
    assert server, "--server must be grpcs:// to a Service DNS name"
    service = one("Service", server[1])
    assert service["metadata"]["namespace"] == server[2]
    assert int(server[3]) in [p["port"] for p in service["spec"]["ports"]]
    # TLS from the Secret stigmer-webhook-tls, mounted read-only at /tls.
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert mounts["/tls"]["readOnly"] is True
    assert volumes[mounts["/tls"]["name"]]["secret"]["secretName"] == "stigmer-webhook-tls"
    assert flag(command, "--tls-cert") == "/tls/tls.crt" and flag(command, "--tls-key") == "/tls/tls.key"
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = container[probe]["httpGet"]
        assert (get["path"], get["scheme"]) == (path, "HTTPS"), probe
        assert get["port"] in ("https", 8443)


def test_webhook_can_read_pull_secrets_and_nothing_more():
    role = one("ClusterRole", "stigmer-webhook-read-pull-secrets")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    binding = one("ClusterRoleBinding", "stigmer-webhook-read-pull-secrets")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role["metadata"]["name"]}
    sa = one("Deployment", "stigmer-webhook")["spec"]["template"]["spec"]["serviceAccountName"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": "stigmer-system"}]
    one("ServiceAccount", sa)


@pytest.mark.parametrize("name", ["stigmer-webhook", "stigmer-exec"])
def test_each_deployment_has_a_disruption_budget(name):
    deployment = one("Deployment", name)
    budgets = [
        p
        for p in docs_of("PodDisruptionBudget")
        if p["metadata"]["namespace"] == deployment["metadata"]["namespace"]
        and selector_matches(p["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"])
    ]
    assert len(budgets) == 1
    assert budgets[0]["spec"].get("minAvailable", 0) >= 1 or "maxUnavailable" in budgets[0]["spec"]
    assert deployment["spec"]["replicas"] > budgets[0]["spec"].get("minAvailable", 0), "the budget would block every drain"


# --------------------------------------------------------------------------
# The context server


def test_server_deployment_follows_the_cli_contract():
    deployment = one("Deployment", "stigmer-exec")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    command = container["command"]
    assert command[:2] == ["stigmer-exec-full", "serve"]
    listen_port = int(flag(command, "--listen").rsplit(":", 1)[1])
    assert flag(command, "--tls-cert") and flag(command, "--tls-key"), "the server serves TLS"
    env = {e["name"]: e for e in container.get("env", [])}
    for name, secret in (
        ("STIGMER_STORE", "stigmer-exec-postgres"),
        ("STIGMER_ENCRYPTION_KEY", "stigmer-exec-master-key"),
        ("STIGMER_OPERATOR_TOKEN", "stigmer-exec-operator-token"),
    ):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == secret, name
    assert spec.get("automountServiceAccountToken") is False, "the server needs no Kubernetes API token"
    # The kubelet's native gRPC probe has no TLS: it must not point at the TLS port.
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert listen_port in named.values()
    for probe in ("readinessProbe", "livenessProbe"):
        handler = container[probe]
        assert handler, probe
        if "grpc" in handler:
            assert handler["grpc"]["port"] != listen_port, f"{probe}: a plaintext gRPC probe against the TLS port"
    service = one("Service", "stigmer-exec")
    (port,) = service["spec"]["ports"]
    assert port["port"] == 7443
    assert (named[port["targetPort"]] if isinstance(port["targetPort"], str) else port["targetPort"]) == listen_port


def test_example_pod_opts_in_and_names_its_token_secret():
    (pod,) = docs_of("Pod", "example-pod.yaml")
    assert opted_in(pod)
    annotations = pod["metadata"]["annotations"]
    assert annotations["stigmer.ai/execution-id"]
    secret_name, _, key = annotations["stigmer.ai/token-secret"].partition("/")
    (secret,) = docs_of("Secret", "example-pod.yaml")
    assert secret["metadata"]["name"] == secret_name
    assert (key or "token") in secret["stringData"]


# --------------------------------------------------------------------------
# The AdmissionReview fixtures

ADMISSION_REQUEST_FIELDS = {
    "uid", "kind", "resource", "subResource", "requestKind", "requestResource", "requestSubResource",
    "name", "namespace", "operation", "userInfo", "object", "oldObject", "dryRun", "options",
}
POD_GVK = {"group": "", "version": "v1", "kind": "Pod"}
POD_GVR = {"group": "", "version": "v1", "resource": "pods"}


def test_every_fixture_is_listed():
    assert sorted(p.name for p in ADMISSION_DIR.glob("*.json")) == sorted(FIXTURES)


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_is_an_admission_review_as_the_api_server_sends_it(name):
    review = load_fixture(name, registry="registry.test:5000")
    assert set(review) == {"kind", "apiVersion", "request"}
    assert (review["apiVersion"], review["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    request = review["request"]
    assert set(request) <= ADMISSION_REQUEST_FIELDS, f"unknown fields {set(request) - ADMISSION_REQUEST_FIELDS}"
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", request["uid"])
    assert request["kind"] == request["requestKind"] == POD_GVK
    assert request["resource"] == request["requestResource"] == POD_GVR
    assert "subResource" not in request and "requestSubResource" not in request
    assert request["operation"] == "CREATE"
    assert request["oldObject"] is None  # null on CREATE
    assert request["dryRun"] is False
    assert request["options"]["kind"] == "CreateOptions" and request["options"]["apiVersion"] == "meta.k8s.io/v1"
    k8s_round_trip(request["userInfo"], "V1UserInfo", f"{name} userInfo")
    pod = request["object"]
    k8s_round_trip(pod, "V1Pod", f"{name} request.object")
    meta = pod["metadata"]
    assert request["namespace"] == meta["namespace"]
    # `name,omitempty`: absent, not "", when the pod has only generateName.
    assert request.get("name") == meta.get("name")
    assert meta.get("name") or meta.get("generateName")
    # Mutating admission runs before the object is stored: no uid, resourceVersion or time yet.
    for absent in ("uid", "resourceVersion", "creationTimestamp", "selfLink"):
        assert meta.get(absent) is None, f"{absent} is not set before storage"
    # Built-in mutating admission plugins have already run.
    assert pod["spec"]["serviceAccountName"] and pod["spec"]["tolerations"]


@pytest.mark.parametrize("name", ["pod-with-command.json", "pod-hardened.json", "pod-already-injected.json"])
def test_controller_made_fixtures_look_like_a_replicaset_pod(name):
    request = load_fixture(name)["request"]
    meta = request["object"]["metadata"]
    assert "name" not in request and "name" not in meta
    assert meta["generateName"].endswith("-")
    (owner,) = meta["ownerReferences"]
    assert (owner["apiVersion"], owner["kind"], owner["controller"]) == ("apps/v1", "ReplicaSet", True)
    assert meta["generateName"] == owner["name"] + "-"
    assert meta["labels"]["pod-template-hash"] == owner["name"].rsplit("-", 1)[1]
    assert request["userInfo"]["username"] == "system:serviceaccount:kube-system:replicaset-controller"


def test_fixture_opt_in():
    expected = {
        "pod-with-command.json": True,  # by annotation
        "pod-without-command.json": True,
        "pod-not-opted-in.json": False,  # inject "false" as annotation and label, an execution id anyway
        "pod-already-injected.json": True,
        "pod-missing-execution-id.json": True,
        "pod-hardened.json": True,  # by label only
    }
    for name, want in expected.items():
        assert opted_in(load_fixture(name)["request"]["object"]) is want, name
    hardened = load_fixture("pod-hardened.json")["request"]["object"]["metadata"]
    assert "stigmer.ai/inject" not in hardened["annotations"] and hardened["labels"]["stigmer.ai/inject"] == "true"
    with_command = load_fixture("pod-with-command.json")["request"]["object"]["metadata"]
    assert "stigmer.ai/inject" not in with_command["labels"]


def test_pod_with_command_excludes_its_sidecar():
    pod = load_fixture("pod-with-command.json")["request"]["object"]
    listed = pod["metadata"]["annotations"]["stigmer.ai/containers"].split(",")
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    assert set(listed) < set(containers), "the annotation names some containers, not all"
    for name in listed:
        assert containers[name]["command"] and containers[name]["args"]
    excluded = set(containers) - set(listed)
    assert excluded and all("command" not in containers[n] for n in excluded), (
        "an excluded image-only sidecar: the webhook must neither wrap it nor look it up"
    )
    assert "/" in pod["metadata"]["annotations"]["stigmer.ai/token-secret"], "a non-default key"


def test_pod_without_command_needs_a_registry_lookup():
    raw = (ADMISSION_DIR / "pod-without-command.json").read_text()
    assert '"{{REGISTRY}}/app:1.0"' in raw
    pod = load_fixture("pod-without-command.json", registry="127.0.0.1:5000")["request"]["object"]
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "127.0.0.1:5000/app:1.0"
    assert "command" not in container and "args" not in container
    assert "stigmer.ai/command" not in pod["metadata"]["annotations"]
    assert pod["spec"]["imagePullSecrets"] == [{"name": "registry-credentials"}]


def test_pod_missing_execution_id_has_everything_else():
    annotations = load_fixture("pod-missing-execution-id.json")["request"]["object"]["metadata"]["annotations"]
    assert "stigmer.ai/execution-id" not in annotations
    assert annotations["stigmer.ai/inject"] == "true" and annotations["stigmer.ai/token-secret"]


def test_pod_hardened_is_restricted():
    spec = load_fixture("pod-hardened.json")["request"]["object"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in containers_of(spec):
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]


def test_pod_already_injected_is_pod_with_command_after_the_patch():
    """The shape Sources/StigmerKube/Injection.swift patches in: launcher prefix as command,
    the original command and args as args, the token by secretKeyRef, an init container that
    copies the bundle into an in-memory emptyDir, the version as marker annotation."""
    before = load_fixture("pod-with-command.json")["request"]["object"]
    after = load_fixture("pod-already-injected.json")["request"]["object"]
    assert after["metadata"]["generateName"] == before["metadata"]["generateName"]
    assert after["metadata"]["annotations"]["stigmer.ai/injected"] == "0.2.0"
    (install,) = after["spec"]["initContainers"]
    assert install["name"] == "stigmer-exec-install" and install["command"][1:] == ["install", "/stigmer"]
    volume = next(v for v in after["spec"]["volumes"] if v["name"] == "stigmer-exec")
    assert volume["emptyDir"]["medium"] == "Memory"
    agent = next(c for c in after["spec"]["containers"] if c["name"] == "agent")
    original = next(c for c in before["spec"]["containers"] if c["name"] == "agent")
    assert agent["command"][:2] == ["/stigmer/stigmer-exec", "run"] and agent["command"][-1] == "--"
    assert flag(agent["command"], "--execution-id") == before["metadata"]["annotations"]["stigmer.ai/execution-id"]
    assert agent["args"] == original["command"] + original["args"]
    token = next(e for e in agent["env"] if e["name"] == "STIGMER_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "agent-runner-token", "key": "execution-token"}
    assert {"name": "stigmer-exec", "readOnly": True, "mountPath": "/stigmer"} in agent["volumeMounts"]
    sidecar = next(c for c in after["spec"]["containers"] if c["name"] == "log-shipper")
    assert sidecar == next(c for c in before["spec"]["containers"] if c["name"] == "log-shipper")
