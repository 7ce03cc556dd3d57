"""Black-box tests of an injected pod *run*: `stigmer-exec inject -f` mutates a hardened
Pod, and integration/kubelet.py runs the result as the kubelet would — the init container
and the rewritten app container as OCI bundles under crun, sharing the `stigmer-exec`
emptyDir (a tmpfs), the execution token from a Secret through `secretKeyRef`, Docker's
default seccomp profile for RuntimeDefault. The launcher fetches its context from a
`stigmer-exec serve` on 127.0.0.1 (the harness shares the host's network).

Per module, built once: the bundle of scripts/k8s-bundle.sh (the fully static launcher
of `make launcher`, which the init container runs from /stigmer-dist, and the debug
companion, patched to load its libraries from /stigmer/lib); an init image holding only
that bundle (no shell, no libc: `stigmer-exec install` copies it); an app image (static
busybox); a server with an execution context holding a plain value and a secret canary.

Checked: the values arrive (the child prints the canary's SHA-256, never the value); no
file in the volume, the rootfs overlays or the container logs holds the canary or the
token, nor does the injected manifest; the child never sees the token (its environment,
the launcher's /proc/1/environ); `stigmer.ai/init` makes the launcher PID 1, which
forwards `crun kill` signals, passes exit statuses through and reaps orphans; the
hardening holds inside the hardened container (no new privileges, no capabilities, the
launcher's seccomp filter stacked on RuntimeDefault); a wrong token ends the app with 77
and one line before the child runs; a missing Secret key stops the pod as
CreateContainerConfigError; TERM while the launcher is still fetching (PID 1) ends the
container with 143.

Needs root, crun, patchelf and overlayfs (skipped otherwise), and a current
.build-static/release/stigmer-exec (`make launcher`; skipped when it has no `install`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from helpers import (
    HIDDEN_MSG,
    REPO,
    Server,
    companion_path,
    created_token,
    key_init,
    new_canary,
    ok,
    remote_create,
    run,
    sha256,
)
from kubelet import DOCKER_SECCOMP, Image, busybox_rootfs, run_pod, start_pod

STATIC_LAUNCHER = REPO / ".build-static" / "release" / "stigmer-exec"
BUNDLE_SCRIPT = REPO / "scripts" / "k8s-bundle.sh"
EXEC_ID = "kube-pod-1"
OTHER_EXEC_ID = "kube-pod-other"
SECRET_NAME = "exec-token"
VOLUME = "stigmer-exec"  # the emptyDir the injector adds
INIT_CONTAINER = "stigmer-exec-install"
INIT_IMAGE = "registry.example/stigmer-exec-init:test"
APP_IMAGE = "registry.example/app:test"
EXTRA_APPLETS = ("cut", "sed", "tr")  # beyond kubelet.BUSYBOX_APPLETS

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs containers with crun: needs root")


# --------------------------------------------------------------------------
# module fixtures: the bundle, the images, the server and its context


@pytest.fixture(scope="module")
def static_launcher() -> Path:
    """The fully static launcher the init container runs: it must know `install`."""
    if not STATIC_LAUNCHER.is_file():
        pytest.skip(f"{STATIC_LAUNCHER} is missing: build it with `make launcher`")
    help_text = run(["install", "--help"], None, binary=STATIC_LAUNCHER, env={"PATH": "/usr/bin:/bin"}, timeout=30)
    if b"USAGE: stigmer-exec install" not in help_text.stdout:
        pytest.skip(f"{STATIC_LAUNCHER} is stale (it has no `install` subcommand): rebuild it with `make launcher`")
    return STATIC_LAUNCHER


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, static_launcher, bin_path) -> Path:
    """scripts/k8s-bundle.sh of the static launcher and the debug companion."""
    for tool in ("crun", "patchelf"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    if not DOCKER_SECCOMP.is_file():
        pytest.skip(f"Docker's default seccomp profile is missing: {DOCKER_SECCOMP}")
    companion = companion_path()
    assert companion.is_file(), f"the companion {companion} is missing: build it"
    out = tmp_path_factory.mktemp("bundle") / "stigmer-dist"
    built = subprocess.run([str(BUNDLE_SCRIPT), str(static_launcher), str(companion), str(out)],
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, f"k8s-bundle.sh failed:\n{built.stdout}\n{built.stderr}"
    assert "stigmer-exec: static" in built.stdout, built.stdout
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory, bundle) -> dict[str, Image]:
    """The init image: only the bundle at /stigmer-dist and the mount points (no shell, no
    libc, no /etc/passwd). The app image: static busybox, with an Entrypoint and Cmd."""
    base = tmp_path_factory.mktemp("images")
    init = base / "init"
    for d in ("proc", "dev", "sys", "etc", "tmp"):
        (init / d).mkdir(parents=True)
    shutil.copytree(bundle, init / "stigmer-dist", symlinks=True)
    app = busybox_rootfs(base / "app")
    for applet in EXTRA_APPLETS:
        if not (app / "bin" / applet).exists():
            (app / "bin" / applet).symlink_to("busybox")
    return {
        INIT_IMAGE: Image(init),
        APP_IMAGE: Image(app, entrypoint=["/bin/sh", "-c"], cmd=["echo image-cmd"]),
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory, bin_path):
    """`stigmer-exec serve` on 127.0.0.1 with a key and an empty store."""
    tmp = tmp_path_factory.mktemp("kube-server")
    home = tmp / "server"
    key_init(home)
    srv = Server(home, tmp).start()
    yield srv
    srv.kill()


@pytest.fixture(scope="module")
def context(server, tmp_path_factory) -> dict:
    """EXEC_ID's context (CTX_PLAIN=plain-value, the secret CTX_SECRET=canary) and its
    execution token; and another execution's token (valid, but not for EXEC_ID)."""
    operator = tmp_path_factory.mktemp("kube-operator") / "home"
    canary = new_canary("kube-canary")
    token = created_token(remote_create(operator, server.url, EXEC_ID, "--env", "CTX_PLAIN=plain-value",
                                        "--secret", "CTX_SECRET", secret_stdin=canary))
    other = created_token(remote_create(operator, server.url, OTHER_EXEC_ID, "--env", "OTHER=1"))
    return {"canary": canary, "token": token, "other_token": other}


# --------------------------------------------------------------------------
# making and running pods


def hardened_pod(name: str, script: str, annotations: dict[str, str] | None = None) -> dict:
    """A Pod that opts in, locked down as the restricted Pod Security Standard asks; its
    one container `app` runs `sh -c SCRIPT` with FOO=bar declared."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "annotations": {
                "stigmer.ai/inject": "true",
                "stigmer.ai/execution-id": EXEC_ID,
                "stigmer.ai/token-secret": SECRET_NAME,
                **(annotations or {}),
            },
        },
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "app",
                "image": APP_IMAGE,
                "command": ["/bin/sh", "-c", script],
                "env": [{"name": "FOO", "value": "bar"}],
                "securityContext": {
                    "readOnlyRootFilesystem": True,
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                },
            }],
        },
    }


def inject(pod: dict, server_url: str, tmp_path: Path) -> tuple[dict, str]:
    """`stigmer-exec inject -f POD --image INIT_IMAGE --server URL --offline`: (the
    injected pod, parsed; its YAML text)."""
    src = tmp_path / f"{pod['metadata']['name']}.yaml"
    src.write_text(yaml.safe_dump(pod, sort_keys=False))
    proc = ok(run(["inject", "-f", src, "--image", INIT_IMAGE, "--server", server_url, "--offline"],
                  tmp_path / "inject-home"))
    text = proc.stdout.decode()
    injected = yaml.safe_load(text)
    assert [c["name"] for c in injected["spec"]["initContainers"]] == [INIT_CONTAINER], text
    assert injected["spec"]["initContainers"][0]["command"] == ["/stigmer-dist/stigmer-exec", "install", "/stigmer"], text
    return injected, text


def secrets_with(token: str) -> dict[str, dict[str, str]]:
    return {SECRET_NAME: {"token": token}}


def run_script(script, images, server, context, tmp_path, annotations=None, *, token=None, on_start=None,
               timeout=30.0):
    """Inject a hardened pod running `script`, run it to the end; the finished Pod."""
    pod, _ = inject(hardened_pod("app-pod", script, annotations), server.url, tmp_path)
    return run_pod(pod, images, secrets_with(token or context["token"]), tmp_path / "pod",
                   timeout=timeout, on_start=on_start)


def assert_init_completed(pod):
    st = pod.status(INIT_CONTAINER)
    assert (st.state, st.exit_code) == ("terminated", 0), pod.describe()
    assert re.search(r"stigmer-exec: installed \d+ files in /stigmer", pod.stderr(INIT_CONTAINER)), pod.describe()


def files_holding(root: Path, needles: dict[str, bytes]) -> list[str]:
    """'PATH: NAME' for every regular file under `root` holding a needle's bytes."""
    found = []
    if not root.exists():
        return found
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{path}: {name}" for name, needle in needles.items() if needle in data]
    return found


def file_holding(path: Path, needles: dict[str, bytes]) -> list[str]:
    """'PATH: NAME' for each needle in the file at `path` (if it exists)."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    return [f"{path}: {name}" for name, needle in needles.items() if needle in data]


def lines_with(prefix: str, text: str) -> list[str]:
    return [line[len(prefix):] for line in text.splitlines() if line.startswith(prefix)]


def one(prefix: str, text: str) -> str:
    found = lines_with(prefix, text)
    assert len(found) == 1, f"expected one line {prefix!r} in:\n{text}"
    return found[0]


def env_names(environ: bytes) -> list[str]:
    """The names in a /proc/PID/environ block."""
    return [entry.split(b"=", 1)[0].decode(errors="replace") for entry in environ.split(b"\0") if entry]


def host_children(pid: int) -> list[int]:
    """The pids (host view) of `pid`'s children, from every thread's children file."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


# --------------------------------------------------------------------------
# the main pod: run once, observed while running and after, by tests 1, 2, 3 and 5

# The child reports, then waits for TERM. Not one `$(` in it: the kubelet would try to
# expand `$(…)` against the container's env (command substitution uses backquotes).
MAIN_SCRIPT = r"""
echo "plain=$CTX_PLAIN"
echo "foo=$FOO"
printf %s "$CTX_SECRET" | sha256sum | sed 's/ .*//; s/^/secret-sha256=/'
env | cut -d= -f1 | sed 's/^/env-name=/'
grep -E '^(Uid|NoNewPrivs|Seccomp|Seccomp_filters|CapInh|CapPrm|CapEff|CapBnd|CapAmb):' /proc/self/status | tr '\t' ' ' | sed 's/^/status-/'
echo "pid1-comm=`cat /proc/1/comm`"
echo "sh-ppid=$PPID"
if cat /proc/1/environ >/dev/null 2>&1; then
  echo "pid1-environ-token-values=`tr '\0' '\n' </proc/1/environ | grep -c '^STIGMER_TOKEN=.'`"
else
  echo "pid1-environ=unreadable"
fi
if head -c 0 /proc/1/mem 2>/dev/null; then echo "pid1-mem=opened"; else echo "pid1-mem=refused"; fi
if touch /stigmer/x 2>/dev/null; then echo "bundle=writable"; else echo "bundle=read-only"; fi
trap 'echo got-term; exit 0' TERM
echo ready
while :; do sleep 0.1; done
"""


@pytest.fixture(scope="module")
def main_run(images, server, context, tmp_path_factory) -> dict:
    """The main pod (`stigmer.ai/init: "true"`), observed from the host while it runs: the
    volume's files and their contents, the launcher's and the child's /proc/PID/environ
    and cmdline; then TERM, and the overlays and logs once it ended."""
    tmp = tmp_path_factory.mktemp("main-pod")
    token, canary = context["token"].encode(), context["canary"]
    needles = {"token": token, "canary": canary}
    pod_doc, text = inject(hardened_pod("main-pod", MAIN_SCRIPT, {"stigmer.ai/init": "true"}), server.url, tmp)
    seen: dict = {"manifest": text, "pod_doc": pod_doc}
    with start_pod(pod_doc, images, secrets_with(context["token"]), tmp / "pod", timeout=30) as pod:
        pod.wait_output("app", "ready\n")
        volume = pod.volume(VOLUME)
        seen["volume_files"] = sorted(str(p.relative_to(volume)) for p in volume.rglob("*") if p.is_file())
        seen["volume_hits"] = files_holding(volume, needles)
        # Facts only, never the bytes: a failing assertion prints this fixture's value.
        launcher = pod.pid("app")
        cmdline, environ = (Path(f"/proc/{launcher}/{f}").read_bytes() for f in ("cmdline", "environ"))
        seen["launcher_cmdline_has_token"] = token in cmdline
        seen["launcher_environ_has_token"] = token in environ
        seen["launcher_environ_names"] = env_names(environ)
        seen["children"] = children = host_children(launcher)
        environs = [Path(f"/proc/{c}/environ").read_bytes() for c in children]
        seen["child_environ_has_token"] = [token in e for e in environs]
        seen["child_environ_names"] = [env_names(e) for e in environs]
        seen["exit_code"] = pod.stop("app", grace=10)  # TERM, and KILL if that is not enough
    seen["pod"] = pod
    seen["stdout"], seen["stderr"] = pod.stdout("app"), pod.stderr("app")
    # What the containers wrote to their root filesystems (the overlays' upper layers),
    # their logs, and the volume directory (a tmpfs, unmounted by now).
    containers = tmp / "pod" / "containers"
    # A control: the scan does see the token where it is, in the OCI config the harness
    # wrote from the Secret (as containerd keeps one under /run/containerd).
    seen["control_hits"] = file_holding(containers / "app" / "config.json", needles)
    seen["disk_hits"] = (files_holding(tmp / "pod" / "volumes", needles)
                         + [hit for d in containers.iterdir() for hit in files_holding(d / "upper", needles)]
                         + [hit for d in containers.iterdir() for f in ("stdout", "stderr")
                            for hit in file_holding(d / f, needles)])
    return seen


# --------------------------------------------------------------------------
# 1. the values arrive


def test_values_arrive_and_install_ran_without_a_shell(main_run, context, images, bundle):
    pod, out = main_run["pod"], main_run["stdout"]
    assert main_run["exit_code"] == 0, pod.describe()
    assert one("plain=", out) == "plain-value", pod.describe()
    assert one("foo=", out) == "bar", pod.describe()  # the container's own env is kept
    assert one("secret-sha256=", out) == sha256(context["canary"]), pod.describe()
    assert "got-term" in out, pod.describe()
    assert context["canary"].decode() not in out + main_run["stderr"], "the canary reached the container's log"

    # The init container ran `stigmer-exec install` from an image with no shell at all,
    # and copied the whole bundle: N files, the same N in the volume.
    assert not (images[INIT_IMAGE].rootfs / "bin").exists()
    assert_init_completed(pod)
    bundled = sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file())
    installed = int(re.search(r"installed (\d+) files", pod.stderr(INIT_CONTAINER)).group(1))
    assert installed == len(bundled), (pod.stderr(INIT_CONTAINER), bundled)
    assert main_run["volume_files"] == bundled, main_run["volume_files"]
    # The app container mounts the volume read-only.
    assert one("bundle=", out) == "read-only", pod.describe()


# --------------------------------------------------------------------------
# 2. nothing on disk, nothing in the manifest


def test_no_value_on_disk_or_in_the_manifest(main_run, context):
    assert main_run["volume_hits"] == [], "a value in the emptyDir while the pod ran"
    assert main_run["disk_hits"] == [], "a value in an overlay, the volume or a container log"
    assert [hit.rsplit(": ", 1)[1] for hit in main_run["control_hits"]] == ["token"], main_run["control_hits"]
    manifest = main_run["manifest"]
    assert context["token"] not in manifest and context["canary"].decode() not in manifest
    # Only the Secret's name, through a secretKeyRef.
    app = main_run["pod_doc"]["spec"]["containers"][0]
    token_env = [e for e in app["env"] if e["name"] == "STIGMER_TOKEN"]
    assert token_env == [{"name": "STIGMER_TOKEN",
                          "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": "token"}}}], app["env"]
    # Plain values: the pod's own FOO, and the bundled companion's path the injector names.
    assert all("value" not in e or e in ({"name": "FOO", "value": "bar"},
                                        {"name": "STIGMER_EXEC_FULL", "value": "/stigmer/stigmer-exec-full"})
               for e in app["env"]), app["env"]


# --------------------------------------------------------------------------
# 3. the child never sees the token


def test_the_child_never_sees_the_token(main_run, context):
    pod, out = main_run["pod"], main_run["stdout"]
    names = lines_with("env-name=", out)
    assert "CTX_PLAIN" in names and "CTX_SECRET" in names and "FOO" in names, pod.describe()
    assert not [n for n in names if n.startswith("STIGMER_")], names
    # From inside: the launcher's environment is unreadable, or holds no token value.
    pid1 = lines_with("pid1-environ", out)
    assert pid1 in (["=unreadable"], ["-token-values=0"]), pod.describe()
    # From the host (root): the launcher wiped the value it read; the child never had it.
    assert not main_run["launcher_environ_has_token"], "the token is in the launcher's /proc/PID/environ"
    assert "STIGMER_TOKEN" in main_run["launcher_environ_names"]  # it was there: the value is wiped in place
    assert not main_run["launcher_cmdline_has_token"]
    assert len(main_run["children"]) == 1, "the launcher (--init) should have one child, the shell"
    assert main_run["child_environ_has_token"] == [False], "the token is in the child's /proc/PID/environ"
    for names in main_run["child_environ_names"]:
        assert "CTX_SECRET" in names and not [n for n in names if n.startswith("STIGMER_")], names


# --------------------------------------------------------------------------
# 4. stigmer.ai/init: PID 1, signals, exit statuses, orphans

TERM_SCRIPT = r"""
echo "pid1-comm=`cat /proc/1/comm`"
echo "sh-ppid=$PPID"
trap 'echo got-term; exit 42' TERM
echo ready
while :; do sleep 0.1; done
"""


def test_init_is_pid1_and_forwards_term(images, server, context, tmp_path):
    pod_doc, _ = inject(hardened_pod("term-pod", TERM_SCRIPT, {"stigmer.ai/init": "true"}), server.url, tmp_path)
    with start_pod(pod_doc, images, secrets_with(context["token"]), tmp_path / "pod", timeout=30) as pod:
        out = pod.wait_output("app", "ready\n")
        assert one("pid1-comm=", out) == "stigmer-exec", pod.describe()
        assert one("sh-ppid=", out) == "1", pod.describe()
        launcher = pod.pid("app")
        assert Path(f"/proc/{launcher}/exe").resolve().name == "stigmer-exec"
        pod.kill("app", "TERM")
        pod.wait(15)
    assert pod.exit_code("app") == 42, pod.describe()
    assert "got-term" in pod.stdout("app"), pod.describe()


def test_init_child_ignoring_term_is_killed_by_kill(images, server, context, tmp_path):
    script = "trap '' TERM\necho ready\nwhile :; do sleep 0.1; done\n"
    pod_doc, _ = inject(hardened_pod("ignore-pod", script, {"stigmer.ai/init": "true"}), server.url, tmp_path)
    with start_pod(pod_doc, images, secrets_with(context["token"]), tmp_path / "pod", timeout=30) as pod:
        pod.wait_output("app", "ready\n")
        pod.kill("app", "TERM")
        with pytest.raises(TimeoutError):
            pod.wait(1.0)  # the child ignores TERM, so the launcher keeps running
        assert pod.status("app").state == "running", pod.describe()
        pod.kill("app", "KILL")
        pod.wait(15)
    assert pod.exit_code("app") == 137, pod.describe()


@pytest.mark.parametrize(("init", "script", "code"), [
    ("true", "exit 7", 7),
    ("false", "exit 7", 7),
    # `$$$$` is `$$` once the kubelet has expanded the args: the shell kills itself.
    ("true", "kill -KILL $$$$", 137),
], ids=["init-exit-7", "exec-exit-7", "init-child-killed"])
def test_exit_status_passes_through(images, server, context, tmp_path, init, script, code):
    pod = run_script(f"echo child-ran; {script}", images, server, context, tmp_path, {"stigmer.ai/init": init})
    assert_init_completed(pod)
    assert "child-ran" in pod.stdout("app"), pod.describe()
    assert pod.exit_code("app") == code, pod.describe()
    assert pod.phase == "Failed", pod.describe()


@pytest.mark.parametrize("init", ["true", "false"], ids=["init", "exec"])
def test_term_during_the_fetch_ends_the_container(images, server, context, tmp_path, init):
    """The server is unreachable (the launcher retries for --fetch-timeout, 30 s): TERM
    must still end the container promptly (143), without the child ever running. As PID 1
    the launcher would otherwise have the kernel drop the signal (no handler: found by
    this test), and a deleted pod would wait out its grace period for SIGKILL."""
    pod_doc, _ = inject(hardened_pod("fetching-pod", "echo CHILD-RAN", {"stigmer.ai/init": init}),
                        "grpc://127.0.0.1:1", tmp_path)
    with start_pod(pod_doc, images, secrets_with(context["token"]), tmp_path / "pod", timeout=30) as pod:
        time.sleep(0.5)  # the launcher is retrying by now
        assert pod.status("app").state == "running", pod.describe()
        pod.kill("app", "TERM")
        try:
            pod.wait(2.0)
        except TimeoutError:
            pod.kill("app", "KILL")
            pod.wait(10)
            raise AssertionError(f"still running 2 s after TERM; ended by KILL\n{pod.describe()}") from None
    assert pod.exit_code("app") == 128 + 15 and "CHILD-RAN" not in pod.stdout("app"), pod.describe()


# tini's scenario: an intermediate process starts a grandchild and exits at once, so the
# grandchild is re-parented to PID 1 (the launcher); when it exits, only PID 1 can reap it.
ORPHAN_SCRIPT = r"""
echo "pid1-comm=`cat /proc/1/comm`"
o=`sh -c 'sleep 0.5 >/dev/null 2>&1 & echo $!'`
echo "orphan=$o"
echo "orphan-ppid=`grep PPid /proc/$o/status | tr -dc 0-9`"
sleep 1.5
if [ -e /proc/$o/stat ]; then echo "orphan-after=`cut -d' ' -f3 /proc/$o/stat`"; else echo "orphan-after=gone"; fi
ps -o pid,stat,comm | sed 's/^/ps=/'
"""


def test_init_reaps_orphans(images, server, context, tmp_path):
    pod = run_script(ORPHAN_SCRIPT, images, server, context, tmp_path, {"stigmer.ai/init": "true"})
    out = pod.stdout("app")
    assert pod.exit_code("app") == 0, pod.describe()
    assert one("pid1-comm=", out) == "stigmer-exec", pod.describe()
    assert one("orphan-ppid=", out) == "1", pod.describe()  # re-parented to the launcher
    assert one("orphan-after=", out) == "gone", pod.describe()  # not a zombie: reaped
    zombies = [line for line in lines_with("ps=", out) if re.match(r"\s*\d+\s+Z", line)]
    assert zombies == [], pod.describe()


# --------------------------------------------------------------------------
# 5. the hardening holds inside the hardened container


def test_hardening_inside_the_container(main_run):
    pod, out = main_run["pod"], main_run["stdout"]
    status = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in lines_with("status-", out)}
    assert status.get("Uid", "").split() == ["65532"] * 4, status
    assert status.get("NoNewPrivs") == "1", status
    assert status.get("Seccomp") == "2", status
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert status.get(cap) == "0000000000000000", (cap, status)
    # The child cannot open the launcher's memory (ptrace access to PID 1 is refused).
    assert one("pid1-mem=", out) == "refused", pod.describe()
    # The launcher's default filter stacks on the runtime's RuntimeDefault one.
    if "Seccomp_filters" in status:  # Linux >= 5.9
        assert int(status["Seccomp_filters"]) >= 2, status


# --------------------------------------------------------------------------
# 6. failure paths, whole


def test_wrong_token_fails_before_the_child(images, server, context, tmp_path):
    """Another execution's token in the Secret: 77 and one line, and the child never ran."""
    pod = run_script("echo CHILD-RAN", images, server, context, tmp_path, {"stigmer.ai/init": "true"},
                     token=context["other_token"])
    assert_init_completed(pod)
    assert pod.exit_code("app") == 77, pod.describe()
    assert "CHILD-RAN" not in pod.stdout("app") and pod.stdout("app") == "", pod.describe()
    err = pod.stderr("app")
    assert len(err.splitlines()) == 1 and err.endswith("\n"), pod.describe()
    assert HIDDEN_MSG in err, pod.describe()
    assert context["other_token"] not in err and context["token"] not in err, "a token in the container's log"


@pytest.mark.parametrize(("secrets", "message"), [
    ({SECRET_NAME: {"other-key": "x"}}, f"couldn't find key token in Secret default/{SECRET_NAME}"),
    ({}, f'secret "{SECRET_NAME}" not found'),
], ids=["missing-key", "missing-secret"])
def test_missing_secret_is_a_config_error(images, server, context, tmp_path, secrets, message):
    pod_doc, _ = inject(hardened_pod("nosecret-pod", "echo CHILD-RAN", {"stigmer.ai/init": "true"}),
                        server.url, tmp_path)
    pod = run_pod(pod_doc, images, secrets, tmp_path / "pod", timeout=30)
    assert_init_completed(pod)  # the init container needs no Secret
    st = pod.status("app")
    assert (st.state, st.reason) == ("waiting", "CreateContainerConfigError"), pod.describe()
    assert st.message == message, pod.describe()
    assert pod.phase == "Pending" and pod.stdout("app") == "", pod.describe()
