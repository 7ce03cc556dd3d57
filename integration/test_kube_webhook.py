"""Black-box tests of the Kubernetes injector: `stigmer-exec webhook serve`, the mutating
admission webhook, and `stigmer-exec inject -f`, its offline form for manifests.

Everything runs on 127.0.0.1 with real parts (registry.py):

- the webhook serves HTTPS with a certificate from a throwaway CA and is called as the API
  server calls it: POST /mutate?timeout=10s with an AdmissionReview admission.k8s.io/v1 (the
  requests captured in admission/*.json, or built here in their shape by `review`);
- images come from a CNCF distribution registry with htpasswd auth, pushed with umoci and
  skopeo (OCI and Docker schema 2 manifests, OCI indexes and Docker manifest lists), and
  from a second one with token (Bearer) auth, as Docker Hub, GHCR, GCR and ECR-style
  registries have: a TokenServer signs the JWTs it verifies, and a RegistryTap in front of
  it shows which Authorization each request to the registry itself carried;
- pull Secrets come from FakeKubeAPI, which also serves the pods' token Secrets holding
  random values: "the Secret" the test holds. The webhook must never read those Secrets,
  and no value of them may appear in a patch or on the webhook's stderr.

Each patch is applied with jsonpatch to the request's object; the result is read with the
official client's models (V1Pod, V1Deployment, …) and written back, and must come back
equal: a field unknown to Kubernetes, misplaced or of the wrong type would be dropped or
changed by that round trip. Then what the injection means is checked field by field
(`assert_injected`): the locked-down init container first, the read-only mount, the
launcher's command, the original argv in args, the token only by secretKeyRef, and the
rest of the pod untouched.

The registry's access log lags its answers a little: `settled` sends a request of its own
and waits until the log shows it; the webhook's earlier requests are all there by then.
"""

from __future__ import annotations

import base64
import copy
import http.client
import json
import re
import secrets
import shutil
import signal
import socket
import ssl
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonpatch
import pytest
import yaml

from helpers import (
    INTEGRATION_DIR,
    BackgroundProcess,
    describe,
    free_port,
    k8s_round_trip,
    one_line_error,
    ok,
    run,
    wait_for,
)
from registry import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    FakeKubeAPI,
    Registry,
    RegistryTap,
    TokenServer,
    client_context,
    dockerconfigjson,
    make_ca,
    make_cert,
    pull_secret,
    push_image,
    push_index,
)

ADMISSION_DIR = INTEGRATION_DIR / "admission"
INIT_IMAGE = "ghcr.io/stigmer/stigmer-exec:0.2.0"
SERVER_URL = "grpcs://stigmer-exec.stigmer-system.svc:7443"
VERSION = "0.2.0"
LAUNCHER = "/stigmer/stigmer-exec"
MOUNT = {"name": "stigmer-exec", "mountPath": "/stigmer", "readOnly": True}
VOLUME = {"name": "stigmer-exec", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}}
INJECTED = "stigmer.ai/injected"
PULL_SECRET = "registry-credentials"  # what pod-without-command.json names in imagePullSecrets
DATAERR = 65

# What the test images hold (pushed once per module by the `images` fixture).
APP_ENTRYPOINT = ["/bin/app"]
# The injector names the bundled companion (the image's ENV must not choose the fetch helper).
COMPANION_ENV = {"name": "STIGMER_EXEC_FULL", "value": "/stigmer/stigmer-exec-full"}
APP_CMD = ["serve", "--data=$(HOME)/data"]  # `$(` the kubelet must not start expanding
APP_ARGV = ["/bin/app", "serve", "--data=$$(HOME)/data"]
DOCKER_ENTRYPOINT = ["/docker-entrypoint.sh"]
DOCKER_CMD = ["nginx", "-g", "daemon off;"]
CMD_ONLY = ["/bin/sh", "-c", "exec app --uid=$(id -u)"]


# --------------------------------------------------------------------------
# AdmissionReviews


def fixture_review(name: str, registry: str | None = None) -> dict:
    """admission/<name>.json, with {{REGISTRY}} replaced by `registry`, and a fresh uid."""
    text = (ADMISSION_DIR / f"{name}.json").read_text()
    if registry is not None:
        text = text.replace("{{REGISTRY}}", registry)
    doc = json.loads(text)
    assert "{{" not in json.dumps(doc), f"{name}.json has a placeholder left"
    return doc


def fresh(rev: dict, **request_changes) -> dict:
    """A deep copy of `rev` with a new uid (and `request_changes` set in its request)."""
    out = copy.deepcopy(rev)
    out["request"]["uid"] = str(uuid.uuid4())
    out["request"].update(request_changes)
    return out


def pod_of(rev: dict) -> dict:
    return rev["request"]["object"]


def annotations_of(rev: dict) -> dict:
    return pod_of(rev)["metadata"].setdefault("annotations", {})


def container(pod: dict, name: str) -> dict:
    matches = [c for c in pod["spec"]["containers"] if c["name"] == name]
    assert len(matches) == 1, f"container {name!r} not in the pod: {[c['name'] for c in pod['spec']['containers']]}"
    return matches[0]


def review(obj, *, operation: str = "CREATE", kind=("", "v1", "Pod"), resource=("", "v1", "pods"),
           sub_resource: str | None = None, namespace: str | None = None, name: str = "",
           old=None, dry_run: bool = False) -> dict:
    """An AdmissionReview request shaped like the API server's."""
    def gvk(g, v, k):
        return {"group": g, "version": v, "kind": k}

    def gvr(g, v, r):
        return {"group": g, "version": v, "resource": r}

    request = {"uid": str(uuid.uuid4()), "kind": gvk(*kind), "resource": gvr(*resource)}
    if sub_resource:
        request["subResource"] = sub_resource
    request["requestKind"] = gvk(*kind)
    request["requestResource"] = gvr(*resource)
    if sub_resource:
        request["requestSubResource"] = sub_resource
    ns = namespace or ((obj or old or {}).get("metadata", {}).get("namespace")) or "default"
    request.update({
        "name": name, "namespace": ns, "operation": operation,
        "userInfo": {"username": "kubernetes-admin", "groups": ["kubeadm:cluster-admins", "system:authenticated"]},
        "object": obj, "oldObject": old, "dryRun": dry_run,
        "options": {"kind": operation.title() + "Options", "apiVersion": "meta.k8s.io/v1"},
    })
    return {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": request}


def image_review(reg_host: str, image: str, *, namespace: str = "team-a", args=None, exec_id: str | None = None,
                 pull_secrets=(PULL_SECRET,)) -> dict:
    """pod-without-command.json with `image` (a repo:tag or repo@digest in the test registry),
    in `namespace`, the container's args set when given, and its imagePullSecrets."""
    rev = fresh(fixture_review("pod-without-command", reg_host))
    rev["request"]["namespace"] = namespace
    pod = pod_of(rev)
    pod["metadata"]["namespace"] = namespace
    app = container(pod, "app")
    app["image"] = f"{reg_host}/{image}"
    if args is not None:
        app["args"] = list(args)
    if exec_id is not None:
        pod["metadata"]["annotations"]["stigmer.ai/execution-id"] = exec_id
    if pull_secrets:
        pod["spec"]["imagePullSecrets"] = [{"name": s} for s in pull_secrets]
    else:
        pod["spec"].pop("imagePullSecrets", None)
    return rev


# --------------------------------------------------------------------------
# the webhook process

SERVING_RE = re.compile(rb"stigmer-exec: webhook serving on https://127\.0\.0\.1:(\d+) "
                        rb"\(POST /mutate, GET /healthz, GET /readyz\)\n")


class Webhook(BackgroundProcess):
    """`stigmer-exec webhook serve --listen 127.0.0.1:0 …` once it printed where it serves;
    its stderr is drained in the background (`stderr`). `tls` is (ca, cert, key)."""

    name = "webhook serve"

    def __init__(self, home, tls, *args, server: str | None = SERVER_URL, image: str = INIT_IMAGE):
        self.ca, cert, key = tls
        argv = ["webhook", "serve", "--listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key,
                "--image", image, "--log-level", "info"]
        if server is not None:
            argv += ["--server", server]
        super().__init__(home, argv + [str(a) for a in args])
        self.port = None

    def start(self, timeout: float = 15.0) -> "Webhook":
        self.port = int(self.launch(SERVING_RE, timeout, "the 'webhook serving on' line").group(1))
        return self

    def connection(self, timeout: float = 30) -> http.client.HTTPSConnection:
        """A new HTTPS connection that trusts only the webhook's CA (and checks its name)."""
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=client_context(self.ca), timeout=timeout)

    def request(self, method: str, path: str, body: bytes | None = None, conn=None,
                headers: dict | None = None) -> tuple[int, dict, bytes]:
        own = conn is None
        conn = conn or self.connection()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            if own:
                conn.close()

    def post(self, rev, conn=None) -> tuple[int, dict, bytes]:
        body = rev if isinstance(rev, bytes) else json.dumps(rev).encode()
        return self.request("POST", "/mutate?timeout=10s", body, conn,
                            {"Content-Type": "application/json", "Accept": "application/json, */*"})

    def admit(self, rev: dict, conn=None) -> dict:
        """The `response` of the AdmissionReview the webhook answers `rev` with, after
        checking the envelope: HTTP 200, JSON, admission.k8s.io/v1, the request's uid."""
        status, headers, body = self.post(rev, conn)
        assert status == 200, f"POST /mutate answered {status}: {body!r}\n{self.describe()}"
        assert headers.get("content-type", "").startswith("application/json"), headers
        doc = json.loads(body)
        assert doc.get("apiVersion") == "admission.k8s.io/v1" and doc.get("kind") == "AdmissionReview", doc
        resp = doc["response"]
        assert resp.get("uid") == rev["request"]["uid"], f"uid not echoed: sent {rev['request']['uid']}, got {resp}"
        return resp


# --------------------------------------------------------------------------
# reading answers


def patch_ops(resp: dict) -> tuple[list, str]:
    """(the JSON Patch operations, the patch's text) of an answer that must inject."""
    assert resp.get("allowed") is True, f"denied where a patch was expected: {resp}"
    assert resp.get("patchType") == "JSONPatch" and "patch" in resp, f"no JSON patch in {resp}"
    text = base64.b64decode(resp["patch"], validate=True).decode()
    ops = json.loads(text)
    assert isinstance(ops, list) and ops, f"the patch is not a list of operations: {text}"
    return ops, text


def mutated(rev: dict, resp: dict) -> dict:
    """The request's object with the answer's patch applied, checked with the V1Pod model."""
    ops, _ = patch_ops(resp)
    pod = jsonpatch.apply_patch(pod_of(rev), ops)  # a copy: the request stays as it was
    k8s_round_trip(pod, "V1Pod", "the patched pod")
    return pod


def assert_untouched(resp: dict):
    assert resp.get("allowed") is True, f"expected to be allowed unchanged: {resp}"
    assert "patch" not in resp and "patchType" not in resp, f"expected no patch: {resp}"


def assert_denied(resp: dict, *needles: str, secrets_=()) -> str:
    """A denial, whole: not allowed, no patch at all, a 400 status whose one-line message
    holds every needle (and no secret). Returns the message."""
    assert resp.get("allowed") is False, f"expected a denial: {resp}"
    assert "patch" not in resp and "patchType" not in resp, f"a denial carries a patch (half an injection?): {resp}"
    status = resp.get("status") or {}
    assert status.get("code") == 400 and status.get("reason") == "BadRequest", f"denial status: {status}"
    message = status.get("message", "")
    assert message.startswith("stigmer-exec: ") and "\n" not in message, f"denial message: {message!r}"
    for needle in needles:
        assert needle in message, f"{needle!r} not in the denial: {message!r}"
    for value in secrets_:
        assert value not in message, "a secret value is in the denial"
    return message


def expected_command(exec_id: str, server: str = SERVER_URL, options=()) -> list[str]:
    return [LAUNCHER, "run", "--execution-id", exec_id, "--server", server, *options, "--"]


def token_env(name: str, key: str = "token") -> dict:
    return {"name": "STIGMER_TOKEN", "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}


def assert_install_container(init: dict, image: str = INIT_IMAGE):
    """The init container that copies the launcher: first, locked down, nothing secret."""
    assert init["name"] == "stigmer-exec-install", init
    assert init["image"] == image, init
    assert init["command"] == ["/stigmer-dist/stigmer-exec", "install", "/stigmer"], init
    assert "args" not in init, init
    mounts = init.get("volumeMounts", [])
    assert [(m["name"], m["mountPath"]) for m in mounts] == [("stigmer-exec", "/stigmer")], mounts
    assert mounts[0].get("readOnly") is not True, "the install container must be able to write the volume"
    assert "env" not in init and "envFrom" not in init, f"the install container gets no environment: {init}"
    sc = init.get("securityContext", {})
    want = {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True, "privileged": False, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}
    for field, value in want.items():
        assert sc.get(field) == value and type(sc.get(field)) is type(value), \
            f"install container securityContext.{field} is {sc.get(field)!r}, expected {value!r}: {sc}"


def assert_injected(before: dict, after: dict, *, chosen: dict[str, list[str]], exec_id: str,
                    secret: tuple[str, str], server: str = SERVER_URL, options=(), image: str = INIT_IMAGE):
    """`after` is `before` injected: `chosen` maps each injected container to the argv it
    must now get as args; every other container and field is as it was."""
    meta_b, meta_a = before["metadata"], after["metadata"]
    assert meta_a.get("annotations") == {**(meta_b.get("annotations") or {}), INJECTED: VERSION}, \
        f"annotations: {meta_a.get('annotations')}"
    assert {k: v for k, v in meta_a.items() if k != "annotations"} == \
        {k: v for k, v in meta_b.items() if k != "annotations"}, "metadata changed beyond the marker"

    spec_b, spec_a = before["spec"], after["spec"]
    assert spec_a["volumes"] == (spec_b.get("volumes") or []) + [VOLUME], f"volumes: {spec_a['volumes']}"
    inits = spec_a["initContainers"]
    assert_install_container(inits[0], image)
    assert inits[1:] == (spec_b.get("initContainers") or []), "the pod's own init containers must follow, unchanged"

    assert [c["name"] for c in spec_a["containers"]] == [c["name"] for c in spec_b["containers"]]
    for cb, ca in zip(spec_b["containers"], spec_a["containers"]):
        name = cb["name"]
        if name not in chosen:
            assert ca == cb, f"container {name!r} was not chosen but changed"
            continue
        assert ca["command"] == expected_command(exec_id, server, options), f"{name}: command {ca['command']}"
        assert ca["args"] == chosen[name], f"{name}: args {ca['args']}, expected {chosen[name]}"
        assert ca["volumeMounts"] == (cb.get("volumeMounts") or []) + [MOUNT], f"{name}: mounts {ca['volumeMounts']}"
        assert ca["env"] == (cb.get("env") or []) + [token_env(*secret), COMPANION_ENV], f"{name}: env {ca['env']}"
        rest = ("command", "args", "volumeMounts", "env")
        assert {k: v for k, v in ca.items() if k not in rest} == {k: v for k, v in cb.items() if k not in rest}, \
            f"container {name!r} changed beyond command, args, mounts and env"
    changed = ("volumes", "initContainers", "containers")
    assert {k: v for k, v in spec_a.items() if k not in changed} == {k: v for k, v in spec_b.items() if k not in changed}, \
        "the pod spec changed beyond volumes, initContainers and containers"
    assert {k: v for k, v in after.items() if k not in ("metadata", "spec")} == \
        {k: v for k, v in before.items() if k not in ("metadata", "spec")}
    for c in spec_a["containers"] + spec_a["initContainers"]:
        for env in c.get("env", []):
            if env["name"].startswith("STIGMER_") and env != COMPANION_ENV:
                assert "value" not in env, f"{c['name']}: {env['name']} carries a value"


def settled(reg: Registry, path_substring: str, method: str = "GET") -> int:
    """How many `method` requests (pushes left out) the registry logged for `path_substring`,
    once a request of our own, sent now, shows in its access log (everything answered
    before it is there too)."""
    marker = f"/v2/settle-{secrets.token_hex(4)}/manifests/x"
    reg.request("GET", marker)
    wait_for(lambda: reg.requests(marker), 10, f"the registry's access log to show {marker}", interval=0.02)
    return reg.requests(path_substring, method=method)


class BlackHole:
    """A TCP listener on 127.0.0.1 that accepts connections and never says a word: a
    registry that hangs. `host` is "127.0.0.1:PORT"; `held` the connections accepted."""

    def __enter__(self) -> "BlackHole":
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.host = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self):
        while True:
            try:
                self.held.append(self.listener.accept()[0])
            except OSError:
                return

    def __exit__(self, *exc):
        self.listener.close()
        for s in self.held:
            s.close()


# --------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def wh_home(tmp_path_factory, bin_path) -> Path:
    return tmp_path_factory.mktemp("stigmer-home") / "home"


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(CA, certificate, key) for the webhook: 127.0.0.1 and localhost, from a fresh CA."""
    d = tmp_path_factory.mktemp("webhook-tls")
    ca = make_ca(d, "webhook-ca")
    cert, key = make_cert(d, ca, name="webhook")
    return ca[0], cert, key


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    with Registry(tmp_path_factory.mktemp("registry")) as r:
        yield r


class Images:
    """What the `images` fixture pushed: digests by name."""


@pytest.fixture(scope="module")
def images(reg) -> Images:
    out = Images()
    out.app = push_image(reg, "app", "1.0", entrypoint=APP_ENTRYPOINT, cmd=APP_CMD)
    for repo in ("cache", "conc", "cold", "inject"):  # one per test that counts registry requests
        push_image(reg, repo, "1.0", entrypoint=APP_ENTRYPOINT, cmd=APP_CMD)
    out.docker = push_image(reg, "docker", "1.0", entrypoint=DOCKER_ENTRYPOINT, cmd=DOCKER_CMD, format="v2s2")
    out.cmdonly = push_image(reg, "cmdonly", "1.0", cmd=CMD_ONLY)
    out.bare = push_image(reg, "bare", "1.0")  # neither Entrypoint nor Cmd
    arches = {}
    for repo, fmt in (("multi", "oci"), ("dlist", "v2s2")):
        for arch in ("amd64", "arm64"):
            arches[repo, arch] = push_image(reg, repo, arch, entrypoint=[f"/bin/app-{arch}"], cmd=[f"--arch={arch}"],
                                            arch=arch, format=fmt)
    out.multi = push_index(reg, "multi", "1.0", [(arches["multi", a], None, a, "linux") for a in ("arm64", "amd64")])
    out.dlist = push_index(reg, "dlist", "1.0", [(arches["dlist", a], None, a, "linux") for a in ("arm64", "amd64")],
                           media_type=DOCKER_LIST)
    # What the tests rely on, checked on the registry itself.
    assert reg.describe("app", "1.0")[0] == OCI_MANIFEST
    assert reg.describe("docker", "1.0")[0] == DOCKER_MANIFEST
    assert reg.describe("multi", "1.0")[0] == OCI_INDEX
    assert reg.describe("dlist", "1.0")[0] == DOCKER_LIST
    return out


@pytest.fixture(scope="module")
def the_secret() -> dict:
    """The token Secrets the fixtures' pods name, with random values: {(ns, name): {key: value}}."""
    def token():
        return "stgx_" + secrets.token_urlsafe(32)
    return {("agents", "agent-runner-token"): {"execution-token": token()},
            ("payments", "ledger-agent-token"): {"token": token()},
            ("team-a", "app-token"): {"token": token()}}


def secret_values(the_secret: dict) -> list[str]:
    """Every value of the Secret, plain and base64 (as a Secret's data holds it)."""
    out = []
    for data in the_secret.values():
        for value in data.values():
            out += [value, base64.b64encode(value.encode()).decode()]
    return out


@pytest.fixture(scope="module")
def kube(tmp_path_factory, reg, the_secret):
    """FakeKubeAPI with the registry's pull Secret in team-a, a wrong one in team-c, none in
    team-b, "locked" forbidden, and the token Secrets (which the webhook must never read)."""
    creds = pull_secret(dockerconfigjson(reg.host, reg.username, reg.password))
    wrong = pull_secret(dockerconfigjson(reg.host, reg.username, "wrong-" + secrets.token_hex(8)))
    served = {("team-a", PULL_SECRET): creds, ("team-c", PULL_SECRET): wrong}
    for (ns, name), data in the_secret.items():
        served[ns, name] = {"type": "Opaque",
                            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}
    with FakeKubeAPI(tmp_path_factory.mktemp("kubeapi"), served, forbidden={"locked"}) as api:
        yield api


def registry_args(reg, kube=None, *extra) -> list:
    args = ["--registry-ca", reg.ca, "--registry-timeout", "5s"]
    if kube is not None:
        args += ["--kube-api", kube.url, "--kube-token-file", kube.token_file, "--kube-ca", kube.ca]
    return args + list(extra)


@pytest.fixture(scope="module")
def webhook(wh_home, tls, reg, kube, images):
    """The webhook as deployed: a default server, the registry's CA, pull Secrets through
    the (fake) Kubernetes API, linux/amd64."""
    with Webhook(wh_home, tls, *registry_args(reg, kube, "--platform", "linux/amd64")) as w:
        yield w


@pytest.fixture(scope="module")
def arm_webhook(wh_home, tls, reg, kube, images):
    with Webhook(wh_home, tls, *registry_args(reg, kube, "--platform", "linux/arm64")) as w:
        yield w


@pytest.fixture(scope="module")
def bare_webhook(wh_home, tls):
    """No --server and --no-registry: pods must name their server and carry commands."""
    with Webhook(wh_home, tls, "--no-registry", server=None) as w:
        yield w


# --------------------------------------------------------------------------
# serving: HTTPS, health, bad bodies, stopping


def test_health_endpoints_answer_over_verified_https(webhook):
    for path in ("/healthz", "/readyz"):
        status, _, body = webhook.request("GET", path)
        assert status == 200, f"GET {path}: {status} {body!r}\n{webhook.describe()}"
    status, _, _ = webhook.request("GET", "/mutate")
    assert status == 405, f"GET /mutate answered {status}"
    status, _, _ = webhook.request("GET", "/nothing-here")
    assert status == 404, f"GET /nothing-here answered {status}"


def test_plain_http_is_refused(webhook):
    conn = http.client.HTTPConnection("127.0.0.1", webhook.port, timeout=10)
    try:
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            conn.request("POST", "/mutate", body=json.dumps(fixture_review("pod-with-command")).encode(),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            pytest.fail(f"plain HTTP got an HTTP answer: {resp.status}")
    finally:
        conn.close()
    status, _, _ = webhook.request("GET", "/healthz")
    assert status == 200, f"the webhook no longer serves HTTPS after a plain request:\n{webhook.describe()}"


@pytest.mark.parametrize("body, needle", [
    (b"not json at all", "not JSON"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",
                 "request": {"uid": "x"}}).encode(), "admission.k8s.io/v1"),
    (json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}).encode(), "admission.k8s.io/v1"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}).encode(), "uid"),
], ids=["not-json", "v1beta1", "a-pod", "no-uid"])
def test_a_body_that_is_not_an_admission_review_v1_gets_400(webhook, body, needle):
    status, headers, text = webhook.post(body)
    assert status == 400, f"answered {status}: {text!r}"
    assert headers.get("content-type", "").startswith("text/plain"), headers
    assert needle.encode() in text, f"{needle!r} not in {text!r}"


def test_an_oversized_body_is_refused(webhook):
    rev = fixture_review("pod-with-command")
    annotations_of(rev)["padding"] = "x" * (9 << 20)  # over the 8 MB limit
    status, _, text = webhook.post(rev)
    assert status == 413, f"answered {status}: {text[:200]!r}"
    assert webhook.request("GET", "/healthz")[0] == 200, webhook.describe()


def test_reviews_on_one_kept_alive_connection_are_all_answered(webhook):
    conn = webhook.connection()
    try:
        for name in ("pod-with-command", "pod-not-opted-in", "pod-with-command"):
            rev = fresh(fixture_review(name))
            resp = webhook.admit(rev, conn)
            assert ("patch" in resp) == (name == "pod-with-command"), resp
    finally:
        conn.close()


def test_a_rotated_serving_certificate_is_served_without_a_restart(wh_home, tmp_path):
    """cert-manager (or a Secret update) replaces the files under a running webhook: new
    connections get the new certificate; a pair caught half-written keeps the old one."""
    old_ca = make_ca(tmp_path, "old-ca")
    cert, key = make_cert(tmp_path, old_ca, name="serving")
    live_cert, live_key = tmp_path / "tls.crt", tmp_path / "tls.key"
    shutil.copy(cert, live_cert)
    shutil.copy(key, live_key)
    w = Webhook(wh_home, (old_ca[0], live_cert, live_key), "--no-registry").start()
    try:
        assert w.request("GET", "/healthz")[0] == 200
        new_ca = make_ca(tmp_path, "new-ca")
        new_cert, new_key = make_cert(tmp_path, new_ca, name="rotated")
        # Half-written: the new certificate with the old key does not load; the old pair
        # is still served (and said so).
        shutil.copy(new_cert, live_cert)
        assert w.request("GET", "/healthz")[0] == 200
        wait_for(lambda: b"does not load; serving the previous one" in w.stderr, 10, "the warning about the half pair")
        shutil.copy(new_key, live_key)
        w.ca = new_ca[0]
        assert w.request("GET", "/healthz")[0] == 200, "the rotated certificate is served"
        assert b"loaded the rotated serving certificate" in w.stderr, w.describe()
        w.ca = old_ca[0]
        with pytest.raises(ssl.SSLError):
            w.request("GET", "/healthz")
    finally:
        w.kill()


def test_sigterm_stops_the_webhook_gracefully(wh_home, tls):
    w = Webhook(wh_home, tls, "--no-registry").start()
    try:
        assert w.request("GET", "/healthz")[0] == 200
        code = w.stop(signal.SIGTERM)
        assert code == 0, w.describe()
        assert b"stigmer-exec: webhook stopped" in w.stderr, w.describe()
        with pytest.raises(ConnectionError):
            w.request("GET", "/healthz")
    finally:
        w.kill()


def test_sigterm_lets_an_answer_in_progress_finish(wh_home, tls):
    """The review waits on a registry that never answers (--registry-timeout 2s) when
    SIGTERM comes: it is still answered, then the webhook exits."""
    with BlackHole() as hole, Webhook(wh_home, tls, "--registry-timeout", "2s") as w:
        rev = image_review(hole.host, "app:1.0", pull_secrets=())
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(w.admit, rev)
            wait_for(lambda: hole.held, 10, "the webhook to connect to the registry")
            w.proc.send_signal(signal.SIGTERM)
            assert_denied(pending.result(timeout=10), f"{hole.host}/app:1.0")
        code = w.stop(timeout=10)
        assert code == 0 and b"stigmer-exec: webhook stopped" in w.stderr, w.describe()


def test_sigterm_with_an_idle_kept_alive_connection_still_stops(wh_home, tls):
    """The API server keeps its connections to webhooks open; a stop must not wait for it
    to close them (the pod would be SIGKILLed at the end of its grace period)."""
    w = Webhook(wh_home, tls, "--no-registry").start()
    conn = w.connection()
    try:
        w.admit(fresh(fixture_review("pod-with-command")), conn)  # the connection stays open, idle
        code = w.stop(signal.SIGTERM, timeout=5)
        assert code == 0, w.describe()
    finally:
        conn.close()
        w.kill()


# --------------------------------------------------------------------------
# the captured requests (admission/*.json)


FIXTURE_OUTCOMES = {
    "pod-with-command": "patch",
    "pod-without-command": "patch",
    "pod-hardened": "patch",
    "pod-not-opted-in": "untouched",
    "pod-already-injected": "untouched",
    "pod-missing-execution-id": "denied",
}


@pytest.mark.parametrize("name", sorted(FIXTURE_OUTCOMES))
def test_each_fixture_is_answered_with_its_uid(webhook, reg, images, name):
    rev = fixture_review(name, reg.host)
    resp = webhook.admit(rev)  # checks the uid is echoed
    outcome = FIXTURE_OUTCOMES[name]
    if outcome == "patch":
        after = mutated(rev, resp)
        assert after["metadata"]["annotations"][INJECTED] == VERSION
    elif outcome == "untouched":
        assert_untouched(resp)
    else:
        assert_denied(resp, "stigmer.ai/execution-id")


def assert_fixture_agent_injected(before: dict, after: dict):
    """pod-with-command.json's "agent" container, injected as its annotations ask."""
    agent = container(before, "agent")
    assert_injected(before, after, chosen={"agent": agent["command"] + agent["args"]},
                    exec_id="exec-01j9z3k7q2", secret=("agent-runner-token", "execution-token"),
                    options=["--init", "--mask-output"])


def test_pod_with_command_is_injected_into_the_chosen_container_only(webhook):
    rev = fixture_review("pod-with-command")
    before = pod_of(rev)
    after = mutated(rev, webhook.admit(rev))
    assert_fixture_agent_injected(before, after)
    assert pod_of(rev) == before == fixture_review("pod-with-command")["request"]["object"], \
        "applying the patch changed the request (test bug)"


def test_hardened_pod_opted_in_by_label_gets_seccomp_and_the_default_key(webhook):
    rev = fixture_review("pod-hardened")
    before = pod_of(rev)
    assert "stigmer.ai/inject" not in before["metadata"]["annotations"], "the fixture opts in by label only"
    after = mutated(rev, webhook.admit(rev))
    ledger = container(before, "ledger")
    assert_injected(before, after, chosen={"ledger": ledger["command"] + ledger["args"]},
                    exec_id="exec-ledger-2025-06-12-0001", secret=("ledger-agent-token", "token"),
                    options=["--seccomp", "strict"])
    # Its own hardening is kept, and the digest-pinned image stays pinned.
    assert container(after, "ledger")["securityContext"] == ledger["securityContext"]
    assert container(after, "ledger")["image"] == ledger["image"]


def test_no_token_value_reaches_a_patch_the_log_or_the_webhook(webhook, reg, kube, images, the_secret):
    values = secret_values(the_secret)
    token_paths = {f"/api/v1/namespaces/{ns}/secrets/{name}" for ns, name in the_secret}
    looks_like_a_token = re.compile(r"[A-Za-z0-9+=_-]{32,}")  # no '/': JSON Pointer paths are long
    for name in ("pod-with-command", "pod-hardened", "pod-without-command"):
        rev = fresh(fixture_review(name, reg.host))
        resp = webhook.admit(rev)
        ops, text = patch_ops(resp)
        for value in values:
            assert value not in text and value not in json.dumps(resp), f"{name}: a token value is in the answer"
        assert not looks_like_a_token.findall(text), \
            f"{name}: token-like strings in the patch: {looks_like_a_token.findall(text)}"
        after = mutated(rev, resp)
        for c in after["spec"]["containers"]:
            for env in c.get("env", []):
                if env["name"] == "STIGMER_TOKEN":
                    assert set(env) == {"name", "valueFrom"} and set(env["valueFrom"]) == {"secretKeyRef"}, env
    asked = {r["path"] for r in kube.requests}
    assert not asked & token_paths, f"the webhook read a token Secret: {sorted(asked & token_paths)}"
    err = webhook.stderr
    for value in values:
        assert value.encode() not in err, "a token value is on the webhook's stderr"
    assert reg.password.encode() not in err, "the registry password is on the webhook's stderr"


# --------------------------------------------------------------------------
# idempotency, what is left alone, and the annotations' options


def test_reinvocation_of_the_injected_pod_adds_nothing(webhook):
    rev = fixture_review("pod-with-command")
    after = mutated(rev, webhook.admit(rev))
    again = fresh(rev)
    again["request"]["object"] = after  # reinvocationPolicy: IfNeeded sends the pod as it now is
    assert_untouched(webhook.admit(again))


@pytest.mark.parametrize("keep", ["annotation", "init-container"])
def test_either_mark_of_an_earlier_injection_is_enough(webhook, keep):
    rev = fixture_review("pod-with-command")
    after = mutated(rev, webhook.admit(rev))
    if keep == "annotation":
        after["spec"]["initContainers"] = after["spec"]["initContainers"][1:]
    else:
        del after["metadata"]["annotations"][INJECTED]
    again = fresh(rev)
    again["request"]["object"] = after
    assert_untouched(webhook.admit(again))


@pytest.mark.parametrize("how", ["no-opt-in", "false", "True"])
def test_pods_that_did_not_opt_in_are_untouched(webhook, how):
    rev = fresh(fixture_review("pod-with-command"))
    if how == "no-opt-in":
        del annotations_of(rev)["stigmer.ai/inject"]
    else:
        annotations_of(rev)["stigmer.ai/inject"] = how  # only exactly "true" opts in
    assert_untouched(webhook.admit(rev))


def test_the_label_alone_opts_in(webhook):
    rev = fresh(fixture_review("pod-with-command"))
    del annotations_of(rev)["stigmer.ai/inject"]
    pod_of(rev)["metadata"]["labels"]["stigmer.ai/inject"] = "true"
    after = mutated(rev, webhook.admit(rev))
    assert container(after, "agent")["command"][:2] == [LAUNCHER, "run"]


def _deployment_of(pod: dict) -> dict:
    template = {"metadata": {k: v for k, v in pod["metadata"].items() if k in ("labels", "annotations")},
                "spec": pod["spec"]}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "agent-runner", "namespace": "agents",
                         "annotations": dict(pod["metadata"]["annotations"])},
            "spec": {"selector": {"matchLabels": pod["metadata"]["labels"]}, "template": template}}


@pytest.mark.parametrize("what", ["update", "delete", "deployment", "binding-subresource", "status-subresource"])
def test_other_requests_are_allowed_unchanged(webhook, what):
    """Each carries an opted-in pod (or object), so only the request's kind keeps it untouched."""
    pod = pod_of(fixture_review("pod-with-command"))
    if what == "update":
        rev = review(pod, operation="UPDATE", old=pod, name="agent-runner-x")
    elif what == "delete":
        rev = review(None, operation="DELETE", old=pod, name="agent-runner-x")
    elif what == "deployment":
        rev = review(_deployment_of(pod), kind=("apps", "v1", "Deployment"), resource=("apps", "v1", "deployments"))
    elif what == "binding-subresource":
        binding = {"apiVersion": "v1", "kind": "Binding",
                   "metadata": {"name": "agent-runner-x", "namespace": "agents",
                                "annotations": dict(pod["metadata"]["annotations"])},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}}
        rev = review(binding, kind=("", "v1", "Binding"), sub_resource="binding", name="agent-runner-x")
    else:
        rev = review(pod, operation="UPDATE", old=pod, sub_resource="status", name="agent-runner-x")
    assert_untouched(webhook.admit(rev))


def test_a_dry_run_is_answered_like_the_real_request(webhook):
    rev = fixture_review("pod-with-command")
    dry = fresh(rev, dryRun=True)
    assert mutated(dry, webhook.admit(dry)) == mutated(rev, webhook.admit(rev))


def test_existing_init_containers_run_after_the_install(webhook):
    rev = fresh(fixture_review("pod-with-command"))
    migrate = {"name": "migrate", "image": "ghcr.io/example/migrate:1", "command": ["/migrate", "up"],
               "resources": {}, "terminationMessagePath": "/dev/termination-log",
               "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}
    pod_of(rev)["spec"]["initContainers"] = [migrate]
    before = pod_of(rev)
    after = mutated(rev, webhook.admit(rev))
    assert_fixture_agent_injected(before, after)
    assert [c["name"] for c in after["spec"]["initContainers"]] == ["stigmer-exec-install", "migrate"]


def test_all_containers_by_default_and_command_annotations(bare_webhook):
    """Without stigmer.ai/containers every container is injected; one without a command
    takes it from stigmer.ai/command.NAME (or stigmer.ai/command), its args following."""
    for key in ("stigmer.ai/command.log-shipper", "stigmer.ai/command"):
        rev = fresh(fixture_review("pod-with-command"))
        annotations = annotations_of(rev)
        del annotations["stigmer.ai/containers"]
        annotations["stigmer.ai/server"] = "grpc://stigmer.example:7000"
        annotations[key] = '["/fluent-bit/bin/fluent-bit", "-q"]'
        before = pod_of(rev)
        after = mutated(rev, bare_webhook.admit(rev))
        agent = container(before, "agent")
        assert_injected(before, after, server="grpc://stigmer.example:7000", exec_id="exec-01j9z3k7q2",
                        secret=("agent-runner-token", "execution-token"), options=["--init", "--mask-output"],
                        chosen={"agent": agent["command"] + agent["args"],
                                "log-shipper": ["/fluent-bit/bin/fluent-bit", "-q",
                                                "--config=/fluent-bit/etc/fluent-bit.yaml"]})


@pytest.mark.parametrize("value, options", [
    ({"stigmer.ai/seccomp": "none"}, ["--init", "--mask-output", "--seccomp", "none"]),
    ({"stigmer.ai/seccomp": "/etc/stigmer/profile.json", "stigmer.ai/init": "false"},
     ["--mask-output", "--seccomp", "/etc/stigmer/profile.json"]),
    ({"stigmer.ai/mask-output": "false"}, ["--init"]),
])
def test_launcher_options_follow_the_annotations(webhook, value, options):
    rev = fresh(fixture_review("pod-with-command"))
    annotations_of(rev).update(value)
    after = mutated(rev, webhook.admit(rev))
    assert container(after, "agent")["command"] == expected_command("exec-01j9z3k7q2", options=options)


# --------------------------------------------------------------------------
# denials: one message naming what to fix, and never half a patch


def _set(key, value):
    def change(rev):
        annotations_of(rev)[key] = value
    return change


def _drop(key):
    def change(rev):
        annotations_of(rev).pop(key)
    return change


def _env(variable, container_name="agent"):
    def change(rev):
        container(pod_of(rev), container_name).setdefault("env", []).append({"name": variable, "value": "x"})
    return change


def _mount_at_stigmer(rev):
    pod = pod_of(rev)
    pod["spec"]["volumes"].append({"name": "tools", "emptyDir": {}})
    container(pod, "agent")["volumeMounts"].append({"name": "tools", "mountPath": "/stigmer"})


def _sidecar_mounts_the_injectors_volume(rev):
    """After mutation the mount would resolve to the injected volume, read-write."""
    container(pod_of(rev), "log-shipper").setdefault("volumeMounts", []).append({"name": "stigmer-exec", "mountPath": "/x"})


def _args_refer_to_the_token(rev):
    """Once the injector defines STIGMER_TOKEN, the kubelet would expand this into argv."""
    container(pod_of(rev), "agent")["args"].append("--key=$(STIGMER_TOKEN)")


def _env_from(rev):
    container(pod_of(rev), "agent")["envFrom"] = [{"configMapRef": {"name": "settings"}}]


def _volume_named_stigmer_exec(rev):
    pod_of(rev)["spec"]["volumes"].append({"name": "stigmer-exec", "emptyDir": {}})


DENIALS = {
    "no-execution-id": (_drop("stigmer.ai/execution-id"), ["stigmer.ai/execution-id"]),
    "bad-execution-id": (_set("stigmer.ai/execution-id", "-rm everything"), ["stigmer.ai/execution-id"]),
    "no-token-secret": (_drop("stigmer.ai/token-secret"), ["stigmer.ai/token-secret"]),
    "bad-token-secret": (_set("stigmer.ai/token-secret", "Agent_Token/key"), ["stigmer.ai/token-secret"]),
    "token-secret-three-parts": (_set("stigmer.ai/token-secret", "a/b/c"), ["stigmer.ai/token-secret"]),
    "bad-server": (_set("stigmer.ai/server", "https://stigmer.example"), ["stigmer.ai/server"]),
    "unknown-container": (_set("stigmer.ai/containers", "agent,sidecar"), ["stigmer.ai/containers", '"sidecar"']),
    "sets-STIGMER_TOKEN": (_env("STIGMER_TOKEN"), ['"agent"', "STIGMER_TOKEN"]),
    "sets-STIGMER_SERVER": (_env("STIGMER_SERVER"), ['"agent"', "STIGMER_SERVER"]),
    "sets-STIGMER_EXECUTION_ID": (_env("STIGMER_EXECUTION_ID"), ['"agent"', "STIGMER_EXECUTION_ID"]),
    "mount-at-stigmer": (_mount_at_stigmer, ['"agent"', "/stigmer"]),
    "volume-stigmer-exec": (_volume_named_stigmer_exec, ['"stigmer-exec"']),
    "command-not-json": (_set("stigmer.ai/command.agent", "/usr/local/bin/agent-runner --x"),
                         ["stigmer.ai/command.agent"]),
    "command-empty-list": (_set("stigmer.ai/command", "[]"), ["stigmer.ai/command"]),
    "bad-init": (_set("stigmer.ai/init", "yes"), ["stigmer.ai/init"]),
    "bad-mask-output": (_set("stigmer.ai/mask-output", "1"), ["stigmer.ai/mask-output"]),
    "bad-seccomp": (_set("stigmer.ai/seccomp", "profiles/strict.json"), ["stigmer.ai/seccomp"]),
    # From an attacker's review:
    "sets-STIGMER_EXEC_FULL": (_env("STIGMER_EXEC_FULL"), ['"agent"', "STIGMER_EXEC_FULL"]),
    "env-from": (_env_from, ['"agent"', "envFrom"]),
    "args-refer-to-the-token": (_args_refer_to_the_token, ['"agent"', "$(STIGMER_"]),
    "sidecar-mounts-the-volume": (_sidecar_mounts_the_injectors_volume, ['"log-shipper"', '"stigmer-exec"']),
    # A YAML `- - - …` would recurse once per level in the composer: the annotation is JSON
    # only, and JSON's reader stops at 512 levels; the webhook answers (and keeps running).
    "command-nested-deep-yaml": (_set("stigmer.ai/command", "- " * 100_000 + "x"), ["stigmer.ai/command"]),
    "command-nested-deep-json": (_set("stigmer.ai/command", "[" * 100_000 + "]" * 100_000), ["stigmer.ai/command"]),
}


@pytest.mark.parametrize("case", sorted(DENIALS))
def test_a_pod_that_cannot_be_injected_is_denied_whole(webhook, case):
    change, needles = DENIALS[case]
    rev = fresh(fixture_review("pod-with-command"))
    change(rev)
    assert_denied(webhook.admit(rev), *needles)


def test_stigmer_variables_in_a_container_not_chosen_are_fine(webhook):
    rev = fresh(fixture_review("pod-with-command"))
    _env("STIGMER_TOKEN", "log-shipper")(rev)
    after = mutated(rev, webhook.admit(rev))
    assert container(after, "log-shipper") == container(pod_of(rev), "log-shipper")


def test_without_a_server_the_pod_must_name_one(bare_webhook):
    rev = fresh(fixture_review("pod-with-command"))
    assert_denied(bare_webhook.admit(rev), "stigmer.ai/server", "--server")
    annotations_of(rev)["stigmer.ai/server"] = "grpcs://10.0.0.7:7443"
    after = mutated(rev, bare_webhook.admit(rev))
    assert container(after, "agent")["command"] == expected_command("exec-01j9z3k7q2", "grpcs://10.0.0.7:7443",
                                                                     ["--init", "--mask-output"])


def test_without_registry_lookups_a_pod_without_command_is_denied(bare_webhook, reg):
    rev = image_review(reg.host, "app:1.0")
    annotations_of(rev)["stigmer.ai/server"] = SERVER_URL
    assert_denied(bare_webhook.admit(rev), '"app"', "stigmer.ai/command")


# --------------------------------------------------------------------------
# commands from the registry, and its failures


def test_pod_without_command_gets_the_image_entrypoint_and_cmd(webhook, reg, kube, images):
    rev = image_review(reg.host, "app:1.0")
    before = pod_of(rev)
    seen = len(kube.requests)
    after = mutated(rev, webhook.admit(rev))
    assert_injected(before, after, chosen={"app": APP_ARGV}, exec_id="exec-image-only-1", secret=("app-token", "token"))
    secret_reads = [r for r in kube.requests[seen:] if r["path"] == f"/api/v1/namespaces/team-a/secrets/{PULL_SECRET}"]
    assert secret_reads, f"the pull Secret was not read from the request's namespace: {kube.requests[seen:]}"
    assert all(r["authorized"] for r in secret_reads), f"the Kubernetes API got no (right) Bearer token: {secret_reads}"


@pytest.mark.parametrize("image, args, argv", [
    ("app:1.0", ["--once", "$(POD_NAME)"], ["/bin/app", "--once", "$(POD_NAME)"]),  # args replace Cmd
    ("cmdonly:1.0", None, ["/bin/sh", "-c", "exec app --uid=$$(id -u)"]),
    ("cmdonly:1.0", ["-c", "true"], ["-c", "true"]),
    ("docker:1.0", None, DOCKER_ENTRYPOINT + DOCKER_CMD),
], ids=["args-replace-cmd", "cmd-only", "cmd-only-replaced", "docker-schema-2"])
def test_kubernetes_rules_for_image_commands(webhook, reg, images, image, args, argv):
    rev = image_review(reg.host, image, args=args)
    after = mutated(rev, webhook.admit(rev))
    assert container(after, "app")["args"] == argv


def test_an_image_with_neither_entrypoint_nor_cmd_is_denied(webhook, reg, images):
    assert_denied(webhook.admit(image_review(reg.host, "bare:1.0")), '"app"', "stigmer.ai/command")


@pytest.mark.parametrize("form", ["digest", "tag-and-digest"])
def test_an_image_pinned_by_digest_is_read_by_digest(webhook, reg, images, form):
    ref = f"app@{images.app}" if form == "digest" else f"app:1.0@{images.app}"
    rev = image_review(reg.host, ref)
    after = mutated(rev, webhook.admit(rev))
    assert container(after, "app")["args"] == APP_ARGV
    assert container(after, "app")["image"] == f"{reg.host}/{ref}", "the pinned image must stay as it was"
    assert settled(reg, f"/v2/app/manifests/{images.app}"), "the manifest was not asked for by its digest"


@pytest.mark.parametrize("repo", ["multi", "dlist"], ids=["oci-index", "docker-manifest-list"])
@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_a_multi_platform_image_resolves_to_the_platform(request, reg, images, repo, arch):
    hook = request.getfixturevalue("webhook" if arch == "amd64" else "arm_webhook")
    rev = image_review(reg.host, f"{repo}:1.0")
    after = mutated(rev, hook.admit(rev))
    assert container(after, "app")["args"] == [f"/bin/app-{arch}", f"--arch={arch}"]


def test_a_second_admission_of_an_image_is_answered_from_the_cache(webhook, reg, images):
    first = image_review(reg.host, "cache:1.0")
    assert container(mutated(first, webhook.admit(first)), "app")["args"] == APP_ARGV
    n = settled(reg, "/v2/cache/")
    assert n >= 2, f"expected the manifest and the config to be fetched, the registry saw {n} requests"
    second = image_review(reg.host, "cache:1.0", exec_id="exec-image-only-2")
    after = mutated(second, webhook.admit(second))
    assert container(after, "app")["args"] == APP_ARGV
    assert container(after, "app")["command"] == expected_command("exec-image-only-2")
    assert settled(reg, "/v2/cache/") == n, "the second admission asked the registry again"


@pytest.mark.parametrize("namespace, needles", [
    ("team-b", [f"team-b/{PULL_SECRET}", "does not exist"]),
    ("locked", [f"locked/{PULL_SECRET}", "get on secrets"]),
], ids=["missing", "forbidden"])
def test_a_pull_secret_that_cannot_be_read_denies_naming_it(webhook, reg, images, namespace, needles):
    resp = webhook.admit(image_review(reg.host, "app:1.0", namespace=namespace))
    assert_denied(resp, "cannot read the command of image", *needles, "stigmer.ai/command", secrets_=[reg.password])


def test_the_cache_never_answers_a_pod_without_the_credentials(webhook, reg, images):
    """A pod that may not pull a private image must not learn its command from another
    pod's lookup: the cache is per credentials."""
    allowed = image_review(reg.host, "app:1.0")
    assert container(mutated(allowed, webhook.admit(allowed)), "app")["args"] == APP_ARGV  # now cached
    for namespace in ("team-b", "team-c"):  # no pull Secret; a wrong one
        assert_denied(webhook.admit(image_review(reg.host, "app:1.0", namespace=namespace)),
                      "cannot read the command of image")
    assert_denied(webhook.admit(image_review(reg.host, "app:1.0", namespace="team-a", pull_secrets=())),
                  "wants credentials")


def test_the_pull_secret_is_read_in_the_namespace_of_the_request(webhook, reg, kube, images):
    """A pod from generateName carries no metadata.namespace; the request's namespace counts."""
    rev = image_review(reg.host, "app:1.0")
    del pod_of(rev)["metadata"]["namespace"]
    seen = len(kube.requests)
    assert container(mutated(rev, webhook.admit(rev)), "app")["args"] == APP_ARGV
    paths = [r["path"] for r in kube.requests[seen:]]
    assert paths == [f"/api/v1/namespaces/team-a/secrets/{PULL_SECRET}"], paths


def test_a_registry_with_an_untrusted_certificate_is_denied_naming_registry_ca(wh_home, tls, reg, kube, images):
    with Webhook(wh_home, tls, "--kube-api", kube.url, "--kube-token-file", kube.token_file, "--kube-ca", kube.ca) as w:
        resp = w.admit(image_review(reg.host, "app:1.0"))
    assert_denied(resp, "cannot read the command of image", "--registry-ca", "stigmer.ai/command",
                  secrets_=[reg.password])


def test_wrong_registry_credentials_are_denied(webhook, reg, images):
    resp = webhook.admit(image_review(reg.host, "app:1.0", namespace="team-c"))
    assert_denied(resp, "cannot read the command of image", "refused the credentials", "stigmer.ai/command")


def test_an_image_missing_from_the_registry_is_denied(webhook, reg, images):
    resp = webhook.admit(image_review(reg.host, "app:2.0-missing"))
    assert_denied(resp, f"{reg.host}/app:2.0-missing", "404", "stigmer.ai/command")


def test_registry_credentials_from_registry_auth_when_the_pod_has_no_pull_secret(wh_home, tls, reg, images, tmp_path):
    auth = tmp_path / "config.json"
    auth.write_text(json.dumps(dockerconfigjson(reg.host, reg.username, reg.password)))
    with Webhook(wh_home, tls, *registry_args(reg), "--registry-auth", auth) as w:
        rev = image_review(reg.host, "app:1.0", namespace="team-b", pull_secrets=())
        assert container(mutated(rev, w.admit(rev)), "app")["args"] == APP_ARGV
        assert reg.password.encode() not in w.stderr


def test_a_registry_that_refuses_connections_is_denied_at_once(webhook):
    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    t0 = time.monotonic()
    resp = webhook.admit(image_review(host, "app:1.0", pull_secrets=()))
    assert_denied(resp, f"{host}/app:1.0", "cannot reach", "stigmer.ai/command")
    assert time.monotonic() - t0 < 3, "a refused connection took seconds to deny"


def test_a_registry_that_never_answers_is_denied_within_the_timeout(wh_home, tls):
    with BlackHole() as hole, Webhook(wh_home, tls, "--registry-timeout", "1s") as w:
        t0 = time.monotonic()
        resp = w.admit(image_review(hole.host, "app:1.0", pull_secrets=()))
        elapsed = time.monotonic() - t0
        assert hole.held, "the webhook never connected to the black hole"
    assert_denied(resp, f"{hole.host}/app:1.0", "stigmer.ai/command")
    assert elapsed < 4, f"denied after {elapsed:.1f} s with --registry-timeout 1s"


# --------------------------------------------------------------------------
# concurrency


def _admit_together(hook: Webhook, reviews: list[dict]) -> list[dict]:
    """Every review on its own connection, all sent at once (a barrier), answers in order."""
    barrier = threading.Barrier(len(reviews))

    def one(rev):
        conn = hook.connection()
        try:
            conn.connect()
            barrier.wait(timeout=20)
            return hook.admit(rev, conn)
        finally:
            conn.close()

    with ThreadPoolExecutor(len(reviews)) as pool:
        return list(pool.map(one, reviews))


def _assert_each_injected(reviews, answers, argv):
    for i, (rev, resp) in enumerate(zip(reviews, answers)):
        after = mutated(rev, resp)
        app = container(after, "app")
        assert app["command"] == expected_command(f"exec-conc-{i}"), f"review {i}: {app['command']}"
        assert app["args"] == argv, f"review {i}: {app['args']}"


def test_twenty_concurrent_admissions_of_a_cached_image(webhook, reg, images):
    warm = image_review(reg.host, "conc:1.0")
    assert container(mutated(warm, webhook.admit(warm)), "app")["args"] == APP_ARGV
    n = settled(reg, "/v2/conc/")
    reviews = [image_review(reg.host, "conc:1.0", exec_id=f"exec-conc-{i}") for i in range(20)]
    answers = _admit_together(webhook, reviews)  # admit() checks each uid
    _assert_each_injected(reviews, answers, APP_ARGV)
    assert settled(reg, "/v2/conc/") == n, "a cached image was asked of the registry again"


def test_twenty_concurrent_admissions_of_an_uncached_image_share_one_lookup(webhook, reg, images):
    reviews = [image_review(reg.host, "cold:1.0", exec_id=f"exec-conc-{i}") for i in range(20)]
    answers = _admit_together(webhook, reviews)
    _assert_each_injected(reviews, answers, APP_ARGV)
    n = settled(reg, "/v2/cold/blobs/")
    assert n == 1, f"concurrent lookups of one image did not share one request: {n} config fetches"


# --------------------------------------------------------------------------
# inject -f


def inject(home, *args, input=None):
    return run(["inject", *map(str, args), "--image", INIT_IMAGE, "--server", SERVER_URL], home, input=input)


def _template_pod(name: str, *, exec_id: str, command=("/app/server", "--port", "8080"), annotations=None,
                  image: str | None = None) -> dict:
    """An opted-in pod template: one container `name`, its token Secret `<name>-token`."""
    ann = {"stigmer.ai/inject": "true", "stigmer.ai/execution-id": exec_id, "stigmer.ai/token-secret": f"{name}-token"}
    ann.update(annotations or {})
    c = {"name": name, "image": image or f"ghcr.io/example/{name}:1.0", "ports": [{"containerPort": 8080}]}
    if command is not None:
        c["command"] = list(command)
    return {"metadata": {"labels": {"app": name}, "annotations": ann}, "spec": {"containers": [c]}}


def _pod(name: str, **template) -> dict:
    """A Pod manifest holding `_template_pod(name, **template)`."""
    tpl = _template_pod(name, **template)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, **tpl["metadata"]}, "spec": tpl["spec"]}


# Strings a YAML writer must quote to keep them strings (and in one piece).
TRICKY_STRINGS = [
    "1.0", "yes", "y", "N", "on", "Off", "True", "null", "Null", "~", "", " ", "0755", "08", "0x1F", "0b101",
    "+1", "-1", ".5", ".inf", "-.inf", ".nan", "1_000", "1:20", "2024-01-01", "2001-12-14t21:59:43.10-05:00",
    "line 1\nline 2\n", "a\r\nb", "tab\there", "a: b", "x:", ":x", "# not a comment", "a #b", " x ", "trailing ",
    "-", "- x", "? x", "?", "*star", "&anchor", "!tag", "@at", "`tick", "%pct", "{brace", "[bracket", "|", "> x",
    "'single", '"double', "back\\slash", "<<", "=", "unicode é ✓", "\x01ctl", "\x1b[31m", "\x7f", "\u2028ls",
]


def _manifests() -> list[dict]:
    """A mixed manifest: kinds to inject, kinds to pass, and strings a YAML writer could break."""
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
         "data": {**{f"s{i}": v for i, v in enumerate(TRICKY_STRINGS)}, "on": "a key YAML 1.1 reads as true"}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"},
         "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                  "template": _template_pod("web", exec_id="exec-web", annotations={"stigmer.ai/init": "true"})}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
         "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}},
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
         "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": _template_pod("nightly",
                                                                                               exec_id="exec-nightly")}}}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain", "labels": {"stigmer.ai/inject": "false"}},
         "spec": {"containers": [{"name": "plain", "image": "nginx:1.27"}]}},
    ]


def test_inject_yaml_round_trip(wh_home, tmp_path):
    docs = _manifests()
    src = tmp_path / "app.yaml"
    src.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    proc = ok(inject(wh_home, "-f", src, "--offline"))
    assert proc.stderr == b"", describe(proc)
    out = list(yaml.safe_load_all(proc.stdout.decode()))
    assert len(out) == len(docs), f"{len(docs)} documents became {len(out)}:\n{describe(proc)}"
    for i in (0, 2, 4):
        assert out[i] == docs[i], f"{docs[i]['kind']} changed:\n{describe(proc)}"
    models = {"Deployment": "V1Deployment", "CronJob": "V1CronJob", "ConfigMap": "V1ConfigMap",
              "Service": "V1Service", "Pod": "V1Pod"}
    for doc in out:
        k8s_round_trip(doc, models[doc["kind"]], f"the {doc['kind']} inject printed")
    deployment, cronjob = out[1], out[3]
    assert {k: v for k, v in deployment["spec"].items() if k != "template"} == \
        {k: v for k, v in docs[1]["spec"].items() if k != "template"}
    assert_injected(docs[1]["spec"]["template"], deployment["spec"]["template"], exec_id="exec-web",
                    secret=("web-token", "token"), options=["--init"],
                    chosen={"web": ["/app/server", "--port", "8080"]})
    job_before = docs[3]["spec"]["jobTemplate"]["spec"]["template"]
    job_after = cronjob["spec"]["jobTemplate"]["spec"]["template"]
    assert_injected(job_before, job_after, exec_id="exec-nightly", secret=("nightly-token", "token"),
                    chosen={"nightly": ["/app/server", "--port", "8080"]})
    assert cronjob["spec"]["schedule"] == "0 3 * * *"


def test_inject_json_prints_what_the_webhook_patches(wh_home, tmp_path, webhook):
    rev = fixture_review("pod-with-command")
    src = tmp_path / "pod.json"
    src.write_text(json.dumps(pod_of(rev), indent=2))
    proc = ok(inject(wh_home, "-f", src, "--offline"))
    text = proc.stdout.decode()
    assert text.lstrip().startswith("{"), f"JSON in, not JSON out:\n{describe(proc)}"
    printed = json.loads(text)
    k8s_round_trip(printed, "V1Pod", "the pod inject printed")
    assert printed == mutated(rev, webhook.admit(rev)), "inject and the webhook disagree on the same pod"


def test_inject_passes_other_kinds_through(wh_home, tmp_path):
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
        # Looks like a workload with an opted-in pod template, but is not a kind inject knows.
        {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
         "spec": {"template": _template_pod("web", exec_id="exec-web")}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "web-token"}, "type": "Opaque",
         "stringData": {"token": "not-really-a-token"}},
    ]
    src = tmp_path / "other.yaml"
    src.write_text(yaml.safe_dump_all(docs))
    proc = ok(inject(wh_home, "-f", src, "--offline"))
    assert list(yaml.safe_load_all(proc.stdout.decode())) == docs, describe(proc)


def test_inject_is_all_or_nothing(wh_home, tmp_path):
    good = _pod("good", exec_id="e1")
    broken = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "broken"},
              "spec": {"selector": {"matchLabels": {"app": "broken"}}, "template": _template_pod("broken", exec_id="x")}}
    del broken["spec"]["template"]["metadata"]["annotations"]["stigmer.ai/execution-id"]
    src = tmp_path / "mixed.yaml"
    src.write_text(yaml.safe_dump_all([good, broken]))
    proc = inject(wh_home, "-f", src, "--offline")
    one_line_error(proc, DATAERR, f"stigmer-exec: {src}: Deployment broken: ", "stigmer.ai/execution-id")


def test_inject_offline_needs_a_command(wh_home, tmp_path):
    pod = _pod("imageonly", exec_id="e2", command=None)
    src = tmp_path / "imageonly.yaml"
    src.write_text(yaml.safe_dump(pod))
    proc = inject(wh_home, "-f", src, "--offline")
    one_line_error(proc, DATAERR, f"{src}: Pod imageonly: ", '"imageonly"', "--offline", "stigmer.ai/command")
    # With the annotation, offline is enough.
    pod["metadata"]["annotations"]["stigmer.ai/command.imageonly"] = '["/srv/run"]'
    src.write_text(yaml.safe_dump(pod))
    proc = ok(inject(wh_home, "-f", src, "--offline"))
    printed = yaml.safe_load(proc.stdout)
    assert container(printed, "imageonly")["args"] == ["/srv/run"], describe(proc)


def test_inject_reads_the_image_config_with_registry_auth(wh_home, tmp_path, reg, images):
    auth = tmp_path / "config.json"
    auth.write_text(json.dumps(dockerconfigjson(reg.host, reg.username, reg.password)))
    pod = _pod("fromreg", exec_id="e3", command=None, image=f"{reg.host}/inject:1.0")
    src = tmp_path / "fromreg.yaml"
    src.write_text(yaml.safe_dump(pod))
    proc = ok(inject(wh_home, "-f", src, "--registry-auth", auth, "--registry-ca", reg.ca))
    printed = yaml.safe_load(proc.stdout)
    k8s_round_trip(printed, "V1Pod", "the pod inject printed")
    assert container(printed, "fromreg")["args"] == APP_ARGV, describe(proc)
    assert reg.password.encode() not in proc.stdout + proc.stderr
    # Without the credentials the registry refuses, and nothing is printed.
    proc = inject(wh_home, "-f", src, "--registry-ca", reg.ca)
    one_line_error(proc, DATAERR, "Pod fromreg: ", "cannot read the command of image", "stigmer.ai/command")


@pytest.mark.parametrize("lists, argv", [
    ({"args": []}, APP_ARGV),
    ({"command": [], "args": ["--once"]}, ["/bin/app", "--once"]),
    ({"command": [], "args": []}, APP_ARGV),
], ids=["args-empty", "command-empty", "both-empty"])
def test_inject_treats_empty_command_and_args_as_unset(wh_home, tmp_path, reg, images, lists, argv):
    """As the kubelet and the runtime do (`len(command) == 0`: the image's Entrypoint, and
    `len(args) == 0`: its Cmd); charts often render `args: []`."""
    auth = tmp_path / "config.json"
    auth.write_text(json.dumps(dockerconfigjson(reg.host, reg.username, reg.password)))
    pod = _pod("lists", exec_id="e5", command=None, image=f"{reg.host}/app:1.0")
    container(pod, "lists").update(lists)
    src = tmp_path / "lists.yaml"
    src.write_text(yaml.safe_dump(pod))
    proc = ok(inject(wh_home, "-f", src, "--registry-auth", auth, "--registry-ca", reg.ca))
    printed = yaml.safe_load(proc.stdout)
    got = container(printed, "lists")
    assert got["args"] == argv, f"with {lists} the launcher runs {got['args']} instead of {argv} (exit {proc.returncode})"


@pytest.mark.parametrize("form", ["yaml", "json"])
def test_inject_reads_stdin(wh_home, form):
    pod = _pod("piped", exec_id="e4")
    text = yaml.safe_dump(pod) if form == "yaml" else json.dumps(pod)
    proc = ok(inject(wh_home, "-f", "-", "--offline", input=text.encode()))
    out = proc.stdout.decode()
    printed = json.loads(out) if form == "json" else yaml.safe_load(out)
    if form == "yaml":
        assert not out.lstrip().startswith("{"), f"YAML in, JSON out:\n{describe(proc)}"
    assert_injected(pod, printed, exec_id="e4", secret=("piped-token", "token"),
                    chosen={"piped": ["/app/server", "--port", "8080"]})
    # A failure names stdin.
    del pod["metadata"]["annotations"]["stigmer.ai/token-secret"]
    proc = inject(wh_home, "-f", "-", "--offline", input=yaml.safe_dump(pod).encode())
    one_line_error(proc, DATAERR, "stigmer-exec: stdin: Pod piped: ", "stigmer.ai/token-secret")


# --------------------------------------------------------------------------
# token (Bearer) auth: the registry sends clients to a token server for a JWT


TOKEN_READER = "reader"  # may pull "private"; "outsider" is a known user who may not


class TokenRegistry:
    """What `token_reg` started: ts (the TokenServer), registry (trusting its tokens), tap
    (a RegistryTap in front of the registry: pods name tap.host), passwords (user → password)."""


@pytest.fixture(scope="module")
def token_reg(tmp_path_factory, reg, kube):
    """A token server and a registry with token auth, both with certificates from `reg`'s CA
    (so --registry-ca reg.ca covers them), holding the app image as "private" (pull for
    TOKEN_READER only) and "public" (pull for anyone, anonymous included); pull Secrets
    for tap.host in tok-reader (the reader), tok-wrong (a wrong password) and tok-outsider
    (a user with no grant on "private"); none in tok-none."""
    base = tmp_path_factory.mktemp("token-registry")
    passwords = {TOKEN_READER: "pw-" + secrets.token_hex(8), "outsider": "pw-" + secrets.token_hex(8)}
    with TokenServer(base / "token-server", users=passwords, readers={"private": {TOKEN_READER}},
                     public={"public"}, ca=reg.ca_pair) as ts, \
            Registry(base / "registry", auth="token", token_server=ts) as registry, RegistryTap(registry) as tap:
        for repo in ("private", "public"):
            push_image(registry, repo, "1.0", entrypoint=APP_ENTRYPOINT, cmd=APP_CMD)
        out = TokenRegistry()
        out.ts, out.registry, out.tap, out.passwords = ts, registry, tap, passwords
        added = {
            ("tok-reader", PULL_SECRET): pull_secret(dockerconfigjson(tap.host, TOKEN_READER, passwords[TOKEN_READER])),
            ("tok-wrong", PULL_SECRET): pull_secret(dockerconfigjson(tap.host, TOKEN_READER, "wrong-" + secrets.token_hex(8))),
            ("tok-outsider", PULL_SECRET): pull_secret(dockerconfigjson(tap.host, "outsider", passwords["outsider"])),
        }
        kube.secrets.update(added)
        try:
            yield out
        finally:
            for key in added:
                kube.secrets.pop(key, None)


@pytest.fixture(scope="module")
def token_webhook(wh_home, tls, reg, kube, token_reg):
    """The webhook for the token registry; --cache-ttl 0, so every admission asks it."""
    with Webhook(wh_home, tls, *registry_args(reg, kube, "--cache-ttl", "0")) as w:
        yield w


def token_requests(t: TokenRegistry, seen: int) -> list[tuple]:
    """The token server's requests after the first `seen`: (method, scopes, service,
    scheme, user, authenticated, status) each."""
    return [(r["method"], r["scopes"], r["service"], r["scheme"], r["user"], r["authenticated"], r["status"])
            for r in t.ts.requests[seen:]]


def tap_requests(t: TokenRegistry, seen: int) -> list[tuple]:
    """What reached the registry after the first `seen` requests: (method, path,
    Authorization as sent, status) each."""
    return [(r["method"], r["path"], r["authorization"], r["status"]) for r in t.tap.requests[seen:]]


def assert_no_basic_on_the_registry(t: TokenRegistry):
    """The registry itself never got credentials: nothing but Bearer tokens the token
    server issued (the fixture's pushes go around the tap)."""
    for r in t.tap.requests:
        auth = r["authorization"]
        assert auth is None or (auth.startswith("Bearer ") and auth[7:] in t.ts.issued), \
            f"the registry was sent {auth.split(' ')[0]!r} credentials, not a token from the token server: {r['path']}"


def _lookup_with_token(t: TokenRegistry, repo: str, token: str) -> list[tuple]:
    """The three requests one lookup of `repo`:1.0 makes: the manifest without credentials
    (401 and a Bearer challenge), again with the token, then the config blob with it."""
    config = json.loads(t.registry.manifest(repo, "1.0")[1])["config"]["digest"]
    return [("GET", f"/v2/{repo}/manifests/1.0", None, 401),
            ("GET", f"/v2/{repo}/manifests/1.0", f"Bearer {token}", 200),
            ("GET", f"/v2/{repo}/blobs/{config}", f"Bearer {token}", 200)]


def test_token_auth_with_a_pull_secret_gets_the_image_command(token_webhook, token_reg):
    t = token_reg
    ts_seen, tap_seen = len(t.ts.requests), len(t.tap.requests)
    rev = image_review(t.tap.host, "private:1.0", namespace="tok-reader")
    before = pod_of(rev)
    after = mutated(rev, token_webhook.admit(rev))
    assert_injected(before, after, chosen={"app": APP_ARGV}, exec_id="exec-image-only-1", secret=("app-token", "token"))
    assert token_requests(t, ts_seen) == [("GET", ["repository:private:pull"], t.ts.service, "basic", TOKEN_READER, True, 200)]
    asked = t.ts.requests[ts_seen]
    assert asked["path"].startswith("/token?") and asked["granted"] == \
        [{"type": "repository", "name": "private", "actions": ["pull"]}], asked
    assert t.ts.issued[asked["token"]]["sub"] == TOKEN_READER
    assert tap_requests(t, tap_seen) == _lookup_with_token(t, "private", asked["token"])
    assert_no_basic_on_the_registry(t)
    password = t.passwords[TOKEN_READER]
    basic = base64.b64encode(f"{TOKEN_READER}:{password}".encode())
    for value in (password.encode(), basic, asked["token"].encode()):
        assert value not in token_webhook.stderr, "a credential or the token is on the webhook's stderr"


def test_token_auth_anonymous_pull_of_a_public_repository(token_webhook, token_reg):
    t = token_reg
    ts_seen, tap_seen = len(t.ts.requests), len(t.tap.requests)
    rev = image_review(t.tap.host, "public:1.0", namespace="tok-none", pull_secrets=())
    assert container(mutated(rev, token_webhook.admit(rev)), "app")["args"] == APP_ARGV
    assert token_requests(t, ts_seen) == [("GET", ["repository:public:pull"], t.ts.service, None, None, False, 200)]
    asked = t.ts.requests[ts_seen]
    assert not asked["authorization"], "an anonymous token request carried an Authorization header"
    claims = t.ts.issued[asked["token"]]
    assert claims["sub"] == "" and claims["access"] == [{"type": "repository", "name": "public", "actions": ["pull"]}]
    assert tap_requests(t, tap_seen) == _lookup_with_token(t, "public", asked["token"])
    assert_no_basic_on_the_registry(t)


@pytest.mark.parametrize("refusal", ["empty", "401"], ids=["token-granting-nothing", "token-refused"])
def test_token_auth_private_repository_without_credentials_is_denied(token_webhook, token_reg, refusal):
    """Docker Hub and distribution answer an anonymous request for a private repository
    with a token that grants nothing (the registry then answers 401 insufficient_scope);
    other token servers answer 401 themselves. Either way the denial names the pull secret."""
    t = token_reg
    ts_seen, tap_seen = len(t.ts.requests), len(t.tap.requests)
    t.ts.anonymous_refusal = refusal
    try:
        resp = token_webhook.admit(image_review(t.tap.host, "private:1.0", namespace="tok-none", pull_secrets=()))
    finally:
        t.ts.anonymous_refusal = "empty"
    assert_denied(resp, "cannot read the command of image", f"{t.tap.host}/private:1.0", "imagePullSecret",
                  "stigmer.ai/command")
    status = 200 if refusal == "empty" else 401
    assert token_requests(t, ts_seen) == [("GET", ["repository:private:pull"], t.ts.service, None, None, False, status)]
    sent = tap_requests(t, tap_seen)
    assert sent[0] == ("GET", "/v2/private/manifests/1.0", None, 401), sent
    if refusal == "empty":
        assert sent[1:] == [("GET", "/v2/private/manifests/1.0", f"Bearer {t.ts.requests[ts_seen]['token']}", 401)], sent
    else:
        assert sent[1:] == [], f"the registry was asked again after the token server refused: {sent}"


@pytest.mark.parametrize("namespace, status, needle", [
    ("tok-wrong", 401, "refused the credentials for private (its token server"),
    ("tok-outsider", 200, "refused the credentials for private (401)"),
], ids=["wrong-password", "user-without-access"])
def test_token_auth_wrong_credentials_are_denied(token_webhook, token_reg, kube, namespace, status, needle):
    """A wrong password: the token server answers 401. A user the token server knows but
    who may not pull: a token without the scope, and the registry answers 401."""
    t = token_reg
    ts_seen, tap_seen = len(t.ts.requests), len(t.tap.requests)
    resp = token_webhook.admit(image_review(t.tap.host, "private:1.0", namespace=namespace))
    sent_password = json.loads(base64.b64decode(kube.secrets[namespace, PULL_SECRET]["data"][".dockerconfigjson"]))
    sent_password = next(iter(sent_password["auths"].values()))["password"]
    assert_denied(resp, "cannot read the command of image", f"{t.tap.host}/private:1.0", needle, "stigmer.ai/command",
                  secrets_=[sent_password])
    user = TOKEN_READER if namespace == "tok-wrong" else "outsider"
    assert token_requests(t, ts_seen) == [("GET", ["repository:private:pull"], t.ts.service, "basic", user,
                                           status == 200, status)]
    sent = tap_requests(t, tap_seen)
    assert sent[0] == ("GET", "/v2/private/manifests/1.0", None, 401), sent
    assert len(sent) == (1 if status == 401 else 2), sent
    assert_no_basic_on_the_registry(t)


def test_token_auth_answer_with_access_token_only(token_webhook, token_reg):
    """An OAuth2-style answer carries `access_token` and no `token`."""
    t = token_reg
    ts_seen = len(t.ts.requests)
    t.ts.token_field = "access_token"
    try:
        rev = image_review(t.tap.host, "private:1.0", namespace="tok-reader")
        assert container(mutated(rev, token_webhook.admit(rev)), "app")["args"] == APP_ARGV
    finally:
        t.ts.token_field = "both"
    assert [r["status"] for r in t.ts.requests[ts_seen:]] == [200]


def test_token_realm_that_is_not_https_gets_no_credentials(token_webhook, token_reg, kube, tmp_path):
    """A registry whose challenge names an http:// realm: the webhook refuses to send the
    pull secret's credentials there in the clear (and sends nothing at all)."""
    t = token_reg
    with BlackHole() as hole, TokenServer(tmp_path / "plain-ts", users=t.passwords, readers={"private": {TOKEN_READER}},
                                          ca=t.ts.ca_pair) as plain:
        plain.realm = f"http://{hole.host}/token"
        with Registry(tmp_path / "plain-registry", auth="token", token_server=plain) as r:
            key = ("tok-plain", PULL_SECRET)
            kube.secrets[key] = pull_secret(dockerconfigjson(r.host, TOKEN_READER, t.passwords[TOKEN_READER]))
            try:
                resp = token_webhook.admit(image_review(r.host, "private:1.0", namespace="tok-plain"))
            finally:
                kube.secrets.pop(key, None)
        assert not hole.held, "the webhook connected to an http:// token realm"
    assert_denied(resp, f"{r.host}/private:1.0", "not https", secrets_=[t.passwords[TOKEN_READER]])
    assert plain.requests == []


def test_inject_reads_the_image_config_through_a_token_server(wh_home, tmp_path, token_reg):
    t = token_reg
    ts_seen = len(t.ts.requests)
    auth = tmp_path / "config.json"
    auth.write_text(json.dumps(dockerconfigjson(t.tap.host, TOKEN_READER, t.passwords[TOKEN_READER])))
    pod = _pod("viatoken", exec_id="e6", command=None, image=f"{t.tap.host}/private:1.0")
    src = tmp_path / "viatoken.yaml"
    src.write_text(yaml.safe_dump(pod))
    proc = ok(inject(wh_home, "-f", src, "--registry-auth", auth, "--registry-ca", t.registry.ca))
    assert container(yaml.safe_load(proc.stdout), "viatoken")["args"] == APP_ARGV, describe(proc)
    assert token_requests(t, ts_seen) == [("GET", ["repository:private:pull"], t.ts.service, "basic", TOKEN_READER, True, 200)]
    assert_no_basic_on_the_registry(t)
    assert t.passwords[TOKEN_READER].encode() not in proc.stdout + proc.stderr
