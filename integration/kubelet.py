"""What the kubelet does, for tests: run a Pod spec (a dict, as the webhook mutated it)
with a real OCI runtime, crun, as root. No cluster, no registry: an image is a directory.

Modelled:
- initContainers run in order, each to completion; one that fails (or cannot be created)
  stops the pod (restartPolicy Never) and no app container starts. Then every entry of
  `containers` starts, concurrently.
- Each container is an OCI bundle in workdir/containers/<name>/ (config.json, stdout,
  stderr, crun.log). Its rootfs is an overlay of the image directory and a per-container
  upper layer (writes never reach the image; workdir must be able to hold an overlay
  upper dir, as ext4 and tmpfs can), read-only with readOnlyRootFilesystem.
- command/args against the image's Entrypoint/Cmd; `$(VAR)` expansion of env values and
  command/args against the container's declared env; env = image env + default PATH +
  HOSTNAME + container env (`value`, or `valueFrom.secretKeyRef` from `secrets`: a missing
  secret or key is CreateContainerConfigError unless `optional`).
- securityContext, pod level as default, container overriding: runAsUser/runAsGroup (the
  gid from the image's /etc/passwd when only the uid is set, like containerd),
  runAsNonRoot (the kubelet's check and messages), supplementalGroups/fsGroup as extra
  gids (no chown), capabilities add/drop on the containerd default set, noNewPrivileges
  only for allowPrivilegeEscalation: false (as the kubelet), seccompProfile
  RuntimeDefault (Docker's default profile via `docker_to_oci_seccomp`) or Unconfined.
- emptyDir volumes only, shared by the pod's containers: workdir/volumes/<name> is a
  0777 directory, and for `medium: Memory` a tmpfs mounted there without options (so its
  root is 1777, as the kubelet mounts it). volumeMounts are bind mounts, `ro` if readOnly.
- Namespaces pid, ipc, uts (hostname = the pod name) and mount, but no network
  namespace: containers share the host's network, so 127.0.0.1 reaches a test's server.
  /etc/hosts (localhost and the pod name), /etc/hostname and /etc/resolv.conf (the
  host's) are bind-mounted as the CRI runtime does, read-only with a read-only root.
- A container crun cannot start (e.g. no such executable) ends with reason StartError and
  crun's message; exit codes are crun's (128+N for a signal).

Not modelled: restarts, probes, sidecar init containers (restartPolicy Always),
resources and cgroup limits, other volume types, subPath, envFrom, configMapKeyRef,
fieldRef, service env vars, image pulls and image USER names, user namespaces,
AppArmor/SELinux, /dev/termination-log, a pod-wide IPC namespace, termination grace
(`stop` is TERM, wait, KILL).

Departures, for these tests: an unset seccompProfile means RuntimeDefault (the kubelet's
default is Unconfined unless --seccomp-default). crun runs with --cgroup-manager=disabled,
so containers stay in the caller's cgroup. On hosts with "hybrid" cgroups and a
controller in the v2 hierarchy, crun refuses every container, even with the manager
disabled ("cgroups in hybrid mode not supported, drop all controllers from cgroupv2"):
there crun runs in a private mount namespace where that v2 controller list reads empty.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

DOCKER_SECCOMP = Path(__file__).resolve().parents[2] / "shared" / "data" / "docker-default-seccomp.json"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_CAPS = ["CAP_" + c for c in (  # containerd's (and Docker's) default set
    "CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP SETPCAP "
    "NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE").split()]
ALL_CAPS = ["CAP_" + c for c in (
    "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE "
    "NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO "
    "SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME "
    "SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG "
    "WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE").split()]
BUSYBOX_APPLETS = ("sh cat env sleep sha256sum ls id echo kill ps true false "
                   "cp mkdir rm touch test grep head wc stat chmod").split()
MASKED_PATHS = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                "/sys/firmware", "/sys/devices/virtual/powercap"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
BASE_MOUNTS = [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
]


@dataclass(frozen=True)
class Image:
    """An image: its unpacked rootfs and the config a pod run uses. `user` is the image's
    USER, numeric: "uid" or "uid:gid" ("" is root)."""
    rootfs: Path
    entrypoint: Sequence[str] | None = None
    cmd: Sequence[str] | None = None
    env: Sequence[str] = ()
    workdir: str = "/"
    user: str = ""


def busybox_rootfs(root: Path) -> Path:
    """A minimal image rootfs at `root`: static busybox with applet links, /etc/passwd and
    /etc/group with root and 65532 "nonroot", /tmp (1777) and the mount points."""
    root = Path(root)
    for d in ("bin", "etc", "proc", "dev", "sys", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    for applet in BUSYBOX_APPLETS:
        if not (root / "bin" / applet).is_symlink():
            (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         "nonroot:x:65532:65532:nonroot:/home/nonroot:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nnonroot:x:65532:\n")
    return root


def docker_to_oci_seccomp(profile: dict, caps: Sequence[str], arch: str = "x86_64") -> dict:
    """Docker's seccomp profile → the OCI spec's linux.seccomp, as Docker does it for a
    container with bounding set `caps` on `arch`: the archMap entry gives the
    architectures; a rule is kept or dropped by its includes/excludes on caps, arches (Go
    names: amd64, x32, x86, …) and minKernel (compared with this kernel)."""
    goarch, scmp = {"x86_64": ("amd64", "SCMP_ARCH_X86_64"), "aarch64": ("arm64", "SCMP_ARCH_AARCH64")}[arch]
    version = lambda v: tuple(int(x) for x in v.split("-")[0].split(".")[:2])  # noqa: E731
    kernel = version(os.uname().release)
    arches = next(([scmp, *a.get("subArchitectures", [])] for a in profile.get("archMap") or []
                   if a["architecture"] == scmp), [])
    syscalls = []
    for rule in profile.get("syscalls", []):
        exc, inc = rule.get("excludes") or {}, rule.get("includes") or {}
        if (goarch in exc.get("arches", []) or any(c in caps for c in exc.get("caps", []))
                or ("minKernel" in exc and kernel >= version(exc["minKernel"]))):
            continue
        if ((inc.get("arches") and goarch not in inc["arches"]) or not all(c in caps for c in inc.get("caps", []))
                or ("minKernel" in inc and kernel < version(inc["minKernel"]))):
            continue
        out = {"names": rule.get("names") or [rule["name"]], "action": rule["action"]}
        out.update({k: rule[k] for k in ("errnoRet", "args") if rule.get(k) is not None})
        syscalls.append(out)
    oci = {"defaultAction": profile["defaultAction"], "architectures": arches, "syscalls": syscalls}
    if "defaultErrnoRet" in profile:
        oci["defaultErrnoRet"] = profile["defaultErrnoRet"]
    return oci


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: a defined VAR is replaced, an undefined one is kept
    as written, `$$` is a literal `$` (so `$$(VAR)` gives `$(VAR)`)."""
    out, i = [], 0
    while i < len(text):
        if text[i] != "$" or i + 1 == len(text):
            out.append(text[i])
            i += 1
        elif text[i + 1] == "$":
            out.append("$")
            i += 2
        elif text[i + 1] == "(" and ")" in text[i + 2:]:
            end = text.index(")", i + 2)
            out.append(env.get(text[i + 2:end], text[i:end + 1]))
            i = end + 1
        else:
            out.append(text[i:i + 2])
            i += 2
    return "".join(out)


class ConfigError(Exception):
    """A container the kubelet cannot create: its waiting reason and message."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason, self.message = reason, message


@dataclass
class ContainerStatus:
    """A container's state: waiting (`reason` says why), running, or terminated
    (`reason` Completed, Error or StartError; `exit_code`)."""
    name: str
    init: bool
    dir: Path
    id: str = ""
    state: str = "waiting"
    reason: str = ""
    message: str = ""
    exit_code: int | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)


def _crun(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["crun", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"crun {' '.join(args)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


def _crun_run_prefix(workdir: Path) -> list[str]:
    """How to start `crun run` here (see the module docstring on hybrid cgroups)."""
    controllers = Path("/sys/fs/cgroup/unified/cgroup.controllers")
    if not (controllers.exists() and controllers.read_text().strip()):
        return ["crun", "--cgroup-manager=disabled"]
    (workdir / "empty").touch()
    shadow = f'mount --bind "$0" {controllers} && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", shadow, str(workdir / "empty"),
            "crun", "--cgroup-manager=disabled"]


class Pod:
    """A pod being run (`start_pod`), or run (`run_pod`). As a context manager, leaving it
    deletes the containers and unmounts everything; outputs stay readable after."""

    def __init__(self, pod: dict, images: dict[str, Image | Path], secrets: dict[str, dict[str, str]],
                 workdir: Path, seccomp_profile: Path | None):
        self.spec, self.secrets, self.workdir = pod["spec"], secrets, Path(workdir)
        self.images = {k: v if isinstance(v, Image) else Image(Path(v)) for k, v in images.items()}
        meta = pod.get("metadata") or {}
        self.name, self.namespace = meta.get("name", "pod"), meta.get("namespace", "default")
        self.hostname = self.spec.get("hostname", self.name)
        self.seccomp = json.loads(Path(seccomp_profile).read_text()) if seccomp_profile else None
        self.uid = os.urandom(4).hex()  # makes the crun container ids unique
        self.mounts: list[Path] = []
        self.statuses = {c["name"]: ContainerStatus(c["name"], init, self.workdir / "containers" / c["name"])
                         for init, key in ((True, "initContainers"), (False, "containers"))
                         for c in self.spec.get(key, [])}

    # ---- results

    def status(self, name: str) -> ContainerStatus:
        st = self.statuses[name]
        if st.state == "running" and st.proc is not None and st.proc.poll() is not None:
            st.state, st.exit_code = "terminated", st.proc.returncode
            # crun's errors go to crun.log, or (once the container process has dropped its
            # privileges, e.g. a failed execve) to the container's stderr, as JSON lines.
            log = st.dir / "crun.log"
            lines = (log.read_text().splitlines() if log.exists() else []) + self.stderr(st.name).splitlines()[-1:]
            entries = [json.loads(line) for line in lines if line.startswith('{"msg":')]
            errors = [e["msg"] for e in entries if e.get("level") == "error"]
            st.reason, st.message = (("StartError", "; ".join(errors)) if errors
                                     else ("Completed" if st.exit_code == 0 else "Error", ""))
        return st

    def exit_code(self, name: str) -> int | None:
        return self.status(name).exit_code

    def stdout(self, name: str) -> str:
        path = self.statuses[name].dir / "stdout"
        return path.read_text(errors="replace") if path.exists() else ""

    def stderr(self, name: str) -> str:
        path = self.statuses[name].dir / "stderr"
        return path.read_text(errors="replace") if path.exists() else ""

    def volume(self, name: str) -> Path:
        """The host directory of emptyDir `name` (a Memory one is empty after cleanup)."""
        return self.workdir / "volumes" / name

    @property
    def phase(self) -> str:
        """Pending, Running, Succeeded or Failed, as for restartPolicy Never."""
        sts = [self.status(n) for n in self.statuses]
        if any(s.init and s.state == "terminated" and s.exit_code != 0 for s in sts):
            return "Failed"
        apps = [s for s in sts if not s.init]
        if all(s.state == "terminated" for s in apps):
            return "Succeeded" if all(s.exit_code == 0 for s in apps) else "Failed"
        return "Running" if any(s.state != "waiting" for s in apps) else "Pending"

    def describe(self) -> str:
        """Every container's status and output tails, for assertion messages."""
        lines = [f"pod {self.name}: {self.phase}"]
        for n, s in self.statuses.items():
            lines.append(f"  {'init ' if s.init else ''}{n}: {s.state} {s.reason} exit={s.exit_code} {s.message}\n"
                         f"    stdout: {self.stdout(n)[-500:]!r}\n    stderr: {self.stderr(n)[-500:]!r}")
        return "\n".join(lines)

    # ---- acting on running containers

    def pid(self, name: str) -> int:
        """The host pid of the container's process (`crun state`)."""
        return json.loads(_crun("state", self.statuses[name].id).stdout)["pid"]

    def kill(self, name: str, sig: str | int = "TERM") -> None:
        """`crun kill ID SIG`: signal the container's PID 1 ("TERM", "SIGKILL", 9, signal.SIGINT)."""
        _crun("kill", self.statuses[name].id, sig.name if isinstance(sig, signal.Signals) else str(sig))

    def stop(self, name: str, grace: float = 10.0) -> int | None:
        """What deleting the pod does to a container: TERM, then KILL after `grace` s."""
        proc = self.statuses[name].proc
        self.kill(name, "TERM")
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill(name, "KILL")
            proc.wait(10)
        return self.exit_code(name)

    def wait_output(self, name: str, needle: str, timeout: float = 30.0, stream: str = "stdout") -> str:
        """Wait until the container's stdout (or stderr) contains `needle`; return it all."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.stdout(name) if stream == "stdout" else self.stderr(name)
            if needle in text:
                return text
            if self.status(name).state == "terminated" or time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} never appeared in {name}'s {stream}\n{self.describe()}")
            time.sleep(0.02)

    def wait(self, timeout: float = 60.0) -> Pod:
        """Wait for every app container to end; TimeoutError (with describe()) if one does not."""
        deadline = time.monotonic() + timeout
        for st in self.statuses.values():
            if st.proc is not None and not st.init:
                try:
                    st.proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    raise TimeoutError(f"pod still running after {timeout:.1f} s\n{self.describe()}") from None
        return self

    # ---- lifecycle

    def start(self, timeout: float) -> Pod:
        if (self.workdir / "containers").exists():
            raise ValueError(f"{self.workdir} already holds a pod: give each pod a directory of its own")
        etc = self.workdir / "etc"
        for d in (self.workdir / "volumes", self.workdir / "containers", etc):
            d.mkdir(parents=True)
        (etc / "hosts").write_text("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"
                                   f"::1\tlocalhost ip6-localhost ip6-loopback\n127.0.0.1\t{self.hostname}\n")
        (etc / "hostname").write_text(self.hostname + "\n")
        resolv = Path("/etc/resolv.conf")
        (etc / "resolv.conf").write_text(resolv.read_text() if resolv.exists() else "")
        for vol in self.spec.get("volumes", []):
            if "emptyDir" not in vol:
                raise ValueError(f"volume {vol['name']}: only emptyDir volumes are modelled")
            path = self.volume(vol["name"])
            path.mkdir()
            os.chmod(path, 0o777)
            if (vol["emptyDir"] or {}).get("medium") == "Memory":
                subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(path)], check=True)
                self.mounts.append(path)
        deadline = time.monotonic() + timeout
        for c in self.spec.get("initContainers", []):
            self._run_container(c, deadline)
            if self.status(c["name"]).exit_code != 0:
                return self  # the pod failed, or is stuck on a config error
        for c in self.spec["containers"]:
            self._run_container(c, None)
        return self

    def _run_container(self, c: dict, deadline: float | None) -> None:
        """Start container `c`; an init container (`deadline` set) runs to completion, an
        app container until crun reports it running (or it ended)."""
        st = self.statuses[c["name"]]
        try:
            config = self._config(c)
        except ConfigError as exc:
            st.reason, st.message = exc.reason, exc.message
            return
        (st.dir / "config.json").write_text(json.dumps(config, indent=1))
        st.id = f"kube-{self.uid}-{c['name']}"
        with open(st.dir / "stdout", "wb") as out, open(st.dir / "stderr", "wb") as err:
            st.proc = subprocess.Popen(
                [*_crun_run_prefix(self.workdir), f"--log=file:{st.dir / 'crun.log'}", "--log-format=json",
                 "run", "--bundle", str(st.dir), st.id],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        st.state = "running"
        if deadline is not None:
            try:
                st.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise TimeoutError(f"init container {c['name']} still running\n{self.describe()}") from None
            return
        until = time.monotonic() + 30
        while st.proc.poll() is None:
            state = _crun("state", st.id, check=False)
            if state.returncode == 0 and json.loads(state.stdout)["status"] == "running":
                return
            if time.monotonic() > until:
                raise TimeoutError(f"container {c['name']} never reached running\n{self.describe()}")
            time.sleep(0.01)

    def cleanup(self) -> None:
        """`crun delete -f` every container, then unmount the rootfs overlays and tmpfs volumes."""
        for st in self.statuses.values():
            if st.id:
                _crun("delete", "-f", st.id, check=False)
            if st.proc is not None:
                try:
                    st.proc.wait(10)
                except subprocess.TimeoutExpired:
                    st.proc.kill()
                    st.proc.wait()
                self.status(st.name)
        while self.mounts:
            path = self.mounts.pop()
            if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(path)], capture_output=True)

    def __enter__(self) -> Pod:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # ---- one container's OCI config

    def _env(self, c: dict, image: Image) -> tuple[list[str], dict[str, str]]:
        """(process.env, the container's declared env for `$(VAR)` in command/args)."""
        declared: dict[str, str] = {}
        for e in c.get("env", []):
            if "valueFrom" not in e:
                declared[e["name"]] = expand(e.get("value", ""), declared)
                continue
            ref = e["valueFrom"].get("secretKeyRef")
            if ref is None:
                raise ValueError(f"env {e['name']}: only valueFrom.secretKeyRef is modelled")
            secret = self.secrets.get(ref["name"])
            if secret is None or ref["key"] not in secret:
                if ref.get("optional"):
                    continue
                raise ConfigError("CreateContainerConfigError", f'secret "{ref["name"]}" not found' if secret is None
                                  else f"couldn't find key {ref['key']} in Secret {self.namespace}/{ref['name']}")
            declared[e["name"]] = secret[ref["key"]]
        env = dict(v.split("=", 1) for v in image.env)
        env.setdefault("PATH", DEFAULT_PATH)
        env["HOSTNAME"] = self.hostname
        env.update(declared)
        return [f"{k}={v}" for k, v in env.items()], declared

    def _user(self, c: dict, image: Image) -> dict:
        psc, csc = self.spec.get("securityContext") or {}, c.get("securityContext") or {}
        uid, gid = csc.get("runAsUser", psc.get("runAsUser")), csc.get("runAsGroup", psc.get("runAsGroup"))
        image_uid, _, image_gid = image.user.partition(":")
        if csc.get("runAsNonRoot", psc.get("runAsNonRoot")):  # the kubelet's verifyRunAsNonRoot
            problem = ""
            if uid == 0:
                problem = "container's runAsUser breaks non-root policy"
            elif uid is None and image_uid and not image_uid.isdigit():
                problem = (f"container has runAsNonRoot and image has non-numeric user ({image_uid}), "
                           "cannot verify user is non-root")
            elif uid is None and int(image_uid or 0) == 0:
                problem = "container has runAsNonRoot and image will run as root"
            if problem:
                raise ConfigError("CreateContainerConfigError",
                                  f"{problem} (pod: {self.name}_{self.namespace}, container: {c['name']})")
        if uid is None:
            uid = int(image_uid or 0)
            gid = gid if gid is not None or not image_gid else int(image_gid)
        if gid is None:  # containerd: the uid's primary group in the image's /etc/passwd, else 0
            passwd = image.rootfs / "etc" / "passwd"
            rows = [line.split(":") for line in passwd.read_text().splitlines()] if passwd.exists() else []
            gid = next((int(r[3]) for r in rows if len(r) > 3 and r[2] == str(uid)), 0)
        extra = [*psc.get("supplementalGroups", []), *([psc["fsGroup"]] if "fsGroup" in psc else [])]
        return {"uid": uid, "gid": gid, **({"additionalGids": extra} if extra else {})}

    @staticmethod
    def _caps(csc: dict) -> list[str]:
        """containerd's order: add ALL, drop ALL, then the named adds, then the named drops."""
        spec = csc.get("capabilities") or {}
        norm = lambda names: [n.upper() if n.upper().startswith("CAP_") else "CAP_" + n.upper()  # noqa: E731
                              for n in names if n.upper() != "ALL"]
        caps = ALL_CAPS if "ALL" in spec.get("add", []) else DEFAULT_CAPS
        caps = [] if "ALL" in spec.get("drop", []) else caps
        return [x for x in dict.fromkeys(caps + norm(spec.get("add", []))) if x not in norm(spec.get("drop", []))]

    def _config(self, c: dict) -> dict:
        image = self.images.get(c["image"])
        if image is None:
            raise ConfigError("ErrImagePull", f"image {c['image']!r} is not in `images`")
        env, declared = self._env(c, image)
        command = [expand(a, declared) for a in c.get("command") or []] or list(image.entrypoint or [])
        args = ([expand(a, declared) for a in c["args"]] if c.get("args")
                else [] if c.get("command") else list(image.cmd or []))
        if not command + args:
            raise ConfigError("CreateContainerError", "no command specified")
        csc, psc = c.get("securityContext") or {}, self.spec.get("securityContext") or {}
        caps = self._caps(csc)
        seccomp = (csc.get("seccompProfile") or psc.get("seccompProfile") or {"type": "RuntimeDefault"})["type"]
        if seccomp not in ("RuntimeDefault", "Unconfined"):
            raise ValueError(f"container {c['name']}: seccompProfile {seccomp} is not modelled")
        readonly = bool(csc.get("readOnlyRootFilesystem"))
        ro = ["ro"] if readonly else []
        mounts = BASE_MOUNTS + [{"destination": f"/etc/{f}", "type": "bind", "source": str(self.workdir / "etc" / f),
                                 "options": ["rbind", "rprivate", *ro]} for f in ("hosts", "hostname", "resolv.conf")]
        volumes = {v["name"] for v in self.spec.get("volumes", [])}
        for vm in c.get("volumeMounts", []):
            if vm["name"] not in volumes or vm.get("subPath"):
                raise ValueError(f"volumeMount {vm['name']}: no such volume, or a subPath (not modelled)")
            mounts.append({"destination": vm["mountPath"], "type": "bind", "source": str(self.volume(vm["name"])),
                           "options": ["rbind", "rprivate", *(["ro"] if vm.get("readOnly") else [])]})
        user = self._user(c, image)

        st = self.statuses[c["name"]]
        rootfs, upper, work = st.dir / "rootfs", st.dir / "upper", st.dir / "work"
        for d in (rootfs, upper, work):
            d.mkdir(parents=True)
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={image.rootfs},upperdir={upper},workdir={work}", str(rootfs)], check=True)
        self.mounts.append(rootfs)
        linux: dict = {"namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")],
                       "maskedPaths": MASKED_PATHS, "readonlyPaths": READONLY_PATHS}
        if seccomp == "RuntimeDefault" and self.seccomp is not None:
            linux["seccomp"] = docker_to_oci_seccomp(self.seccomp, caps)
        return {
            "ociVersion": "1.0.2",
            "process": {
                "terminal": False,
                "user": user,
                "args": command + args,
                "env": env,
                "cwd": c.get("workingDir") or image.workdir or "/",
                "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
                "noNewPrivileges": csc.get("allowPrivilegeEscalation") is False,
            },
            "root": {"path": str(rootfs), "readonly": readonly},
            "hostname": self.hostname,
            "mounts": mounts,
            "linux": linux,
        }


def start_pod(pod: dict, images: dict[str, Image | Path], secrets: dict[str, dict[str, str]], workdir: Path, *,
              timeout: float = 60.0, seccomp_profile: Path | None = DOCKER_SECCOMP) -> Pod:
    """Run the init containers to completion (within `timeout` s), then start every app
    container; return once each runs (or has ended). `images` maps a container's `image`
    to an Image (or a bare rootfs Path); `secrets` maps a Secret's name to its data;
    `workdir` is a fresh directory for this pod; `seccomp_profile` is the Docker-format
    profile for RuntimeDefault (None: no seccomp at all). Use it as a context manager:
    `with start_pod(...) as pod:` cleans up however the block ends."""
    p = Pod(pod, images, secrets, workdir, seccomp_profile)
    try:
        return p.start(timeout)
    except BaseException:
        p.cleanup()
        raise


def run_pod(pod: dict, images: dict[str, Image | Path], secrets: dict[str, dict[str, str]], workdir: Path, *,
            timeout: float = 60.0, seccomp_profile: Path | None = DOCKER_SECCOMP,
            on_start: Callable[[Pod], None] | None = None) -> Pod:
    """`start_pod`, call `on_start(pod)` if an app container started, wait for the app
    containers to end (all within `timeout` s, else TimeoutError), clean up; return the
    Pod for its results (status, exit_code, stdout, stderr, phase)."""
    deadline = time.monotonic() + timeout
    with start_pod(pod, images, secrets, workdir, timeout=timeout, seccomp_profile=seccomp_profile) as p:
        if on_start is not None and any(s.proc is not None for s in p.statuses.values() if not s.init):
            on_start(p)
        p.wait(max(0.0, deadline - time.monotonic()))
    return p


PodResult = Pod  # what run_pod returns: the finished (cleaned-up) Pod
