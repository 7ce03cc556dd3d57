"""Black-box tests of the launch hardening of `stigmer-exec run`.

In the spirit of tini's and bubblewrap's test suites, everything is observed
from outside the binary:

* a small C probe (probe.c, compiled once per session into pytest's tmp dir)
  performs raw system calls under the launcher's seccomp filters (default,
  strict, none, Docker's OCI profile) and reports each errno as JSON;
* /proc/<pid>/{status,limits,environ,mem,stat} of the child, the grandchild
  and the (paused, DEBUG-build-only) launcher;
* --init signal forwarding, exit statuses and orphan reaping;
* --mask-output on stdout and stderr;
* strace logs of `context create` and `run`: no secret in writes to regular
  files, no file created by the launcher.
"""

from __future__ import annotations

import base64
import json
import os
import re
import resource
import secrets
import shutil
import signal
import stat
import string
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path

import pytest

from helpers import (
    strace_calls,
    ADDRESS_SPACE,
    CORE_FILE_SIZE,
    INTEGRATION_DIR,
    TIMEOUT_S,
    base_env,
    binary_path,
    describe,
    key_init,
    kill_quietly,
    limits_of,
    new_canary,
    ok,
    read_line,
    retry_busy,
    run,
    simple_context,
    spawn,
    wait_for,
)

PROBE_SOURCE = INTEGRATION_DIR / "probe.c"
DOCKER_PROFILE = INTEGRATION_DIR.parent.parent / "shared" / "data" / "docker-default-seccomp.json"
NOBODY = 65534
SETPRIV_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
SIGSYS = int(signal.SIGSYS)

# Denied by the default filter with EPERM (every one exists on x86_64).
DENIED_EPERM = [
    "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "pidfd_getfd", "kcmp",
    "perf_event_open", "lookup_dcookie", "bpf", "userfaultfd", "keyctl", "add_key", "request_key",
    "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen", "fsconfig",
    "fsmount", "fspick", "mount_setattr", "unshare", "setns", "init_module", "finit_module",
    "delete_module", "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff", "iopl",
    "ioperm", "acct", "quotactl", "clock_settime", "clock_adjtime", "settimeofday", "adjtimex",
    "sethostname", "setdomainname", "syslog", "vhangup", "open_by_handle_at", "fanotify_init",
    "modify_ldt", "uselib", "ustat", "sysfs",
]
# Denied with ENOSYS (so that callers fall back to the older interfaces).
DENIED_ENOSYS = ["io_uring_setup", "io_uring_enter", "io_uring_register", "clone3"]
# Denied (EPERM) only for some argument values.
ARG_FILTERED = [
    "clone_newns", "clone_newcgroup", "clone_newuts", "clone_newipc", "clone_newuser",
    "clone_newpid", "clone_newnet",          # clone() with a CLONE_NEW* flag
    "ioctl_tiocsti", "ioctl_tiocsti_high",   # 0x5412 and 0xffffffff00005412
    "ioctl_tioclinux",                       # 0x541C
    "socket_alg", "socket_vsock",            # AF_ALG (38), AF_VSOCK (40)
    "personality_rie",                       # personality(READ_IMPLIES_EXEC)
]
# Allowed calls and what they give with or without a filter: (errno name, ret or None).
CONTROLS = {
    "read_badfd": ("EBADF", -1),
    "write_efault": ("EFAULT", -1),
    "getpid": ("OK", 0),
    "personality_query": ("OK", 0),
    "personality_0": ("OK", 0),
    "fork": ("OK", 0),
    "clone_plain": ("OK", 0),
    "memfd_create": ("OK", 0),
    "prctl_clear_nnp": ("EINVAL", -1),
    "seccomp_action_avail": ("EFAULT", -1),
    "mlock": ("OK", 0),
    "socket_unix": ("EINVAL", -1),
    "mmap_wx": ("OK", 0),
    "mprotect_x": ("OK", 0),
}
# With the filter: NoNewPrivs 1 and Seccomp 2 (probe "status" = NoNewPrivs*10 + Seccomp).
FILTERED_STATE = {"prctl_get_nnp": ("OK", 1), "status": ("OK", 12), "prctl_get_mdwe": ("OK", 0)}
UNFILTERED_STATE = {"prctl_get_nnp": ("OK", 0), "status": ("OK", 0), "prctl_get_mdwe": ("OK", 0)}
# Calls whose unfiltered result as root may itself be EPERM/ENOSYS by kernel
# policy (kexec_load_disabled, modules_disabled, io_uring_disabled or the
# feature compiled out), so the baseline cannot always be told apart.
POLICY_DEPENDENT = {"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
                    "io_uring_setup", "io_uring_enter", "io_uring_register"}

ALL_FILTER_NAMES = DENIED_EPERM + DENIED_ENOSYS + ARG_FILTERED + list(CONTROLS) + list(FILTERED_STATE)


# --------------------------------------------------------------------------
# helpers


@pytest.fixture(scope="session")
def probe(tmp_path_factory, bin_path) -> Path:
    """probe.c compiled into pytest's tmp dir (never into the repository)."""
    out = tmp_path_factory.mktemp("probe") / "probe"
    proc = subprocess.run(
        ["gcc", "-O1", "-Wall", "-o", str(out), str(PROBE_SOURCE)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT_S, check=False,
    )
    assert proc.returncode == 0 and out.is_file(), f"cannot compile the probe:\n{describe(proc)}"
    names = subprocess.run([str(out), "list"], stdout=subprocess.PIPE, check=True, timeout=10).stdout.split()
    missing = set(ALL_FILTER_NAMES) - {n.decode() for n in names}
    assert not missing, f"probe lacks {sorted(missing)}"
    return out


def launch(args, home, input=None, env_extra=None, timeout=30, prefix=(), **kwargs):
    """`[prefix...] stigmer-exec ARGS` to completion, in a new session: no controlling
    terminal, so even an unfiltered vhangup/TIOCSTI cannot reach the terminal of whoever
    runs pytest."""
    return run(args, home, input=input, env_extra=env_extra, timeout=timeout, prefix=prefix, new_session=True,
               **kwargs)


def seccomp_args(mode):
    return [] if mode is None else ["--seccomp", str(mode)]


def parse_probe(stdout: bytes) -> dict[str, tuple[str, int]]:
    results = {}
    for line in stdout.decode().splitlines():
        rec = json.loads(line)
        results[rec["name"]] = (rec["err"], rec["ret"])
    return results


def run_probe(probe, home, mode, names, extra=()):
    """`stigmer-exec run [--seccomp MODE] --env A=1 -- probe NAMES`; (proc, results)."""
    proc = launch(["run", *seccomp_args(mode), *extra, "--env", "A=1", "--", probe, *names], home)
    assert proc.returncode == 0, describe(proc)
    results = parse_probe(proc.stdout)
    assert list(results) == list(names), describe(proc)
    return proc, results


def mismatches(results, expected: dict[str, tuple[str, int | None]]):
    """[(name, got, expected)] where errno (and ret, unless None) differ."""
    bad = []
    for name, (err, ret) in expected.items():
        got = results.get(name)
        if got is None or got[0] != err or (ret is not None and got[1] != ret):
            bad.append((name, got, (err, ret)))
    return bad


def proc_children(ppid: int) -> dict[int, tuple[str, str]]:
    """{pid: (state, comm)} of every process whose parent is ppid."""
    kids = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read().decode(errors="replace")
        except OSError:
            continue
        comm = data[data.find("(") + 1 : data.rfind(")")]
        fields = data[data.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == ppid:
            kids[int(entry)] = (fields[0], comm)
    return kids


# --------------------------------------------------------------------------
# 1. the default filter, syscall by syscall


@pytest.mark.parametrize("mode", [None, "default"], ids=["implicit", "explicit"])
def test_default_filter_denies_exactly_the_listed_syscalls(probe, home, mode):
    _, got = run_probe(probe, home, mode, ALL_FILTER_NAMES)
    expected = {name: ("EPERM", -1) for name in DENIED_EPERM + ARG_FILTERED}
    expected.update({name: ("ENOSYS", -1) for name in DENIED_ENOSYS})
    expected.update(CONTROLS)
    expected.update(FILTERED_STATE)
    bad = mismatches(got, expected)
    assert not bad, "name, got (errno, ret), expected:\n" + "\n".join(map(str, bad))


def test_baseline_without_filter_differs(probe, home):
    _, filtered = run_probe(probe, home, "default", ALL_FILTER_NAMES)
    _, base = run_probe(probe, home, "none", ALL_FILTER_NAMES)

    # The controls behave the same with and without the filter.
    expected = dict(CONTROLS)
    expected.update(UNFILTERED_STATE)
    bad = mismatches(base, expected)
    assert not bad, "controls without a filter (name, got, expected):\n" + "\n".join(map(str, bad))

    denied = DENIED_EPERM + DENIED_ENOSYS + ARG_FILTERED
    eperm = [n for n in denied if base[n][0] == "EPERM"]
    assert len(eperm) < len(denied) // 4, f"baseline is mostly EPERM, so it proves nothing: {eperm}"
    same = [(n, base[n], filtered[n]) for n in denied if n not in POLICY_DEPENDENT and base[n] == filtered[n]]
    assert not same, "unfiltered result equals the filtered one (name, none, default):\n" + "\n".join(map(str, same))


@pytest.mark.parametrize("abi", ["x32_getpid", "i386_getpid"])
def test_foreign_abi_syscall_kills_with_sigsys(probe, home, abi):
    proc = launch(["run", "--env", "A=1", "--", probe, "getpid", abi], home)
    # exec mode: the launcher's pid became the probe, which dies by SIGSYS.
    assert proc.returncode == -SIGSYS, describe(proc)
    assert parse_probe(proc.stdout) == {"getpid": ("OK", 0)}, describe(proc)

    shell = launch(["run", "--env", "A=1", "--", "sh", "-c", f'"$0" {abi}; echo "status=$?"', probe], home)
    assert shell.stdout.endswith(f"status={128 + SIGSYS}\n".encode()), describe(shell)

    base = launch(["run", "--seccomp", "none", "--env", "A=1", "--", probe, abi], home)
    if abi == "x32_getpid":
        assert base.returncode == 0, describe(base)
        err, _ = parse_probe(base.stdout)[abi]
        assert err in ("ENOSYS", "OK"), describe(base)
    else:  # i386 emulation may be off: then not SIGSYS either
        assert base.returncode != -SIGSYS, describe(base)


# --------------------------------------------------------------------------
# 2. the filter and no_new_privs reach every descendant and cannot be removed

STATUS_GREP = "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status"
FILTERED_STATUS = b"NoNewPrivs:\t1\nSeccomp:\t2\n"


@pytest.mark.parametrize("extra", [[], ["--init"]], ids=["exec", "init"])
def test_child_and_grandchild_inherit_filter(home, extra):
    child = launch(["run", *extra, "--env", "A=1", "--", "sh", "-c", STATUS_GREP + "; :"], home)
    assert child.returncode == 0 and child.stdout == FILTERED_STATUS, describe(child)

    # `; :` keeps each shell from exec'ing its last command: grep runs as a
    # grandchild of the first shell and great-grandchild of the launcher.
    inner = STATUS_GREP.replace("'", '"')
    script = f"sh -c '{inner}; :'; :"
    grandchild = launch(["run", *extra, "--env", "A=1", "--", "sh", "-c", script], home)
    assert grandchild.returncode == 0 and grandchild.stdout == FILTERED_STATUS, describe(grandchild)

    unfiltered = launch(["run", "--seccomp", "none", *extra, "--env", "A=1", "--", "sh", "-c", script], home)
    assert unfiltered.returncode == 0 and unfiltered.stdout == b"NoNewPrivs:\t0\nSeccomp:\t0\n", describe(unfiltered)


def test_child_cannot_remove_or_loosen_the_filter(probe, home):
    names = ["prctl_clear_nnp", "add_allow_all_filter", "keyctl", "unshare", "prctl_get_nnp", "status"]
    _, got = run_probe(probe, home, None, names)
    assert got == {
        "prctl_clear_nnp": ("EINVAL", -1),       # no_new_privs cannot be unset
        "add_allow_all_filter": ("OK", 0),       # stacking a filter is allowed...
        "keyctl": ("EPERM", -1),                 # ...but cannot allow what the launcher's denies
        "unshare": ("EPERM", -1),
        "prctl_get_nnp": ("OK", 1),
        "status": ("OK", 12),
    }, got


# --------------------------------------------------------------------------
# 3. strict: W^X on top of default


def test_strict_refuses_writable_executable_memory(probe, home):
    names = ["mmap_wx", "mprotect_x", "prctl_get_mdwe", "keyctl", "getpid", "status"]
    _, strict = run_probe(probe, home, "strict", names)
    _, default = run_probe(probe, home, "default", names)
    assert strict["mmap_wx"] == ("EPERM", -1), strict
    assert strict["mprotect_x"] == ("EPERM", -1), strict
    assert strict["prctl_get_mdwe"][0] == "OK" and strict["prctl_get_mdwe"][1] & 1, f"MDWE not set: {strict}"
    assert strict["keyctl"] == ("EPERM", -1) and strict["getpid"] == ("OK", 0), strict
    assert strict["status"] == ("OK", 12), strict
    assert default["mmap_wx"] == ("OK", 0) and default["mprotect_x"] == ("OK", 0), default
    assert default["prctl_get_mdwe"] == ("OK", 0), default

    py = launch(["run", "--seccomp", "strict", "--env", "A=1", "--", "python3", "-c", "print(sum(range(10)))"], home)
    assert py.returncode == 0 and py.stdout == b"45\n", describe(py)


# --------------------------------------------------------------------------
# 4. OCI/Docker profiles


def test_docker_default_profile_loads_and_is_enforced(probe, home):
    assert DOCKER_PROFILE.is_file(), DOCKER_PROFILE
    names = ["keyctl", "add_key", "bpf", "unshare", "personality_rie", "clone_newuser",
             "getpid", "read_badfd", "fork", "memfd_create", "personality_query", "status"]
    _, got = run_probe(probe, home, DOCKER_PROFILE, names)
    assert got == {
        "keyctl": ("EPERM", -1),           # not in the allow list: defaultErrnoRet 1
        "add_key": ("EPERM", -1),
        "bpf": ("EPERM", -1),              # needs CAP_SYS_ADMIN/CAP_BPF: no caps assumed
        "unshare": ("EPERM", -1),
        "personality_rie": ("EPERM", -1),  # only 0, 8, 0x20000, 0x20008, 0xffffffff allowed
        "clone_newuser": ("EPERM", -1),    # clone's masked CLONE_NEW* rule
        "getpid": ("OK", 0),
        "read_badfd": ("EBADF", -1),
        "fork": ("OK", 0),
        "memfd_create": ("OK", 0),
        "personality_query": ("OK", 0),
        "status": ("OK", 12),
    }, got


@pytest.mark.parametrize(
    "content",
    [
        '{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [',
        '{"defaultAction": "SCMP_ACT_NO_SUCH_ACTION", "syscalls": []}',
        '{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_BOGUS"}]}',
    ],
    ids=["invalid-json", "unknown-default-action", "unknown-rule-action"],
)
def test_broken_profile_is_refused_before_child_starts(home, tmp_path, content):
    profile = tmp_path / "profile.json"
    profile.write_text(content)
    marker = tmp_path / "MARKER"
    proc = launch(["run", "--seccomp", profile, "--env", "A=1", "--", "touch", marker], home)
    assert proc.returncode in (65, 77), describe(proc)
    assert proc.stdout == b"", describe(proc)
    assert len(proc.stderr.decode(errors="replace").splitlines()) == 1, describe(proc)
    assert not marker.exists(), "child started despite the broken profile"


# --------------------------------------------------------------------------
# 5. resource limits


def _raise_core_soft_limit():
    """For the child of subprocess: a non-zero soft core limit (within the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    want = 1234 * 1024
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    resource.setrlimit(resource.RLIMIT_CORE, (want, hard))


def test_core_dumps_are_off_unless_allowed(home):
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    parent_hard = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
    parent_soft = str(min(1234 * 1024, hard) if hard != resource.RLIM_INFINITY else 1234 * 1024)

    default = launch(["run", "--env", "A=1", "--", "cat", "/proc/self/limits"], home,
                     preexec_fn=_raise_core_soft_limit)
    assert default.returncode == 0, describe(default)
    assert limits_of(default)[CORE_FILE_SIZE] == ("0", "0"), describe(default)

    allowed = launch(["run", "--allow-core-dumps", "--env", "A=1", "--", "cat", "/proc/self/limits"], home,
                     preexec_fn=_raise_core_soft_limit)
    assert allowed.returncode == 0, describe(allowed)
    assert limits_of(allowed)[CORE_FILE_SIZE] == (parent_soft, parent_hard), describe(allowed)

    # Also for a supervised child.
    init = launch(["run", "--init", "--env", "A=1", "--", "cat", "/proc/self/limits"], home,
                  preexec_fn=_raise_core_soft_limit)
    assert init.returncode == 0 and limits_of(init)[CORE_FILE_SIZE] == ("0", "0"), describe(init)


def test_memory_limit_sets_rlimit_as(home):
    proc = launch(["run", "--memory-limit", "256M", "--env", "A=1", "--", "cat", "/proc/self/limits"], home)
    assert proc.returncode == 0, describe(proc)
    assert limits_of(proc)[ADDRESS_SPACE] == ("268435456", "268435456"), describe(proc)

    plain = launch(["run", "--env", "A=1", "--", "cat", "/proc/self/limits"], home)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    as_text = lambda v: "unlimited" if v == resource.RLIM_INFINITY else str(v)  # noqa: E731
    assert limits_of(plain)[ADDRESS_SPACE] == (as_text(soft), as_text(hard)), describe(plain)


# --------------------------------------------------------------------------
# 6. the launcher's memory is closed to its own uid while it holds secrets


def _world_reachable(path: Path) -> bool:
    """True when uid 65534 can reach and execute path (every directory o+x)."""
    for parent in path.parents:
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            return False
    return bool(os.stat(path).st_mode & stat.S_IXOTH)


def test_paused_launcher_memory_and_environ_are_unreadable_by_same_uid(probe, tmp_path):
    shared = Path(tempfile.mkdtemp(prefix="stigmer-hardening-", dir="/tmp"))
    launcher = control = None
    try:
        os.chown(shared, NOBODY, NOBODY)
        os.chmod(shared, 0o755)
        reader = shared / "probe"
        shutil.copy(probe, reader)
        os.chmod(reader, 0o755)
        exe = binary_path()
        if not _world_reachable(exe):
            exe = shared / "stigmer-exec"
            retry_busy(lambda: shutil.copy(binary_path(), exe))
            os.chmod(exe, 0o755)
        pause = shared / "pause"
        canary = new_canary("paused")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(shared),
            "STIGMER_HOME": str(shared / "home"),
            "STIGMER_TEST_PAUSE": str(pause),
        }

        # The control: an ordinary process of the same uid.
        control = subprocess.Popen([*SETPRIV_NOBODY, "sleep", "30"], stdin=subprocess.DEVNULL, env=env,
                                   start_new_session=True)
        launcher = retry_busy(lambda: subprocess.Popen(
            [*SETPRIV_NOBODY, str(exe), "run", "--env", "A=1", "--secret", "B", "--",
             "sh", "-c", 'printf %s "$B"'],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            start_new_session=True,
        ))
        launcher.stdin.write(canary + b"\n")
        launcher.stdin.close()
        launcher.stdin = None  # so that communicate() does not flush it

        text = wait_for(lambda: pause.exists() and pause.read_text().strip().isdigit() and pause.read_text(), 15,
                        lambda: f"the launcher to pause (exit {launcher.poll()}); is this a DEBUG build?")
        pid = int(text.strip())
        assert pid == launcher.pid, f"pause file says {pid}, launcher is {launcher.pid}"
        assert launcher.poll() is None

        status = Path(f"/proc/{pid}/status").read_text()
        assert re.search(rf"^Uid:\s+{NOBODY}\s+{NOBODY}\s+{NOBODY}\s+{NOBODY}$", status, re.M), status
        ctl_status = Path(f"/proc/{control.pid}/status").read_text()
        assert re.search(rf"^Uid:\s+{NOBODY}\s", ctl_status, re.M), ctl_status
        # Non-dumpable processes' /proc files belong to root; the control's to its uid.
        assert os.stat(f"/proc/{pid}/environ").st_uid == 0
        assert os.stat(f"/proc/{pid}/mem").st_uid == 0
        assert os.stat(f"/proc/{control.pid}/environ").st_uid == NOBODY

        targets = [f"read=/proc/{pid}/environ", f"open=/proc/{pid}/mem",
                   f"read=/proc/{control.pid}/environ", f"open=/proc/{control.pid}/mem"]
        read = subprocess.run([*SETPRIV_NOBODY, str(reader), *targets], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=TIMEOUT_S)
        assert read.returncode == 0, describe(read)
        got = parse_probe(read.stdout)
        assert launcher.poll() is None, "the launcher stopped pausing before the reads"
        assert got[targets[0]][0] in ("EACCES", "EPERM"), got
        assert got[targets[1]][0] in ("EACCES", "EPERM"), got
        assert got[targets[2]][0] == "OK" and got[targets[2]][1] > 0, f"control environ unreadable: {got}"
        assert got[targets[3]] == ("OK", 0), f"control mem unreadable: {got}"

        (shared / "pause.go").touch()
        out, err = launcher.communicate(timeout=TIMEOUT_S)
        assert launcher.returncode == 0 and out == canary, (launcher.returncode, out, err)
    finally:
        for p in (launcher, control):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(timeout=TIMEOUT_S)
        shutil.rmtree(shared, ignore_errors=True)


# --------------------------------------------------------------------------
# 7. --init: signal forwarding, exit statuses, orphan reaping

INIT_SIGNAL_CHILD = r"""
import os, signal, sys, time
def handler(signum, frame):
    os._exit(10 + signum)
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
    signal.signal(s, handler)
print("READY", os.getppid(), flush=True)
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    time.sleep(0.05)
os._exit(99)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP],
                         ids=lambda s: s.name)
def test_init_forwards_signals(home, sig):
    proc = spawn(["run", "--init", "--env", "A=1", "--", sys.executable, "-c", INIT_SIGNAL_CHILD], home)
    try:
        line = read_line(proc)
        assert line.split()[:1] == [b"READY"], f"child never became ready: {line!r} (exit {proc.poll()})"
        assert int(line.split()[1]) == proc.pid, f"child's parent is {line!r}, launcher is {proc.pid}"
        os.kill(proc.pid, sig)
        out, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        kill_quietly(proc)
    assert proc.returncode == 10 + int(sig), f"exit={proc.returncode} stderr={err!r}"


@pytest.mark.parametrize(
    "script, expected",
    [("exit 0", 0), ("exit 3", 3), ("exit 255", 255),
     ("kill -TERM $$", 128 + signal.SIGTERM), ("kill -KILL $$", 128 + signal.SIGKILL),
     ("kill -SEGV $$", 128 + signal.SIGSEGV)],
    ids=["0", "3", "255", "SIGTERM", "SIGKILL", "SIGSEGV"],
)
def test_init_exit_status(home, script, expected):
    proc = launch(["run", "--init", "--env", "A=1", "--", "sh", "-c", script], home)
    assert proc.returncode == expected, describe(proc)


def test_init_reaps_orphans(home, tmp_path):
    go = tmp_path / "go"
    script = (
        "for i in $(seq 100); do (sleep 2 &); done; echo SPAWNED $$; "
        f'i=0; while [ ! -e "{go}" ] && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done'
    )
    proc = spawn(["run", "--init", "--env", "A=1", "--", "sh", "-c", script], home)
    try:
        line = read_line(proc)
        assert line.startswith(b"SPAWNED "), f"{line!r} (exit {proc.poll()})"
        main = int(line.split()[1])
        seen = {"max": 0, "zombies": 0}

        def orphans():
            kids = proc_children(proc.pid)
            assert main in kids, f"main child {main} is gone early: {kids}"
            others = {pid: v for pid, v in kids.items() if pid != main}
            seen["max"] = max(seen["max"], len(others))
            seen["zombies"] = max(seen["zombies"], sum(1 for s, _ in others.values() if s == "Z"))
            return others

        first = orphans()
        assert first, "no orphan was reparented to the launcher (not a child subreaper?)"
        wait_for(lambda: not orphans(), 10, lambda: f"the orphans to be reaped (left: {orphans()})", interval=0.05)
        assert proc.poll() is None, "launcher exited before its child"

        go.touch()
        out, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        kill_quietly(proc)
    assert proc.returncode == 0, (proc.returncode, err)
    assert seen["max"] >= 1, seen


# --------------------------------------------------------------------------
# 8. --mask-output

MASK_CHILD = r"""
import base64, json, os, sys, time, urllib.parse
v = os.environ["CTX_SECRET"]
b = v.encode()
forms = [
    ("raw", v),
    ("b64", base64.b64encode(b).decode()),
    ("b64url", base64.urlsafe_b64encode(b).decode()),
    ("b64nopad", base64.b64encode(b).decode().rstrip("=")),
    ("url", urllib.parse.quote(v, safe="")),
    ("json", json.dumps(v)[1:-1]),
]
for out in (sys.stdout, sys.stderr):
    out.write(f"start {sys.argv[1]}\n")
    for label, text in forms:
        out.write(f"{label}={text};\n")
    out.write("split=" + v[:11])
    out.flush()
    time.sleep(0.2)
    out.write(v[11:] + ";\n")
    out.write("other text, unchanged: done\n")
    out.flush()
sys.exit(int(sys.argv[2]))
"""


def _mask_canary() -> str:
    """24 random characters that change under base64, URL and JSON encoding.

    Standard and URL-safe base64 differ only if a sextet is 62 or 63; for ASCII
    text that needs a third byte of a group such as '?' or '~', hence those.
    """
    alphabet = string.ascii_letters + string.digits + "?~"
    for _ in range(10000):
        r = "".join(secrets.choice(alphabet) for _ in range(19))
        value = f'{r[:5]}"{r[5:9]}\\{r[9:13]}/{r[13:16]} {r[16:]}&'
        std = base64.b64encode(value.encode()).decode()
        if len(value) == 24 and ("+" in std or "/" in std):
            return value
    raise AssertionError("no canary")


def test_mask_output_conceals_secret_and_encodings(home):
    canary = _mask_canary()
    raw = canary.encode()
    forms = {
        "raw": raw,
        "b64": base64.b64encode(raw),
        "b64url": base64.urlsafe_b64encode(raw),
        "url": urllib.parse.quote(canary, safe="").encode(),
        "json": json.dumps(canary)[1:-1].encode(),
    }
    assert len(set(forms.values())) == len(forms), forms
    key_init(home)
    simple_context(home, "mask-1", raw)

    proc = launch(["run", "--execution-id", "mask-1", "--mask-output", "--",
                   sys.executable, "-c", MASK_CHILD, "hello world", "5"], home)
    assert proc.returncode == 5, describe(proc)
    expected = (
        b"start hello world\n"
        + b"".join(f"{label}=<concealed>;\n".encode() for label in ("raw", "b64", "b64url", "b64nopad", "url", "json"))
        + b"split=<concealed>;\n"
        + b"other text, unchanged: done\n"
    )
    for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        for label, form in forms.items():
            assert form not in stream, f"{label} form {form!r} leaked on {name}:\n{describe(proc)}"
        assert stream == expected, f"{name} differs:\n{describe(proc)}"

    # Without --mask-output the same child's output is untouched (the test can see leaks).
    plain = launch(["run", "--execution-id", "mask-1", "--", sys.executable, "-c", MASK_CHILD, "x", "0"], home)
    assert plain.returncode == 0 and all(form in plain.stdout for form in forms.values()), describe(plain)


def test_mask_output_leaves_non_secret_values_alone(home):
    key_init(home)
    secret = new_canary("masked")
    ok(run_create(home, "mask-2", secret))
    code = ("import os, sys; v = os.environ['VISIBLE'] + ' ' + os.environ['CTX_SECRET']; "
            "print(v); print(v, file=sys.stderr)")
    proc = launch(["run", "--execution-id", "mask-2", "--mask-output", "--", sys.executable, "-c", code], home)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == b"visible-value-42 <concealed>\n", describe(proc)
    assert proc.stderr == b"visible-value-42 <concealed>\n", describe(proc)


def test_secret_memory_by_lifetime(home, tmp_path):
    """What a supervisor holds while its child runs (--mask-output's patterns) is in a
    memfd_secret area; what a launch holds until execve is locked, dump-excluded memory
    (LockedRegion says why), and no memfd_secret is made for it."""
    key_init(home)
    secret = new_canary("lifetime")
    ok(run_create(home, "mem-1", secret))
    code = "import sys, time; print('ready', flush=True); sys.stdin.read()"
    proc = subprocess.Popen([str(binary_path()), "run", "--execution-id", "mem-1", "--mask-output", "--",
                             sys.executable, "-c", code], env=base_env(home), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert proc.stdout.readline() == b"ready\n"
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
    finally:
        proc.stdin.close()
        proc.wait(timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr.read()
    assert "secretmem" in maps, f"the masker's patterns are not in memfd_secret memory:\n{maps}"

    log = tmp_path / "exec.log"
    traced = launch(["run", "--execution-id", "mem-1", "--", "true"], home,
                    prefix=["strace", "-f", "-qq", "-e", "trace=memfd_secret,mlock,madvise", "-o", str(log)])
    assert traced.returncode == 0, describe(traced)
    calls = log.read_text()
    assert "memfd_secret(" not in calls, calls
    assert "MADV_DONTDUMP" in calls and "mlock(" in calls, calls


def run_create(home, exec_id, secret: bytes):
    """A context with the plain VISIBLE=visible-value-42 and the secret CTX_SECRET."""
    return launch(["context", "create", "--execution-id", exec_id, "--env", "VISIBLE=visible-value-42",
                   "--secret", "CTX_SECRET"], home, input=secret + b"\n")


# --------------------------------------------------------------------------
# 9. strace: no secret in writes to files, no file created by the launcher

STRACE_SET = ("openat,open,creat,read,write,pwrite64,writev,pwritev,pwritev2,rename,renameat,renameat2,"
              "link,linkat,symlink,symlinkat,mknod,mknodat,memfd_create,execve")
WRITES = {"write", "pwrite64", "writev", "pwritev", "pwritev2"}
CREATES = {"creat", "rename", "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat", "mknod", "mknodat"}
def _fd_path(args: str) -> str | None:
    """The path strace -y shows for a call's first (fd) argument."""
    m = re.match(r"^-?\d+<(.*?)>, ", args)
    return m.group(1) if m else None


def _strace_string(args: str) -> str:
    """The first string argument of a call, strace's escapes undone."""
    m = re.search(r'"((?:[^"\\]|\\.)*)"', args)
    return m.group(1).encode("latin-1", "replace").decode("unicode_escape") if m else ""


def _is_file_path(path: str | None) -> bool:
    return bool(path) and path.startswith("/") and not path.startswith("/dev/")


def strace_launch(args, home, log: Path, input=None, env_extra=None):
    return launch(args, home, input=input, env_extra=env_extra, timeout=60,
                  prefix=["strace", "-f", "-y", "-qq", "-s", "65536", "-e", f"trace={STRACE_SET}", "-o", str(log)])


def file_writes_containing(calls, needle: bytes):
    text = needle.decode()
    return [c["line"][:300] for c in calls
            if c["name"] in WRITES and _is_file_path(_fd_path(c["args"])) and text in c["args"]]


def test_strace_no_secret_written_and_no_file_created(home, tmp_path):
    key_init(home)
    canary = new_canary("strace")

    create_log = tmp_path / "create.log"
    created = strace_launch(["context", "create", "--execution-id", "st-1", "--env", "CTX_PLAIN=plain",
                             "--secret", "CTX_SECRET"], home, create_log, input=canary + b"\n")
    assert created.returncode == 0, describe(created)
    calls = strace_calls(create_log)
    assert any(c["name"] == "pwrite64" and "stigmer.db" in c["args"] for c in calls), "no store write traced"
    stdin_data = "".join(_strace_string(c["args"]) for c in calls if c["name"] == "read" and c["args"].startswith("0<"))
    assert canary.decode() in stdin_data, \
        f"the canary read from stdin is not visible in the trace: the check would be blind ({stdin_data!r})"
    leaks = file_writes_containing(calls, canary)
    assert not leaks, f"context create wrote the secret to a file: {leaks}"

    before = {str(p) for p in home.rglob("*")}
    run_log = tmp_path / "run.log"
    launched = strace_launch(["run", "--execution-id", "st-1", "--", "sh", "-c", 'printf %s "$CTX_SECRET"'],
                             home, run_log)
    assert launched.returncode == 0 and launched.stdout == canary, describe(launched)
    calls = strace_calls(run_log)
    leaks = file_writes_containing(calls, canary)
    assert not leaks, f"run wrote the secret to a file: {leaks}"
    assert any(c["name"] in WRITES and canary.decode() in c["args"] for c in calls), \
        "the child's write of the canary is not in the trace: the check would be blind"

    # The launcher's part: everything before the execve of the child.
    execs = [i for i, c in enumerate(calls) if c["name"] == "execve" and c["ret"] == "0"]
    assert len(execs) >= 2, f"expected the launcher's and the child's execve: {[calls[i]['line'] for i in execs]}"
    # The child's execve: its path, and its argv (strace reads the locked area as root
    # can; with a masker's memfd_secret area it could not).
    assert calls[execs[1]]["args"].startswith('"/usr/bin/sh"') or '["sh", "-c"' in calls[execs[1]]["args"], \
        calls[execs[1]]["line"]
    launcher_calls = calls[: execs[1]]
    assert any(c["name"] == "openat" and "stigmer.db" in c["args"] for c in launcher_calls), \
        "the launcher's store access is not in the trace: the check would be blind"
    new_files = []
    for c in launcher_calls:
        if c["ret"] == "?" or int(c["ret"]) < 0:
            continue
        if c["name"] in CREATES:
            new_files.append(c["line"][:300])
        elif c["name"] in ("open", "openat") and "O_CREAT" in c["args"]:
            path = re.match(r"^<(.*?)>", c["rest"].strip())
            path = path.group(1) if path else "?"
            # O_CREAT on an existing store file (SQLite's -wal/-shm) creates nothing.
            if path not in before:
                new_files.append(c["line"][:300])
    assert not new_files, f"the launcher created files during run: {new_files}"
    assert {str(p) for p in home.rglob("*")} == before
