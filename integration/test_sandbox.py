"""Black-box tests of the Landlock sandbox of `stigmer-exec run` and `mcp run`.

The child is sandbox_probe.py (stdlib only), started as `python -I -S sandbox_probe.py
ACTION…`; it attempts each action (open, write, exec, connect, bind, …) and reports the
errno name as one JSON line per action. Python itself needs its installation to start, so
every filesystem-sandboxed launch also allows reading `sys.prefix` (and `sys.base_prefix`)
and this directory (the probe's script): PY_READ. What is checked, from outside:

* `--fs-read`, `--fs-write`, `--fs-exec`: what the child, and a grandchild, can open, list,
  create, remove and execute inside and outside those trees (EACCES outside, stat still
  works); the launcher's home stays refused under an allowed tree; a path that does not
  exist is 66;
* `--net-connect`, `--net-bind` (Landlock TCP) against listeners the test holds, and
  `--no-network` (a private network namespace with its own loopback);
* fail closed with the debug build's STIGMER_TEST_LANDLOCK_ABI (77, nothing launched),
  and `--sandbox best-effort` (runs, with a warning naming what is not enforced);
* `--sandbox FILE` (YAML and JSON) giving the same results as the flags, relative paths
  resolved against the profile's directory, unknown keys (65, file:line:column);
* MCP: a config entry's `sandbox` profile honoured by `mcp run` and carried by `mcp wrap`,
  and a real MCP server (the official SDK, mcp_fs_server.py) that works under a profile
  allowing only its own directory and the Python installation, while a read elsewhere is
  refused.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from helpers import (
    docker_agent,
    SANDBOX_PROBE,
    probe_cmd,
    probe_records,
    INTEGRATION_DIR,
    KEY_FILE,
    MCP_EXEC_ID,
    PYTHON,
    McpContext,
    describe,
    envsrv_claude,
    free_port,
    key_init,
    new_canary,
    ok,
    one_line_error,
    run,
    sha256,
    simple_context,
    write_json,
)

PROBE = SANDBOX_PROBE
FS_SERVER = INTEGRATION_DIR / "mcp_fs_server.py"
SESSION_TIMEOUT_S = 45


def _python_dirs() -> list[str]:
    dirs = []
    for d in (sys.prefix, sys.base_prefix):
        real = os.path.realpath(d)
        if real not in dirs:
            dirs.append(real)
    return dirs


PYTHON_DIRS = _python_dirs()
# What the Python probe needs to start under any filesystem sandbox.
PY_READ = [arg for d in [*PYTHON_DIRS, str(INTEGRATION_DIR)] for arg in ("--fs-read", d)]


# --------------------------------------------------------------------------
# helpers of these tests


def sandboxed(home, flags, *actions, env_extra=None, cwd=None):
    """An ephemeral `run` (no key, no store) of the probe with `flags`."""
    return run(["run", "--env", "SANDBOX_TEST=1", *[str(f) for f in flags], "--", *probe_cmd(*actions)], home,
               env_extra=env_extra, new_session=True, cwd=cwd)


records = probe_records


def results(proc, depth: int | None = 0) -> list[str]:
    """The result of each action (at `depth`; None: every line)."""
    return [r["result"] for r in records(proc) if depth is None or r["depth"] == depth]


def expect(proc, expected: list[str], depth: int | None = 0) -> list[dict]:
    recs = records(proc)
    got = [r["result"] for r in recs if depth is None or r["depth"] == depth]
    shown = [(r["action"], r.get("args"), r["result"]) for r in recs if depth is None or r["depth"] == depth]
    assert got == expected, f"expected {expected}\ngot {shown}\nstderr={proc.stderr!r}"
    return recs


class Tree:
    """Directories of a test, all created before the launch:
    a/ (file.txt, sub/inner.txt, script, tool), b/ (file.txt, tool), w/ (empty), x/ (script, tool)."""

    def __init__(self, root: Path):
        self.root = root
        self.a, self.b, self.w, self.x = (root / n for n in ("a", "b", "w", "x"))
        for d in (self.a, self.b, self.w, self.x, self.a / "sub"):
            d.mkdir(parents=True)
        (self.a / "file.txt").write_bytes(b"alpha-content")
        (self.a / "sub" / "inner.txt").write_bytes(b"inner-content")
        (self.b / "file.txt").write_bytes(b"beta-content")
        for d in (self.a, self.b, self.x):
            script = d / "script"
            script.write_text(f"#!{PYTHON} -IS\nimport sys\nsys.exit(0)\n")
            script.chmod(0o755)
            tool = d / "tool"
            shutil.copy2("/bin/true", tool)
            tool.chmod(0o755)


@pytest.fixture
def tree(tmp_path) -> Tree:
    return Tree(tmp_path / "tree")


@pytest.fixture
def listeners():
    """make() -> the port of a new TCP listener on 127.0.0.1 held by the test."""
    socks = []

    def make() -> int:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        socks.append(s)
        return s.getsockname()[1]

    yield make
    for s in socks:
        s.close()


def can_unshare_net() -> bool:
    try:
        return subprocess.run(["unshare", "--net", "true"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# --------------------------------------------------------------------------
# 1. filesystem


def test_control_run_without_flags_reads_and_writes_anywhere(home, tree):
    proc = sandboxed(home, [], "read", tree.a / "file.txt", "read", tree.b / "file.txt",
                     "write", tree.b / "new", "exec", tree.a / "tool", "list", tree.b)
    expect(proc, ["ok"] * 5)


def test_fs_read_allows_only_its_tree(home, tree):
    proc = sandboxed(home, ["--fs-read", tree.a, *PY_READ],
                     "read", tree.a / "file.txt",            # ok
                     "read", tree.a / "sub" / "inner.txt",   # ok
                     "list", tree.a,                         # ok
                     "read", tree.b / "file.txt",            # EACCES
                     "stat", tree.b / "file.txt",            # ok: stat still works
                     "list", tree.b,                         # EACCES
                     "write", tree.a / "x",                  # EACCES: read only
                     "write", tree.a / "file.txt",           # EACCES
                     "write", tree.b / "x",                  # EACCES
                     "mkdir", tree.a / "newdir")             # EACCES
    recs = expect(proc, ["ok", "ok", "ok", "EACCES", "ok", "EACCES", "EACCES", "EACCES", "EACCES", "EACCES"])
    assert recs[0]["sha256"] == sha256(b"alpha-content"), recs[0]
    assert not (tree.a / "x").exists() and not (tree.b / "x").exists() and not (tree.a / "newdir").exists()
    assert (tree.a / "file.txt").read_bytes() == b"alpha-content"


def test_fs_write_allows_changes_but_not_exec(home, tree):
    proc = sandboxed(home, ["--fs-read", tree.a, "--fs-write", tree.b, *PY_READ],
                     "write", tree.b / "new",                  # ok: create
                     "read", tree.b / "new",                   # ok
                     "write", tree.b / "file.txt",             # ok: truncate + write
                     "rename", tree.b / "new", tree.b / "renamed",
                     "mkdir", tree.b / "sub",
                     "remove", tree.b / "renamed",
                     "list", tree.b,
                     "exec", tree.b / "tool",                  # EACCES: no execute
                     "write", tree.a / "x",                    # EACCES
                     "write", tree.w / "x")                    # EACCES: not listed
    expect(proc, ["ok"] * 7 + ["EACCES"] * 3)
    assert (tree.b / "file.txt").read_bytes() == b"x"
    assert (tree.b / "sub").is_dir() and not (tree.b / "renamed").exists() and not (tree.b / "new").exists()
    assert not (tree.a / "x").exists() and not (tree.w / "x").exists()


def test_exec_needs_fs_exec(home, tree):
    read_only = sandboxed(home, ["--fs-read", tree.a, *PY_READ],
                          "exec", tree.a / "script", "exec", tree.a / "tool", "read", tree.a / "script")
    expect(read_only, ["EACCES", "EACCES", "ok"])

    executable = sandboxed(home, ["--fs-exec", tree.a, *PY_READ],
                           "exec", tree.a / "script", "exec", tree.a / "tool", "read", tree.a / "file.txt",
                           "write", tree.a / "x", "exec", tree.b / "tool")
    recs = expect(executable, ["ok", "ok", "ok", "EACCES", "EACCES"])
    assert recs[0]["rc"] == 0 and recs[1]["rc"] == 0, recs[:2]


def test_grandchild_is_bound_too(home, tree):
    proc = sandboxed(home, ["--fs-read", tree.a, "--fs-write", tree.w, *PY_READ],
                     "spawn-grandchild",
                     "read", tree.a / "file.txt", "read", tree.b / "file.txt", "write", tree.a / "x",
                     "write", tree.w / "y", "exec", tree.a / "tool")
    recs = expect(proc, ["ok", "EACCES", "EACCES", "ok", "EACCES"], depth=1)
    assert recs[-1]["action"] == "spawn-grandchild" and recs[-1]["rc"] == 0, recs[-1]
    assert not (tree.a / "x").exists() and (tree.w / "y").exists()


def test_home_stays_refused_under_an_allowed_tree(home):
    key_init(home)
    parent = home.parent
    (parent / "sibling.txt").write_bytes(b"sibling")
    (parent / "sibdir").mkdir()
    (parent / "sibdir" / "f.txt").write_bytes(b"f")
    proc = sandboxed(home, ["--fs-read", parent, *PY_READ],
                     "read", parent / "sibling.txt",
                     "read", parent / "sibdir" / "f.txt",
                     "list", parent / "sibdir",
                     "read", home / KEY_FILE,
                     "list", home)
    recs = expect(proc, ["ok", "ok", "ok", "EACCES", "EACCES"])
    assert recs[0]["sha256"] == sha256(b"sibling")


@pytest.mark.parametrize("flag", ["--fs-read", "--fs-write", "--fs-exec"])
def test_nonexistent_path_is_66(home, tree, flag):
    missing = tree.root / "no-such-dir"
    marker = tree.w / "started"
    proc = sandboxed(home, [flag, missing, "--fs-write", tree.w, *PY_READ], "write", marker)
    one_line_error(proc, 66, flag, str(missing))
    assert not marker.exists(), "the child ran despite the missing path"


def test_file_var_is_readable_under_an_fs_sandbox(home, tree):
    key_init(home)
    canary = new_canary("boxed")
    simple_context(home, "box-1", canary)
    proc = run(["run", "--execution-id", "box-1", "--file-var", "CTX_SECRET", "--fs-read", tree.a, *PY_READ, "--",
                *probe_cmd("readfile", "env:CTX_SECRET_FILE", "readfile", "env:CTX_SECRET_FILE",
                           "read", tree.b / "file.txt")], home, new_session=True)
    assert canary not in proc.stdout + proc.stderr, "the secret value leaked into the output"
    recs = expect(proc, ["ok", "ok", "EACCES"])
    assert recs[0]["sha256"] == sha256(canary) and recs[1]["sha256"] == sha256(canary), "the file lost the value"


# --------------------------------------------------------------------------
# 2. network


def test_net_connect_allows_only_listed_ports(home, listeners):
    allowed, other = listeners(), listeners()
    proc = sandboxed(home, ["--net-connect", allowed],
                     "connect", "127.0.0.1", allowed, "connect", "127.0.0.1", other,
                     "bind", free_port(), "socket")
    expect(proc, ["ok", "EACCES", "EACCES", "ok"])

    both = sandboxed(home, ["--net-connect", f"{allowed},{other}"],
                     "connect", "127.0.0.1", allowed, "connect", "127.0.0.1", other)
    expect(both, ["ok", "ok"])


def test_net_bind_allows_only_listed_ports(home, listeners):
    listening = listeners()
    port, other = free_port(), free_port()
    while other == port:
        other = free_port()
    proc = sandboxed(home, ["--net-bind", port],
                     "bind", port, "bind", other, "connect", "127.0.0.1", listening)
    expect(proc, ["ok", "EACCES", "EACCES"])

    repeated = sandboxed(home, ["--net-bind", port, "--net-bind", other, "--net-connect", listening],
                         "bind", port, "bind", other, "connect", "127.0.0.1", listening)
    expect(repeated, ["ok", "ok", "ok"])


def test_no_network_has_only_its_own_loopback(home, tree, listeners):
    host_port = listeners()
    marker = tree.w / "started"
    proc = sandboxed(home, ["--no-network"],
                     "write", marker,
                     "connect", "127.0.0.1", host_port,
                     "socket",
                     "listen-and-connect",
                     "read", tree.b / "file.txt")
    if not can_unshare_net():
        one_line_error(proc, 77, "--no-network")
        assert not marker.exists(), "the child ran without its network namespace"
        return
    recs = records(proc)
    assert [r["result"] for r in recs][:1] == ["ok"], recs
    assert recs[1]["result"] in ("ECONNREFUSED", "ENETUNREACH"), \
        f"connect to the host's listener from --no-network: {recs[1]}"
    assert [r["result"] for r in recs[2:]] == ["ok", "ok", "ok"], recs


NOBODY = 65534


def _user_namespaces_allowed() -> bool:
    try:
        return int(Path("/proc/sys/user/max_user_namespaces").read_text()) > 0
    except (OSError, ValueError):
        return False


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start the launcher as another user")
@pytest.mark.skipif(not _user_namespaces_allowed(), reason="user namespaces are off on this kernel")
@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="needs a system python3 another user can run")
def test_no_network_as_another_user_maps_only_its_own_ids(bin_path, listeners):
    """Not root: the namespace is made inside a user namespace of the child's own, mapping
    only its uid and gid — so it keeps its identity, holds no capability after execve, and
    still reaches nothing but its own loopback."""
    host_port = listeners()
    work = Path(tempfile.mkdtemp(prefix="stigmer-nobody-"))  # /tmp itself: pytest's tmp_path is root's alone
    os.chmod(work, 0o755)
    os.chown(work, NOBODY, NOBODY)
    launcher = work / "stigmer-exec"
    shutil.copy(bin_path, launcher)
    os.chmod(launcher, 0o755)
    probe = work / "sandbox_probe.py"
    shutil.copy(PROBE, probe)
    script = work / "child.sh"
    script.write_text("id -u; id -g; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; "
                      f"exec /usr/bin/python3 -I -S {probe} connect 127.0.0.1 {host_port} listen-and-connect\n")
    os.chmod(script, 0o755)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "STIGMER_HOME": str(work / "home")}
    proc = subprocess.run([str(launcher), "run", "--env", "A=1", "--no-network", "--", "/bin/sh", str(script)],
                          env=env, capture_output=True, timeout=60, user=NOBODY, group=NOBODY, extra_groups=[])
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.decode().splitlines()
    assert lines[:2] == [str(NOBODY), str(NOBODY)], lines
    status = dict(line.split(":\t") for line in lines[2:5])
    assert status == {"CapEff": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "2"}, status
    recs = [json.loads(line) for line in lines[5:]]
    assert recs[0]["result"] in ("ECONNREFUSED", "ENETUNREACH"), recs
    assert recs[1]["result"] == "ok", recs
    shutil.rmtree(work, ignore_errors=True)


def test_no_network_is_refused_with_an_http_mcp_server(home, tmp_path):
    mcp = McpContext(home, tmp_path)
    cfg = write_json(tmp_path / "claude.json", envsrv_claude(tmp_path / "shutdown"))
    proc = run(["mcp", "run", "--no-network", "--execution-id", MCP_EXEC_ID, "--config", cfg, "--server", "remote"],
               home, new_session=True)
    one_line_error(proc, 64, "--no-network", "remote", secrets_=mcp.canaries)
    # The same from the entry's own profile: refused alike, never a bridge without a network.
    profile = tmp_path / "offline.yaml"
    profile.write_text("net:\n  none: true\n")
    doc = envsrv_claude(tmp_path / "shutdown")
    doc["mcpServers"]["remote"]["sandbox"] = str(profile)
    cfg = write_json(tmp_path / "claude-offline.json", doc)
    proc = run(["mcp", "run", "--execution-id", MCP_EXEC_ID, "--config", cfg, "--server", "remote"], home, new_session=True)
    one_line_error(proc, 64, "--no-network", "remote", secrets_=mcp.canaries)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start processes as another user")
@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="needs a system python3 another user can run")
def test_a_confined_child_cannot_read_another_processs_environment(bin_path):
    """/proc is in the base set (runtimes read /proc/self), but Landlock limits ptrace-mode
    access to processes in its own domain: a confined child cannot read the environment of
    a same-uid process outside it (another launched server, say). Control: a child with no
    Landlock at all can. As another user than root: a root child passes the ptrace check
    for every process, Landlock or not (root is outside the threat model)."""
    canary = new_canary("sibling-env")
    work = Path(tempfile.mkdtemp(prefix="stigmer-sibling-"))
    os.chmod(work, 0o755)
    launcher = work / "stigmer-exec"
    shutil.copy(bin_path, launcher)
    os.chmod(launcher, 0o755)
    probe = work / "sandbox_probe.py"
    shutil.copy(PROBE, probe)
    as_nobody = {"user": NOBODY, "group": NOBODY, "extra_groups": []}
    sibling = subprocess.Popen(["/usr/bin/sleep", "60"], env={"SIBLING_SECRET": canary.decode()}, **as_nobody)
    try:
        def confined(*flags):
            return subprocess.run([str(launcher), "run", "--env", "A=1", *flags, "--", "/usr/bin/python3", "-I", "-S", str(probe),
                                   "readfile", f"/proc/{sibling.pid}/environ"],
                                  env={"PATH": "/usr/bin:/bin", "HOME": str(work), "STIGMER_HOME": str(work / "home")},
                                  capture_output=True, timeout=60, **as_nobody)
        control = confined("--no-isolation")
        assert results(control) == ["ok"], "the control could not read a sibling's environment: the test would be blind"
        for flags in (["--fs-read", str(work)], ["--net-connect", "443"]):  # a filesystem sandbox; a network-only one
            proc = confined(*flags)
            assert results(proc) in (["EACCES"], ["EPERM"]), (flags, records(proc))
            assert canary not in proc.stdout and canary not in proc.stderr
    finally:
        sibling.kill()
        sibling.wait()
        shutil.rmtree(work, ignore_errors=True)


def test_a_filesystem_sandbox_refuses_unix_sockets(home, tree, tmp_path):
    """Landlock cannot keep a child from connecting to a Unix socket outside its trees by
    path (think /var/run/docker.sock): under --fs-*, socket(AF_UNIX) fails with EACCES (the
    seccomp filter), socketpair() still works; --allow-unix-sockets (or fs.unix_sockets in
    a profile) gives them back — and then the socket outside is reachable, as the control
    shows."""
    path = tmp_path / "daemon.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(8)
    try:
        expect(sandboxed(home, [], "unix-connect", path, "socketpair"), ["ok", "ok"])
        for seccomp in ("default", "strict", "none"):
            proc = sandboxed(home, ["--fs-read", tree.a, *PY_READ, "--seccomp", seccomp], "unix-connect", path, "socketpair")
            expect(proc, ["EACCES", "ok"])
        expect(sandboxed(home, ["--fs-read", tree.a, *PY_READ, "--allow-unix-sockets"], "unix-connect", path), ["ok"])
        profile = tmp_path / "unix.yaml"
        profile.write_text(f"fs:\n  read: [{tree.a}]\n  unix_sockets: true\n")
        expect(sandboxed(home, ["--sandbox", profile, *PY_READ], "unix-connect", path), ["ok"])
        # Only a filesystem sandbox refuses them: TCP rules alone do not.
        expect(sandboxed(home, ["--net-connect", "443"], "unix-connect", path), ["ok"])
    finally:
        listener.close()


# --------------------------------------------------------------------------
# 3. fail closed (debug builds: STIGMER_TEST_LANDLOCK_ABI)


FAIL_CLOSED = [
    # (pretended ABI, flag, flag value kind, ABI needed)
    ("3", "--net-connect", "port", "4"),
    ("3", "--net-bind", "port", "4"),
    ("0", "--fs-read", "dir", "3"),
    ("2", "--fs-read", "dir", "3"),
    ("2", "--fs-write", "dir", "3"),
    ("1", "--fs-exec", "dir", "3"),
]
FAIL_IDS = [f"abi{abi}{flag}" for abi, flag, _, _ in FAIL_CLOSED]


def _fail_closed_flags(tree: Tree, flag: str, kind: str) -> list:
    value = "80" if kind == "port" else str(tree.a)
    flags = [flag, value]
    if kind == "dir":
        # Where the marker goes, so that a child that did run could write it.
        flags += ["--fs-write", tree.w, *PY_READ]
    return flags


@pytest.mark.parametrize("abi,flag,kind,needed", FAIL_CLOSED, ids=FAIL_IDS)
def test_fail_closed_when_landlock_is_too_old(home, tree, abi, flag, kind, needed):
    marker = tree.w / "started"
    proc = sandboxed(home, _fail_closed_flags(tree, flag, kind), "write", marker,
                     env_extra={"STIGMER_TEST_LANDLOCK_ABI": abi})
    err = one_line_error(proc, 77, flag)
    assert needed in err, f"the ABI needed ({needed}) is not named:\n{describe(proc)}"
    assert not marker.exists(), "the child ran although the sandbox cannot be enforced"


@pytest.mark.parametrize("abi,flag,kind,needed", FAIL_CLOSED, ids=FAIL_IDS)
@pytest.mark.parametrize("how", ["flag", "profile"])
def test_best_effort_runs_with_a_warning(home, tree, tmp_path, abi, flag, kind, needed, how):
    marker = tree.w / "started"
    if how == "flag":
        extra = ["--sandbox", "best-effort"]
    else:
        profile = tmp_path / "best-effort.yaml"
        profile.write_text("best_effort: true\n")
        extra = ["--sandbox", profile]
    proc = sandboxed(home, [*_fail_closed_flags(tree, flag, kind), *extra], "write", marker,
                     env_extra={"STIGMER_TEST_LANDLOCK_ABI": abi})
    assert proc.returncode == 0, describe(proc)
    assert marker.exists(), f"the child did not run:\n{describe(proc)}"
    warnings = [line for line in proc.stderr.decode(errors="replace").splitlines() if "warning:" in line]
    assert warnings, f"no warning: line on stderr:\n{describe(proc)}"
    assert any(flag in line for line in warnings), f"the warning does not name {flag}:\n{describe(proc)}"


def test_best_effort_still_enforces_what_the_kernel_can(home, tree, listeners):
    port = listeners()
    proc = sandboxed(home, ["--fs-read", tree.a, *PY_READ, "--net-connect", port, "--sandbox", "best-effort"],
                     "read", tree.a / "file.txt", "read", tree.b / "file.txt",
                     env_extra={"STIGMER_TEST_LANDLOCK_ABI": "3"})
    expect(proc, ["ok", "EACCES"])
    warnings = [line for line in proc.stderr.decode(errors="replace").splitlines() if "warning:" in line]
    assert any("--net-connect" in line for line in warnings), describe(proc)


# --------------------------------------------------------------------------
# 4. profiles (--sandbox FILE)

# The same sandbox as flags and as a profile (relative paths: against the profile's dir).
PROFILE_ACTIONS = [
    "read", "{root}/a/file.txt",          # ok
    "read", "{root}/b/file.txt",          # EACCES
    "write", "{root}/w/new",              # ok
    "write", "{root}/a/x",                # EACCES
    "exec", "{root}/x/tool",              # ok
    "exec", "{root}/a/tool",              # EACCES
    "read", "{elsewhere}/a/file.txt",     # EACCES: `a` is not resolved against the cwd
    "connect", "127.0.0.1", "{connect}",  # ok
    "connect", "127.0.0.1", "{other}",    # EACCES
    "bind", "{bind}",                     # ok
    "bind", "{other_bind}",               # EACCES
]
PROFILE_EXPECTED = ["ok", "EACCES", "ok", "EACCES", "ok", "EACCES", "EACCES", "ok", "EACCES", "ok", "EACCES"]


def _profile_doc(ports: dict) -> dict:
    return {
        "fs": {"read": ["a", *PYTHON_DIRS, str(INTEGRATION_DIR)], "write": ["w"], "exec": ["./x"]},
        "net": {"connect": [ports["connect"]], "bind": [ports["bind"]]},
    }


def _yaml(doc: dict) -> str:
    out = []
    for section, body in doc.items():
        out.append(f"{section}:")
        for key, values in body.items():
            out.append(f"  {key}:")
            out += [f"    - {json.dumps(v)}" for v in values]
    return "\n".join(out) + "\n"


@pytest.fixture
def profile_setup(tree, tmp_path, listeners):
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "a").mkdir(parents=True)
    (elsewhere / "a" / "file.txt").write_bytes(b"elsewhere")
    ports = {"connect": listeners(), "other": listeners(), "bind": free_port(), "other_bind": free_port()}
    while ports["other_bind"] == ports["bind"]:
        ports["other_bind"] = free_port()
    fmt = {"root": tree.root, "elsewhere": elsewhere, **ports}
    actions = [a.format(**fmt) for a in PROFILE_ACTIONS]
    return elsewhere, ports, actions


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_profile_gives_the_same_results_as_flags(home, tree, profile_setup, fmt):
    elsewhere, ports, actions = profile_setup
    flags = ["--fs-read", tree.a, *PY_READ, "--fs-write", tree.w, "--fs-exec", tree.x,
             "--net-connect", ports["connect"], "--net-bind", ports["bind"]]
    by_flags = sandboxed(home, flags, *actions, cwd=elsewhere)
    expect(by_flags, PROFILE_EXPECTED)

    doc = _profile_doc(ports)
    profile = tree.root / f"profile.{fmt}"  # relative paths: against tree.root
    profile.write_text(_yaml(doc) if fmt == "yaml" else json.dumps(doc, indent=2))
    by_profile = sandboxed(home, ["--sandbox", profile], *actions, cwd=elsewhere)
    expect(by_profile, PROFILE_EXPECTED)
    assert results(by_profile) == results(by_flags)


def test_profile_tilde_and_flags_add_to_it(home, tree):
    # ~/ is $HOME (the helpers set HOME to the home's parent directory).
    user_home = home.parent
    (user_home / "tilde-dir").mkdir()
    (user_home / "tilde-dir" / "f.txt").write_bytes(b"tilde")
    profile = tree.root / "tilde.yaml"
    profile.write_text("fs:\n  read:\n    - ~/tilde-dir\n    - a\n" +
                       "".join(f"    - {json.dumps(d)}\n" for d in [*PYTHON_DIRS, str(INTEGRATION_DIR)]))
    proc = sandboxed(home, ["--sandbox", profile, "--fs-read", tree.b],
                     "read", user_home / "tilde-dir" / "f.txt", "read", tree.a / "file.txt",
                     "read", tree.b / "file.txt", "read", tree.x / "script")
    expect(proc, ["ok", "ok", "ok", "EACCES"])


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_profile_unknown_key_is_65_with_file_line_column(home, tree, fmt):
    marker = tree.w / "started"
    if fmt == "yaml":
        text = "fs:\n  read:\n    - a\n  raed:\n    - b\n"
        line = 4
    else:
        text = '{\n  "fs": {\n    "read": ["a"]\n  },\n  "bogus": true\n}\n'
        line = 5
    profile = tree.root / f"bad.{fmt}"
    profile.write_text(text)
    proc = sandboxed(home, ["--sandbox", profile, "--fs-write", tree.w], "write", marker)
    err = one_line_error(proc, 65)
    assert re.search(rf"{re.escape(profile.name)}:{line}:\d+", err), \
        f"the error does not name {profile.name}:{line}:COLUMN:\n{describe(proc)}"
    assert "raed" in err or "bogus" in err, describe(proc)
    assert not marker.exists(), "the child ran despite the broken profile"


# --------------------------------------------------------------------------
# 5. MCP: a profile per server entry


def _mcp_box(tmp_path: Path, tree: Tree, form: str) -> tuple[Path, Path]:
    """A config in cfgdir/ naming the profile cfgdir/prof.yaml (relative) for the server `boxed`,
    the probe as its command. Returns (config, profile)."""
    cfgdir = tmp_path / "cfgdir"
    cfgdir.mkdir()
    data = cfgdir / "data"  # relative in the profile: against the profile's directory
    data.mkdir()
    (data / "file.txt").write_bytes(b"data-content")
    profile = cfgdir / "prof.yaml"
    profile.write_text("fs:\n  read:\n    - data\n" +
                       "".join(f"    - {json.dumps(d)}\n" for d in [*PYTHON_DIRS, str(INTEGRATION_DIR)]))
    args = ["-I", "-S", str(PROBE), "read", str(data / "file.txt"), "read", str(tree.b / "file.txt"),
            "write", str(data / "x")]
    if form == "claude":
        cfg = write_json(cfgdir / "claude.json", {"mcpServers": {"boxed": {
            "command": PYTHON, "args": args, "sandbox": "prof.yaml"}}})
    else:
        cfg = cfgdir / "agent.yaml"
        cfg.write_text(
            "apiVersion: agentic.stigmer.ai/v1\n"
            "kind: Agent\n"
            "metadata:\n"
            "  name: boxed-agent\n"
            "spec:\n"
            "  mcp_servers:\n"
            "    - name: boxed\n"
            "      sandbox: prof.yaml\n"
            "      stdio:\n"
            f"        command: {PYTHON}\n"
            "        args:\n" + "".join(f"          - {json.dumps(a)}\n" for a in args)
        )
    return cfg, profile


@pytest.mark.parametrize("form", ["claude", "stigmer"])
def test_mcp_run_honours_the_entrys_sandbox(home, tmp_path, tree, form):
    mcp = McpContext(home, tmp_path)
    cfg, _ = _mcp_box(tmp_path, tree, form)
    proc = run(["mcp", "run", "--execution-id", MCP_EXEC_ID, "--config", cfg, "--server", "boxed"], home,
               new_session=True)
    mcp.assert_no_canary(proc.stdout, proc.stderr)
    recs = expect(proc, ["ok", "EACCES", "EACCES"])
    assert recs[0]["sha256"] == sha256(b"data-content"), recs[0]


def test_mcp_run_takes_sandbox_flags(home, tmp_path, tree):
    mcp = McpContext(home, tmp_path)
    cfg = write_json(tmp_path / "claude.json", {"mcpServers": {"plain": {
        "command": PYTHON, "args": ["-I", "-S", str(PROBE), "read", str(tree.a / "file.txt"),
                                    "read", str(tree.b / "file.txt")]}}})
    proc = run(["mcp", "run", "--execution-id", MCP_EXEC_ID, "--config", cfg, "--server", "plain",
                "--fs-read", tree.a, *PY_READ], home, new_session=True)
    mcp.assert_no_canary(proc.stdout, proc.stderr)
    expect(proc, ["ok", "EACCES"])


@pytest.mark.parametrize("form", ["claude", "stigmer"])
def test_mcp_wrap_carries_the_absolute_profile(home, tmp_path, tree, form):
    mcp = McpContext(home, tmp_path)
    cfg, profile = _mcp_box(tmp_path, tree, form)
    proc = ok(run(["mcp", "wrap", "--execution-id", MCP_EXEC_ID, "--config", cfg], home))
    mcp.assert_no_canary(proc.stdout, proc.stderr)
    wrapped = json.loads(proc.stdout)
    if form == "claude":
        entry = wrapped["mcpServers"]["boxed"]
        args = entry["args"]
    else:
        entry = {s["name"]: s for s in wrapped["spec"]["mcp_servers"]}["boxed"]
        args = entry["stdio"]["args"]
    assert "sandbox" not in entry, f"the wrapped entry kept the sandbox key: {entry}"
    assert "--sandbox" in args, f"no --sandbox in the wrapped args: {args}"
    value = args[args.index("--sandbox") + 1]
    assert os.path.isabs(value), f"--sandbox {value!r} is not absolute"
    assert os.path.realpath(value) == os.path.realpath(profile), (value, str(profile))

    # The wrapped entry launches the same sandboxed server.
    command = entry["command"] if form == "claude" else entry["stdio"]["command"]
    launched = subprocess.run([command, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=60, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                              start_new_session=True)
    mcp.assert_no_canary(launched.stdout, launched.stderr)
    expect(launched, ["ok", "EACCES", "EACCES"])


# --------------------------------------------------------------------------
# 6. a real MCP server under a profile


def _mcp_package_dir() -> str:
    spec = importlib.util.find_spec("mcp")
    assert spec is not None and spec.submodule_search_locations, "the mcp package is not installed"
    return os.path.realpath(list(spec.submodule_search_locations)[0])


def fs_session(bin_path: Path, home: Path, cfg: Path, server: str, errlog: Path, paths: dict) -> dict:
    """Start `mcp run` with the SDK's stdio client; initialise, list tools, call `read` on
    each of `paths`; return {"name", "tools", "reads": {key: result}}."""
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=str(bin_path), args=[
        "mcp", "run", "--execution-id", MCP_EXEC_ID, "--config", str(cfg), "--server", server, "--home", str(home)])

    async def session_run() -> dict:
        with open(errlog, "w") as err:
            async with stdio_client(params, errlog=err) as (read, write):
                async with ClientSession(read, write) as session:
                    init = await session.initialize()
                    tools = {tool.name for tool in (await session.list_tools()).tools}
                    reads = {}
                    for key, path in paths.items():
                        result = await session.call_tool("read", {"path": str(path)})
                        assert not result.is_error, f"tool read({key}) failed: {result}"
                        reads[key] = result.structured_content["result"]
                    return {"name": init.server_info.name, "tools": tools, "reads": reads}

    return asyncio.run(asyncio.wait_for(session_run(), SESSION_TIMEOUT_S))


def test_real_mcp_server_works_under_a_read_only_profile(home, tmp_path, bin_path):
    mcp = McpContext(home, tmp_path)
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"outside")
    allowed = [str(INTEGRATION_DIR), *PYTHON_DIRS, _mcp_package_dir()]
    profile = tmp_path / "mcp-profile.yaml"
    profile.write_text("fs:\n  read:\n" + "".join(f"    - {json.dumps(d)}\n" for d in allowed))
    cfg = write_json(tmp_path / "claude.json", {"mcpServers": {"fssrv": {
        "command": PYTHON, "args": [str(FS_SERVER)], "sandbox": str(profile)}}})

    # Not blind: without the profile the same server reads the outside file.
    plain_cfg = write_json(tmp_path / "plain.json", {"mcpServers": {"fssrv": {
        "command": PYTHON, "args": [str(FS_SERVER)]}}})
    errlog = tmp_path / "client-stderr"
    plain = fs_session(bin_path, home, plain_cfg, "fssrv", errlog, {"outside": outside})
    assert plain["reads"] == {"outside": "ok"}, plain

    out = fs_session(bin_path, home, cfg, "fssrv", errlog, {
        "own_script": FS_SERVER,
        "stdlib": os.__file__,
        "outside": outside,
        "key": home / "encryption.key",
    })
    assert out["name"] == "stigmer-fs-probe", out
    assert {"read", "write"} <= out["tools"], out["tools"]
    assert out["reads"] == {"own_script": "ok", "stdlib": "ok", "outside": "EACCES", "key": "EACCES"}, \
        f"{out['reads']}\nserver stderr: {errlog.read_text(errors='replace')[-2000:]}"
    mcp.assert_no_canary(errlog.read_bytes())


# --------------------------------------------------------------------------
# 6. What an attacking child tried (a review as the child), and the answers


def test_a_tree_inside_the_home_is_refused_even_through_a_symlink(home, tmp_path):
    key_init(home)
    (home / "inner").mkdir()
    link = tmp_path / "looks-innocent"
    link.symlink_to(home)
    for tree in (home, home / "inner", link):
        proc = sandboxed(home, ["--fs-read", tree, *PY_READ], "read", home / KEY_FILE)
        one_line_error(proc, 64, "--fs-read", "keeps from the child")


def test_the_root_directory_as_a_tree_still_keeps_the_home_out(home):
    key_init(home)
    proc = sandboxed(home, ["--fs-read", "/", *PY_READ], "read", "/etc/hostname", "read", home / KEY_FILE)
    expect(proc, ["ok", "EACCES"])


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to bind-mount")
def test_a_bind_mount_of_the_key_itself_is_no_way_around(home, tmp_path):
    key_init(home)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = elsewhere / "k"
    target.write_bytes(b"")
    if subprocess.run(["mount", "--bind", str(home / KEY_FILE), str(target)], capture_output=True).returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        expect(sandboxed(home, ["--no-isolation"], "read", target), ["ok"])  # control
        expect(sandboxed(home, [], "read", target), ["EACCES"])
    finally:
        subprocess.run(["umount", str(target)], check=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount")
def test_a_hidden_alias_does_not_close_an_unrelated_directory(home, tmp_path):
    """A bind mount of the home's parent that another mount hides is not a way to the key,
    and must not make the launcher refuse what is really there."""
    key_init(home)
    alias = tmp_path / "alias"
    alias.mkdir()
    if subprocess.run(["mount", "--bind", str(home.parent), str(alias)], capture_output=True).returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(alias)], check=True)
        try:
            expect(sandboxed(home, [], "write", alias / "new.txt", "list", alias), ["ok", "ok"])
        finally:
            subprocess.run(["umount", str(alias)], check=True)
    finally:
        subprocess.run(["umount", str(alias)], check=True)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare(1)")
def test_no_network_works_for_root_in_a_rootless_container(home, bin_path, tmp_path):
    """Root of a user namespace that maps only one id (podman or docker rootless): the
    child's namespace maps what that root holds, and the launch works."""
    proc = subprocess.run(["unshare", "-U", "-r", str(bin_path), "run", "--env", "A=1", "--no-network", "--",
                           PYTHON, "-I", "-S", str(PROBE), "readfile", "/proc/self/uid_map", "listen-and-connect"],
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "STIGMER_HOME": str(tmp_path / "h")},
                          capture_output=True, timeout=60)
    assert [r["result"] for r in records(proc)] == ["ok", "ok"], describe(proc)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to bind-mount")
def test_a_bind_mount_of_the_homes_parent_is_no_way_around(home, tmp_path):
    """The same files through another mount: mountinfo gives their other names, which are
    kept out as the home is — by the default isolation and by a sandbox over the alias."""
    key_init(home)
    (home.parent / "beside.txt").write_bytes(b"beside")
    alias = tmp_path / "alias"
    alias.mkdir()
    if subprocess.run(["mount", "--bind", str(home.parent), str(alias)], capture_output=True).returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        through = alias / home.name / KEY_FILE
        expect(sandboxed(home, ["--no-isolation"], "read", through), ["ok"])  # control: the alias reaches the key
        expect(sandboxed(home, [], "read", through, "read", alias / "beside.txt"), ["EACCES", "ok"])
        expect(sandboxed(home, ["--fs-read", alias, *PY_READ], "read", through, "read", alias / "beside.txt"), ["EACCES", "ok"])
    finally:
        subprocess.run(["umount", str(alias)], check=True)


def _mounts_of_the_filesystem_of(path: Path) -> int:
    """How many lines of /proc/self/mountinfo show the filesystem `path` is on."""
    dev = os.stat(path).st_dev
    wanted = f"{os.major(dev)}:{os.minor(dev)}"
    return sum(line.split()[2] == wanted for line in Path("/proc/self/mountinfo").read_text().splitlines())


@pytest.mark.skipif(tuple(map(int, re.findall(r"\d+", os.uname().release)[:2])) < (6, 8),
                    reason="listmount and statmount need Linux 6.8")
def test_the_mount_table_is_parsed_only_when_another_mount_could_show_the_home(home, tmp_path):
    """Another name for the home needs another mount of its filesystem. listmount and
    statmount tell whether there is one (a superblock's device, no text), so a launch
    whose home's filesystem is mounted once never has the kernel format
    /proc/self/mountinfo (~60 µs for a fresh process here); with a bind mount of the
    home's parent it is read, and the alias kept out (the tests above)."""
    key_init(home)
    if _mounts_of_the_filesystem_of(home) != 1:
        pytest.skip("the home's filesystem is mounted more than once here")
    log = tmp_path / "calls.log"
    traced = run(["run", "--env", "A=1", "--", "true"], home, prefix=["strace", "-f", "-qq", "-e", "trace=openat", "-o", log])
    assert traced.returncode == 0, describe(traced)
    assert "mountinfo" not in log.read_text(), log.read_text()
    if os.geteuid() != 0:
        return
    alias = tmp_path / "alias"
    alias.mkdir()
    if subprocess.run(["mount", "--bind", str(home.parent), str(alias)], capture_output=True).returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        traced = run(["run", "--env", "A=1", "--", "true"], home, prefix=["strace", "-f", "-qq", "-e", "trace=openat", "-o", log])
        assert traced.returncode == 0, describe(traced)
        assert "/proc/self/mountinfo" in log.read_text(), log.read_text()
    finally:
        subprocess.run(["umount", str(alias)], check=True)


def test_tcp_rules_are_not_bypassed_with_mptcp_or_sctp(home, listeners):
    """Landlock's TCP rules cover IPPROTO_TCP only: under --net-*, the socket guard refuses
    MPTCP (which falls back to plain TCP, to any port) and SCTP."""
    port = listeners()
    control = sandboxed(home, [], "socket-proto", 262)
    if results(control) != ["ok"]:
        pytest.skip(f"no MPTCP here: {records(control)}")
    expect(sandboxed(home, ["--net-connect", port], "socket-proto", 262, "socket-proto", 132, "connect", "127.0.0.1", port),
           ["EACCES", "EACCES", "ok"])
    # SOCK_SEQPACKET with protocol 0 is SCTP where its module is loaded: refused whatever.
    expect(sandboxed(home, ["--net-connect", port], "socket-type", 5), ["EACCES"])


def test_the_socket_guard_is_not_bypassed_through_io_uring(home, tree):
    """io_uring creates sockets without socket(): with a guard and no filter of its own
    (--seccomp none) its calls answer ENOSYS. Control: without a sandbox they reach the
    kernel (EINVAL or EFAULT for the empty call)."""
    control = results(sandboxed(home, ["--seccomp", "none"], "io-uring-setup"))
    assert control[0] in ("EINVAL", "EFAULT"), control
    for flags in (["--fs-read", tree.a, *PY_READ], ["--net-connect", "443"], ["--no-network"]):
        expect(sandboxed(home, [*flags, "--seccomp", "none"], "io-uring-setup"), ["ENOSYS"])


def test_no_network_refuses_unix_sockets_too(home, tmp_path):
    path = tmp_path / "daemon.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(8)
    try:
        expect(sandboxed(home, ["--no-network"], "unix-connect", path, "socketpair"), ["EACCES", "ok"])
        expect(sandboxed(home, ["--no-network", "--allow-unix-sockets"], "unix-connect", path), ["ok"])
    finally:
        listener.close()


def test_a_sandbox_scopes_signals_and_abstract_sockets(home, tree):
    """Landlock ABI 6: a confined child can neither signal a process outside its sandbox
    nor reach an abstract Unix socket made outside it. Control: unconfined, it can."""
    name = f"stigmer-test-{os.getpid()}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + name)
    listener.listen(8)
    sibling = subprocess.Popen(["sleep", "60"])
    try:
        expect(sandboxed(home, ["--no-isolation"], "kill", sibling.pid, "abstract-connect", name), ["ok", "ok"])
        proc = sandboxed(home, ["--fs-read", tree.a, *PY_READ, "--allow-unix-sockets"], "kill", sibling.pid, "abstract-connect", name)
        expect(proc, ["EPERM", "EPERM"])
    finally:
        sibling.kill()
        sibling.wait()
        listener.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="the escape needs a root child")
def test_a_root_child_cannot_setns_out_of_no_network(home):
    """Even with no filter and no isolation, a root child's network namespace belongs to a
    user namespace of its own: the host's namespaces are out of its reach."""
    sibling = subprocess.Popen(["sleep", "60"])
    try:
        target = f"/proc/{sibling.pid}/ns/net"
        expect(sandboxed(home, ["--seccomp", "none", "--no-isolation"], "setns", target), ["ok"])  # control
        proc = sandboxed(home, ["--no-network", "--seccomp", "none", "--no-isolation"], "setns", target)
        assert results(proc)[0] in ("EACCES", "EPERM"), records(proc)
    finally:
        sibling.kill()
        sibling.wait()


def test_an_empty_profile_section_denies_rather_than_disables(home, tree, tmp_path, listeners):
    port = listeners()
    profile = tmp_path / "empty.yaml"
    profile.write_text("fs:\n  read: []\nnet:\n  connect: []\n")
    proc = sandboxed(home, ["--sandbox", profile, *PY_READ], "read", tree.a / "file.txt", "connect", "127.0.0.1", port)
    expect(proc, ["EACCES", "EACCES"])
    bare = tmp_path / "bare.yaml"
    bare.write_text("fs: {}\nnet: {}\n")
    expect(sandboxed(home, ["--sandbox", bare, *PY_READ], "read", tree.a / "file.txt", "connect", "127.0.0.1", port),
           ["EACCES", "EACCES"])


@pytest.mark.skipif(os.geteuid() != 0, reason="the check unshares a UTS namespace, which needs root")
def test_the_command_lines_seccomp_wins_over_a_profiles(home, tree, tmp_path):
    profile = tmp_path / "loose.yaml"
    profile.write_text(f"fs:\n  read: [{tree.a}]\nseccomp: none\n")
    # unshare(CLONE_NEWUTS): the default filter refuses it (EPERM); with no filter root may.
    status = "import ctypes; print(ctypes.CDLL(None, use_errno=True).unshare(0x04000000) == 0)"

    def seccomp_mode(*flags):
        proc = run(["run", "--env", "A=1", "--sandbox", profile, *PY_READ, *flags, "--", PYTHON, "-I", "-S", "-c", status],
                   home, new_session=True)
        ok(proc)
        return proc.stdout.decode().strip()

    assert seccomp_mode() == "True", "the profile's seccomp: none was not applied: the check would be blind"
    assert seccomp_mode("--seccomp", "default") == "False", "an explicit --seccomp default lost to the profile"


def test_a_docker_server_refuses_a_sandbox(home, tmp_path):
    mcp = McpContext(home, tmp_path)
    cfg, path = docker_agent(tmp_path, "#!/bin/sh\nexit 0\n", "docker-sandboxed", "boxed", "${SECRET_TOKEN}")
    for flags in (["--no-network"], ["--net-connect", "443"], ["--fs-read", str(tmp_path)]):
        proc = run(["mcp", "run", *flags, "--execution-id", MCP_EXEC_ID, "--config", cfg, "--server", "boxed"], home,
                   env_extra={"PATH": path}, new_session=True)
        one_line_error(proc, 64, "docker server", "container", secrets_=mcp.canaries)


def test_the_sandbox_keeps_the_child_off_its_own_config_and_profile(home, tmp_path):
    """Under a filesystem sandbox that can write where its config and profile live, the
    child still cannot change them (it would loosen its next launch)."""
    McpContext(home, tmp_path)
    project = tmp_path / "project"
    project.mkdir()
    profile = project / "sandbox.yaml"
    readable = ", ".join([*PYTHON_DIRS, str(INTEGRATION_DIR)])
    profile.write_text(f"fs:\n  write: [{project}]\n  read: [{readable}]\n")
    (project / "src").mkdir()
    (project / "notes.txt").write_text("x")
    cfg = write_json(project / ".mcp.json", {"mcpServers": {"probe": {
        "command": PYTHON, "args": ["-I", "-S", str(PROBE), "write", str(profile), "write", str(project / ".mcp.json"),
                                    "write", str(project / "src" / "new.txt"), "write", str(project / "notes.txt"),
                                    "write", str(project / "new-beside.txt")],
        "sandbox": "sandbox.yaml"}}})
    proc = run(["mcp", "run", "--execution-id", MCP_EXEC_ID, "--config", cfg, "--server", "probe"], home, new_session=True)
    # What exists beside them stays writable, below as well; a new entry right beside
    # them cannot be made (the same rule as beside the home).
    expect(proc, ["EACCES", "EACCES", "ok", "ok", "EACCES"])


@pytest.mark.skipif(os.geteuid() != 0, reason="reading another process's environ as root")
def test_the_key_given_in_the_environment_is_wiped_from_a_supervisors(home, tmp_path):
    """With --init the launcher stays as the parent; a root child can read its
    /proc/PPID/environ. A key given as STIGMER_ENCRYPTION_KEY has been wiped from it."""
    key_b64 = key_init(home)
    canary = new_canary("ctx")
    simple_context(home, "wipe-1", canary)
    (home / KEY_FILE).unlink()  # the key only in the environment
    out = tmp_path / "environ.bin"
    proc = run(["run", "--execution-id", "wipe-1", "--init", "--no-isolation", "--", "sh", "-c", f"cat /proc/$PPID/environ > {out}"],
               home, env_extra={"STIGMER_ENCRYPTION_KEY": key_b64}, new_session=True)
    ok(proc)
    environ = out.read_bytes()
    assert b"STIGMER_ENCRYPTION_KEY=" in environ, "the check would be blind: the variable is not there at all"
    assert key_b64.encode() not in environ, "the key is still readable in the supervisor's environment"
