"""The one shared module of helpers for the black-box tests of stigmer-exec and its
companion stigmer-exec-full. Every test file imports from here; conftest.py holds only
the pytest fixtures (and builds them from these helpers).

- Binaries: $STIGMER_EXEC_BIN (absolute path), defaulting to <repo>/.build/debug/stigmer-exec;
  the companion is stigmer-exec-full beside it. Shared examples live in
  <repo>/../shared/examples/ and are only read.
- Processes: `run` (to completion) and `spawn` (in the background) start a binary with a
  clean environment (`base_env`), retrying while a build relinks it ("Text file busy").
- Assertions and polling: `describe`, `ok`, `one_line_error`, `wait_for` (poll with a
  timeout, raise naming what was awaited), `read_line`, `wait_exit`, `wait_gone`, …
- The stored-context workflow: `key_init`, `apply_examples`, `create_context`, …
- Faults: `SmallDisk` (a small tmpfs to fill up, and `attempts` of a writing command at
  several fill levels), `disk_full_error`, `integrity_check`, `store_state`.
- An MCP client (the official SDK's stdio client) for `mcp run` and wrapped configs.
- Remote and PostgreSQL: `Server` (`stigmer-exec serve`, a `BackgroundProcess`),
  `PgCluster`, a recording stand-in companion, gRPC stubs and RFC 9180 HPKE opening.
- Kubernetes: `k8s_round_trip`, a document through the official client's model and back
  (the `kubernetes` package is needed only by the tests that call it).
"""

from __future__ import annotations

import asyncio
import datetime
import errno
import hashlib
import hmac
import importlib
import importlib.resources
import json
import os
import pty
import re
import resource
import secrets
import select
import selectors
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

INTEGRATION_DIR = Path(__file__).resolve().parent
REPO = INTEGRATION_DIR.parent
EXAMPLES = REPO.parent / "shared" / "examples"
TIMEOUT_S = 60

DB = "stigmer.db"
KEY_FILE = "encryption.key"
MANIFESTS = [
    "agent-github-reviewer.yaml",
    "agentinstance-github-reviewer-prod.yaml",
    "environment-base.yaml",
    "environment-github-prod.yaml",
]
EXAMPLE_TOKEN = b"ghp_example0000000000000000000000000000"

# A child that prints the named variables (None when unset) as one JSON object.
PRINT_ENV = "import json,os,sys; print(json.dumps({k: os.environ.get(k) for k in sys.argv[1:]}))"
PYTHON = sys.executable  # absolute: children may get a minimal environment


# --------------------------------------------------------------------------
# the binaries


def binary_path() -> Path:
    """Where the launcher under test is expected to be (it may not exist)."""
    override = os.environ.get("STIGMER_EXEC_BIN")
    if override:
        return Path(override)
    return REPO / ".build" / "debug" / "stigmer-exec"


def companion_path() -> Path:
    """stigmer-exec-full, installed beside the launcher."""
    return binary_path().parent / "stigmer-exec-full"


# --------------------------------------------------------------------------
# starting processes


def retry_busy(fn, timeout: float = 20.0):
    """Call fn(); while a build is replacing a binary ("Text file busy", as an OSError or
    in a finished process's stderr), try again for up to `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = fn()
        except OSError as exc:
            if exc.errno != errno.ETXTBSY or time.monotonic() > deadline:
                raise
        else:
            busy = isinstance(result, subprocess.CompletedProcess) and b"Text file busy" in (result.stderr or b"")
            if not busy or time.monotonic() > deadline:
                return result
        time.sleep(0.2)


def base_env(home, env_extra=None) -> dict:
    """The environment the binary gets: PATH, HOME (the parent of `home`, a per-test
    temporary directory), STIGMER_HOME=home, then `env_extra` (a None value unsets)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(Path(home).parent),
        "STIGMER_HOME": str(home),
    }
    for name, value in (env_extra or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    return env


def _fd_map_preexec(fd_map):
    """A preexec_fn that places open descriptors at fixed numbers in the child."""
    pairs = sorted(fd_map.items())
    for child_fd, _ in pairs:
        if child_fd < 3:
            raise ValueError("fd_map is for descriptors >= 3; use input= for stdin")

    def place_fds():  # runs in the child between fork and exec
        for child_fd, parent_fd in pairs:
            if parent_fd == child_fd:  # dup2 onto itself keeps FD_CLOEXEC
                os.set_inheritable(child_fd, True)
            else:
                os.dup2(parent_fd, child_fd, inheritable=True)

    return place_fds


def _popen_kwargs(fd_map, kwargs: dict) -> dict:
    """`fd_map` ({child_fd: parent_fd}) places descriptors at fixed numbers in the child
    (e.g. {3: read_end} for `--key-fd 3`). Python's own descriptors are non-inheritable,
    so only the mapped ones (and stdio) reach the child."""
    if not fd_map:
        return kwargs
    place = _fd_map_preexec(fd_map)
    other = kwargs.pop("preexec_fn", None)

    def preexec():
        place()
        if other is not None:
            other()

    # pass_fds would force close_fds=True, and subprocess closes descriptors
    # *after* preexec_fn, which would close the dup2'd ones again.
    return {**kwargs, "close_fds": False, "preexec_fn": preexec}


def run(args, home, input=None, env_extra=None, fd_map=None, *, timeout: float = TIMEOUT_S,
        new_session: bool = False, prefix=(), binary=None, env=None, **kwargs):
    """Run `[prefix…] stigmer-exec ARGS` to completion; return the CompletedProcess.

    The environment is `base_env(home, env_extra)` unless `env` is given whole. stdin is
    `input` (bytes) or /dev/null; stdout and stderr are captured as bytes. `new_session`
    starts it with no controlling terminal (so even an unfiltered vhangup/TIOCSTI cannot
    reach the terminal of whoever runs pytest). `binary` replaces the launcher (e.g.
    companion_path()); other keyword arguments (cwd, preexec_fn, …) go to subprocess.
    """
    argv = [*map(str, prefix), str(binary or binary_path()), *[str(a) for a in args]]
    popen = _popen_kwargs(fd_map, dict(kwargs))
    return retry_busy(lambda: subprocess.run(
        argv,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env if env is not None else base_env(home, env_extra),
        timeout=timeout,
        check=False,
        start_new_session=new_session,
        **popen,
    ))


def spawn(args, home, env_extra=None, *, stdin=subprocess.DEVNULL, binary=None, **kwargs) -> subprocess.Popen:
    """Start the binary without waiting; stdout/stderr are pipes, stdin /dev/null (or `stdin`)."""
    return retry_busy(lambda: subprocess.Popen(
        [str(binary or binary_path()), *[str(a) for a in args]],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=base_env(home, env_extra),
        **kwargs,
    ))


def kill_quietly(proc):
    """Kill `proc` if it still runs and collect it (its pipes may already be closed)."""
    if proc.poll() is None:
        proc.kill()
    try:
        proc.communicate(timeout=TIMEOUT_S)
    except ValueError:  # pipes already closed by an earlier communicate()
        proc.wait(timeout=TIMEOUT_S)


class PtyProcess:
    """The binary started on a pseudo-terminal, as an interactive shell would start it: a
    session leader whose controlling terminal is the pty (so its process group is the
    terminal's foreground group) and whose stdin, stdout and stderr are the pty. The test
    holds the master side: what it writes is typed at the terminal (b"\\x03" is Ctrl-C,
    which the line discipline turns into SIGINT for the foreground group), what it reads
    is the screen. `prefix` (an absolute command, e.g. strace) runs the binary under it.
    Use as a context manager: the process is killed if still running."""

    def __init__(self, args, home, env_extra=None, *, binary=None, prefix=()):
        argv = [*map(str, prefix), str(binary or binary_path()), *[str(a) for a in args]]
        env = base_env(home, env_extra)
        pid, master = pty.fork()  # the child: setsid(), the pty as ctty and stdio
        if pid == 0:
            try:
                # Python ignores SIGPIPE and SIGXFSZ; a shell would not hand that on.
                for sig in (signal.SIGPIPE, signal.SIGXFSZ):
                    signal.signal(sig, signal.SIG_DFL)
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.pid, self.master = pid, master
        self.output = b""
        self.returncode = None
        self._eof = False

    def __enter__(self) -> "PtyProcess":
        return self

    def __exit__(self, *exc):
        self.close()

    def foreground_group(self) -> int:
        """The terminal's foreground process group."""
        return os.tcgetpgrp(self.master)

    def interrupt_char(self) -> bytes:
        return termios.tcgetattr(self.master)[6][termios.VINTR]

    def write(self, data: bytes):
        os.write(self.master, data)

    def _read(self, timeout: float):
        """Append what the terminal shows within `timeout` s to self.output."""
        if self._eof:
            return
        ready, _, _ = select.select([self.master], [], [], max(timeout, 0))
        if not ready:
            return
        try:
            chunk = os.read(self.master, 65536)
        except OSError as exc:  # EIO: every process holding the terminal has gone
            if exc.errno != errno.EIO:
                raise
            chunk = b""
        if chunk:
            self.output += chunk
        else:
            self._eof = True

    def expect(self, pattern: bytes, timeout: float, what: str) -> re.Match:
        """Read until `pattern` (a regex) appears on the terminal; return its match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = regex.search(self.output)
            if m:
                return m
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._eof:
                why = "the terminal closed" if self._eof else f"timed out after {timeout} s"
                raise AssertionError(f"{why} waiting for {what}; the terminal showed {self.output!r}")
            self._read(min(remaining, 0.1))

    def wait(self, timeout: float = 10.0) -> int:
        """Read the terminal to the end, reap the process; its exit code (-N for signal N)."""
        def exited():
            self._read(0.05)
            if self.returncode is None:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid == self.pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode is not None

        wait_for(exited, timeout, lambda: f"pid {self.pid} on the terminal to exit (it showed {self.output!r})",
                 interval=0.01)
        # Output still buffered in the pty once the process has gone.
        end = time.monotonic() + 1.0
        while not self._eof and time.monotonic() < end:
            self._read(0.05)
        return self.returncode

    def close(self):
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


# --------------------------------------------------------------------------
# assertions


def describe(proc) -> str:
    """A short description of a finished process, for assertion messages."""
    return (
        f"exit={proc.returncode}\n"
        f"stdout={proc.stdout!r}\n"
        f"stderr={proc.stderr!r}"
    )


def ok(proc):
    assert proc.returncode == 0, describe(proc)
    return proc


def one_stderr_line(proc) -> str:
    """stderr is exactly one newline-terminated line, and no crash report."""
    err = proc.stderr.decode("utf-8", errors="replace")
    assert len(err.splitlines()) == 1, f"expected exactly one stderr line:\n{describe(proc)}"
    assert err.endswith("\n"), f"the stderr line is not newline-terminated:\n{describe(proc)}"
    assert "Traceback" not in err and "Fatal error" not in err, describe(proc)
    return err


def one_line_error(proc, codes, *needles: str, secrets_=()) -> str:
    """Exit code in `codes` (an int or several), empty stdout, exactly one stderr line
    holding every needle, and none of `secrets_` (bytes) anywhere in the output."""
    codes = (codes,) if isinstance(codes, int) else tuple(codes)
    assert proc.returncode in codes, f"expected exit {codes}:\n{describe(proc)}"
    assert proc.stdout == b"", describe(proc)
    err = one_stderr_line(proc)
    for needle in needles:
        assert needle in err, f"{needle!r} not in stderr:\n{describe(proc)}"
    for secret in secrets_:
        assert secret not in proc.stderr and secret not in proc.stdout, "a secret value is in the output"
    return err


def mode_of(path) -> int:
    """The permission bits of `path` itself (a symlink is not followed)."""
    return stat.S_IMODE(os.lstat(path).st_mode)


def files_containing(root: Path, needle: bytes) -> list[str]:
    if not root.exists():
        return []
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def env_lines(stdout: bytes) -> dict[str, str]:
    """`env` output (no multi-line values expected) as a dict."""
    out = {}
    for line in stdout.decode().splitlines():
        if "=" in line:
            k, _, v = line.partition("=")
            out[k] = v
    return out


def parse_variable_table(stdout: bytes) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """(header fields, {NAME: (SECRET, LAYER)}) of `context get` or `plan` output: optional
    `key value` header lines, then a NAME SECRET LAYER table."""
    lines = stdout.decode().splitlines()
    assert [line for line in lines if line.strip()], "no output where a table was expected"
    header: dict[str, str] = {}
    i = 0
    while i < len(lines) and lines[i].strip() and lines[i].split()[0] != "NAME":
        key, _, value = lines[i].strip().partition(" ")
        header[key] = value.strip()
        i += 1
    while i < len(lines) and not lines[i].strip():
        i += 1
    assert i < len(lines), f"no table in {stdout!r}"
    assert lines[i].split() == ["NAME", "SECRET", "LAYER"], lines[i]
    rows = {}
    for line in lines[i + 1:]:
        if not line.strip():
            continue
        cells = line.split()
        assert len(cells) == 3, f"row is not NAME SECRET LAYER: {line!r}"
        assert cells[0] not in rows, f"duplicate row {cells[0]}"
        assert cells[1] in ("yes", "no"), f"SECRET is not yes/no: {line!r}"
        rows[cells[0]] = (cells[1], cells[2])
    return header, rows


def table_rows(stdout: bytes) -> dict[str, tuple[str, str]]:
    """The NAME SECRET LAYER rows of `context get` / `plan` output."""
    return parse_variable_table(stdout)[1]


# --------------------------------------------------------------------------
# polling, always with a timeout


def wait_for(predicate, timeout: float, what, interval: float = 0.05):
    """Poll `predicate` until it returns something truthy and return that; after
    `timeout` s raise AssertionError naming `what` was awaited (`what` may be a callable
    giving the text, evaluated then, e.g. to show the state that was last seen)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            text = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout} s waiting for {text}")
        time.sleep(interval)


def read_line(proc, timeout: float = 15.0) -> bytes:
    """One line of proc.stdout, read byte by byte so the rest stays in the pipe. Returns
    what came before EOF if the stream ends first; raises after `timeout` s."""
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while not buf.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout} s waiting for a line on the stdout of pid "
                                     f"{proc.pid} (got {buf!r}, exit {proc.poll()})")
            if not sel.select(remaining):
                continue
            chunk = os.read(fd, 1)
            if not chunk:
                break
            buf += chunk
    return buf


def wait_exit(proc, timeout: float = 5.0) -> int:
    """proc's exit status; raise if it has not exited within `timeout` s."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"timed out after {timeout} s waiting for process {proc.pid} to exit") from None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has exited all the same.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pid: int, timeout: float = 5.0):
    wait_for(lambda: not pid_alive(pid), timeout, f"process {pid} to exit", interval=0.02)


def wait_file(path: Path, timeout: float = 5.0) -> str:
    """The text of `path` once it exists and is not empty."""
    wait_for(lambda: path.exists() and path.stat().st_size > 0, timeout, f"{path} to be written", interval=0.02)
    return path.read_text()


# --------------------------------------------------------------------------
# small things


def new_canary(tag: str = "canary") -> bytes:
    """A random value to plant as a secret and look for where it must not be."""
    return f"{tag}-{secrets.token_hex(12)}".encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(tmp_path, name: str, text) -> Path:
    path = Path(tmp_path) / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def write_json(path: Path, doc) -> Path:
    path.write_text(json.dumps(doc, indent=2))
    return path


def print_env(names) -> list[str]:
    """A child command that prints the named variables as one JSON object."""
    return ["python3", "-c", PRINT_ENV, *names]


# --------------------------------------------------------------------------
# manifests and limits


def env_manifest(name: str, data: dict[str, str], secret=()) -> str:
    """An Environment manifest (YAML) holding `data`; the names in `secret` are secret."""
    text = f"apiVersion: agentic.stigmer.ai/v1\nkind: Environment\nmetadata:\n  name: {name}\nspec:\n  data:\n"
    for var, value in data.items():
        text += f"    {var}:\n      value: {value}\n"
        if var in secret:
            text += "      is_secret: true\n"
    return text


# An Environment whose second variable has a name that is not a POSIX name, on line 9.
BAD_NAME_ENV = (
    "apiVersion: agentic.stigmer.ai/v1\n"  # 1
    "kind: Environment\n"  # 2
    "metadata:\n"  # 3
    "  name: bad\n"  # 4
    "spec:\n"  # 5
    "  data:\n"  # 6
    "    GOOD:\n"  # 7
    "      value: a\n"  # 8
    "    BAD-NAME:\n"  # 9
    "      value: b\n"  # 10
)
BAD_NAME_LINE = 9

ADDRESS_SPACE = "Max address space"
CORE_FILE_SIZE = "Max core file size"


def limits_of(proc) -> dict[str, tuple[str, str]]:
    """Parse `cat /proc/self/limits` output: {"Max core file size": (soft, hard)}."""
    out = {}
    for line in proc.stdout.decode().splitlines()[1:]:
        m = re.match(r"^(.*?)\s{2,}(\S+)\s+(\S+)", line)
        if m:
            out[m.group(1).strip()] = (m.group(2), m.group(3))
    return out


# --------------------------------------------------------------------------
# the stored-context workflow


def key_init(home) -> str:
    """`key init` in `home`; return the key file's base64 text."""
    ok(run(["key", "init"], home))
    return (Path(home) / KEY_FILE).read_text().strip()


def apply_examples(home, examples, *extra, store=None, log=()):
    """`apply` the four example manifests (and `extra` files), into `store` if given."""
    args = ["apply", *log]
    if store:
        args += ["--store", store]
    for name in MANIFESTS:
        args += ["-f", Path(examples) / name]
    for path in extra:
        args += ["-f", path]
    return ok(run(args, home))


def create_context(home, exec_id, *args, secret_stdin: bytes | None = None, env_extra=None, store=None):
    """`context create [--store STORE] --execution-id exec_id ARGS`; stdin is secret_stdin + newline."""
    return run(
        ["context", "create", *(["--store", store] if store else []), "--execution-id", exec_id, *args],
        home,
        input=None if secret_stdin is None else secret_stdin + b"\n",
        env_extra=env_extra,
    )


def simple_context(home, exec_id, canary: bytes, *extra):
    """A context with CTX_PLAIN=plain and the secret CTX_SECRET=canary."""
    return ok(
        create_context(home, exec_id, "--env", "CTX_PLAIN=plain", "--secret", "CTX_SECRET", *extra, secret_stdin=canary)
    )


# --------------------------------------------------------------------------
# faults: a disk that fills up, and what the store held before


class SmallDisk:
    """A small tmpfs (root only) to run out of space on, for the disk-full tests of any
    writing command (`apply`, `context create`, `key rotate`): `home` is a STIGMER_HOME
    path on it; `fill(leave)` takes all but about `leave` bytes with a filler file, `free()`
    gives them back. The `small_disk` fixture mounts one and unmounts it afterwards."""

    FILLER = "filler"

    def __init__(self, mountpoint: Path, size: int):
        self.mountpoint = Path(mountpoint)
        self.size = size
        self.home = self.mountpoint / "home"

    def mount(self) -> "SmallDisk":
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0700", "stigmer-small-disk",
                               str(self.mountpoint)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        if proc.returncode != 0:
            raise OSError(f"cannot mount a tmpfs at {self.mountpoint}: {proc.stderr.decode(errors='replace').strip()}")
        return self

    def unmount(self):
        # Lazy: a process the test left behind must not keep the mount (or the test) alive.
        subprocess.run(["umount", "-l", str(self.mountpoint)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=30)

    def available(self) -> int:
        st = os.statvfs(self.mountpoint)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int = 0) -> int:
        """Leave about `leave` bytes free (rounded down to pages); return what is left."""
        self.free()
        page = os.sysconf("SC_PAGE_SIZE")
        take = (self.available() - leave) // page * page
        if take > 0:
            with open(self.mountpoint / self.FILLER, "wb") as f:
                os.posix_fallocate(f.fileno(), 0, take)
        return self.available()

    def free(self):
        (self.mountpoint / self.FILLER).unlink(missing_ok=True)

    def attempts(self, args, levels, state, where, saved: Path, *, input=None, secrets_=(),
                 on_success=None) -> dict:
        """Run `stigmer-exec ARGS` in `home` once per fill level (bytes left free), each
        time from the home as it is now (its files are kept in `saved`, off this disk).
        A failure must be `disk_full_error` naming `where` (a path, or a tuple of paths:
        the store and the key file, say), with the store whole and
        `state()` (e.g. `store_state`, plus the key file for `key rotate`) as before;
        `on_success(leave)` checks a run that had room enough. Returns {leave: exit status}."""
        saved.mkdir(parents=True, exist_ok=True)
        for path in self.home.iterdir():
            shutil.copy2(path, saved / path.name)
        before = state()
        outcomes = {}
        for leave in levels:
            for path in self.home.iterdir():
                path.unlink()
            for path in saved.iterdir():
                shutil.copy2(path, self.home / path.name)
            self.fill(leave)
            proc = run(args, self.home, input=input)
            self.free()
            outcomes[leave] = proc.returncode
            if proc.returncode == 0:
                if on_success:
                    on_success(leave)
                continue
            disk_full_error(proc, where, secrets_=secrets_)
            stray = {path.name for path in self.home.iterdir()} - {path.name for path in saved.iterdir()}
            assert not stray, f"with {leave} bytes left the failed write left {sorted(stray)}"
            if (self.home / DB).exists():
                assert integrity_check(self.home / DB) == "ok", f"with {leave} bytes left: the store is damaged"
            after = state()
            assert after == before, f"with {leave} bytes left the home shows something else:\n{before}\n{after}"
        return outcomes


def disk_full_error(proc, where, secrets_=()) -> str:
    """A writing command that ran out of space: exit 74, nothing on stdout, one stderr
    line that says the disk is full, names `where` (the store or file; or a tuple of
    paths, one of which) and says what to do, and holds none of `secrets_`."""
    err = one_line_error(proc, 74, secrets_=secrets_)
    places = [str(w) for w in (where if isinstance(where, (tuple, list)) else (where,))]
    assert any(place in err for place in places), f"the line names none of {places}:\n{describe(proc)}"
    assert "full" in err and "free" in err, f"the line does not say the disk is full and what to do:\n{describe(proc)}"
    return err


def integrity_check(db: Path) -> str:
    """SQLite's own `PRAGMA integrity_check` of the store ("ok" when whole), opened
    read-only so the check changes nothing."""
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return "\n".join(row[0] for row in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


def store_state(home, environments=(), contexts=()) -> dict:
    """What the store shows through the binary: `env list`, `env get` of each of
    `environments` and the table of `context get` of each of `contexts` (times left out:
    they are the creation's). Each entry is (exit status, stdout), so "not found" is a
    state too. Two equal results mean the user sees the same store."""
    state = {"env list": _shown(run(["env", "list"], home))}
    for name in environments:
        state[f"env get {name}"] = _shown(run(["env", "get", name], home))
    for exec_id in contexts:
        code, out = _shown(run(["context", "get", exec_id], home))
        state[f"context get {exec_id}"] = (code, out.split(b"\n\n", 1)[-1])
    return state


def _shown(proc) -> tuple[int, bytes]:
    assert proc.returncode in (0, 66), f"the store cannot be read:\n{describe(proc)}"
    return proc.returncode, proc.stdout


# --------------------------------------------------------------------------
# the example story: `context create STORY_ARGS` with the secret SLACK_WEBHOOK on stdin

STORY_ARGS = ["--instance", "github-reviewer-prod", "--env", "LOG_LEVEL=trace", "--secret", "SLACK_WEBHOOK"]
STORY_NAMES = ["LOG_LEVEL", "TIMEOUT", "GITHUB_TOKEN", "GITHUB_ORG", "SLACK_WEBHOOK"]
STORY_LAYERS = {
    "LOG_LEVEL": ("no", "runtime"),
    "TIMEOUT": ("no", "environment:base"),
    "GITHUB_TOKEN": ("yes", "environment:github-prod"),
    "GITHUB_ORG": ("no", "environment:github-prod"),
    "SLACK_WEBHOOK": ("yes", "runtime"),
}


def story_values(canary: bytes) -> dict[str, str]:
    """What `--instance github-reviewer-prod --env LOG_LEVEL=trace --secret SLACK_WEBHOOK` gives."""
    return {
        "LOG_LEVEL": "trace",
        "TIMEOUT": "30s",
        "GITHUB_TOKEN": EXAMPLE_TOKEN.decode(),
        "GITHUB_ORG": "my-org",
        "SLACK_WEBHOOK": canary.decode(),
    }


# --------------------------------------------------------------------------
# MCP: a context for the probe server, its configs, and a real MCP client

SERVER_SCRIPT = INTEGRATION_DIR / "mcp_env_server.py"
MCP_EXEC_ID = "mcp-1"
PLAIN_ORG = "acme-org-7"
LIT_TEMPLATE = "costs $$5 and $${x}"
SESSION_TIMEOUT_S = 20
PROBE_TOOLS = {"env_names", "env_value", "secret_digest", "cwd", "argv", "pid", "env_digests"}


class McpContext:
    """A home with a key and the execution context the MCP tests start from:
    PLAIN_ORG, WORKDIR and the secrets SECRET_TOKEN and UNUSED_SECRET (random canaries)."""

    def __init__(self, home: Path, tmp_path: Path, exec_id: str = MCP_EXEC_ID):
        self.home = home
        self.tmp = tmp_path
        self.exec_id = exec_id
        self.token = f"tok-{secrets.token_hex(16)}".encode()
        self.unused = f"unused-{secrets.token_hex(16)}".encode()
        self.workdir = tmp_path / "wd"
        self.workdir.mkdir()
        self.key = key_init(home)
        ok(create_context(home, exec_id, "--env", f"PLAIN_ORG={PLAIN_ORG}", "--env", f"WORKDIR={self.workdir}",
                          "--secret", "SECRET_TOKEN", "--secret", "UNUSED_SECRET",
                          secret_stdin=self.token + b"\n" + self.unused))

    @property
    def canaries(self) -> tuple[bytes, bytes]:
        return (self.token, self.unused)

    def assert_no_canary(self, *blobs: bytes):
        for blob in blobs:
            for canary in self.canaries:
                assert canary not in blob, "a secret canary leaked (value not shown)"


def envsrv_claude(marker: Path, extra_servers: dict | None = None) -> dict:
    """An mcpServers config: `envsrv` (the probe server, stdio) and `remote` (http)."""
    servers = {
        "envsrv": {
            "command": PYTHON,
            "args": [str(SERVER_SCRIPT), "--org=${PLAIN_ORG}"],
            "env": {
                "TOKEN": "${SECRET_TOKEN}",
                "ORG": "${PLAIN_ORG}",
                "LEVEL": "${LOG_LEVEL:-info}",
                "LIT": LIT_TEMPLATE,
                "SHUTDOWN_MARKER": str(marker),
            },
            "cwd": "${WORKDIR:-/tmp}",
        },
        "remote": {
            "type": "http",
            "url": "https://mcp.example.invalid/search?org=${PLAIN_ORG}",
            "headers": {"Authorization": "Bearer ${SECRET_TOKEN}"},
        },
    }
    servers.update(extra_servers or {})
    return {"mcpServers": servers}


async def _call(session, tool: str, **arguments):
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, f"tool {tool} failed: {result}"
    assert isinstance(result.structured_content, dict) and "result" in result.structured_content, result
    return result.structured_content["result"]


def probe(command, args, env, errlog_path: Path, cwd=None) -> dict:
    """Start `command args` (in `cwd`) with the MCP SDK's stdio client, initialise, list
    tools and ask the probe server everything; return what it said. The session is closed
    (stdin EOF, as the SDK does) before this returns. The SDK adds its default variables
    (HOME, LOGNAME, PATH, SHELL, TERM, USER of this process) under `env`."""
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=str(command), args=[str(a) for a in args], env=env,
                                   cwd=None if cwd is None else str(cwd))

    async def session_run() -> dict:
        with open(errlog_path, "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    init = await session.initialize()
                    tools = {tool.name for tool in (await session.list_tools()).tools}
                    out = {
                        "server_name": init.server_info.name,
                        "tools": tools,
                        "env_names": await _call(session, "env_names"),
                        "digest": await _call(session, "secret_digest", name="TOKEN"),
                        "env_digests": await _call(session, "env_digests"),
                        "cwd": await _call(session, "cwd"),
                        "argv": await _call(session, "argv"),
                        "pid": await _call(session, "pid"),
                    }
                    for name in ("LEVEL", "LIT", "ORG"):
                        out[name] = await _call(session, "env_value", name=name)
            return out

    return asyncio.run(asyncio.wait_for(session_run(), SESSION_TIMEOUT_S))


# --------------------------------------------------------------------------
# the server

OPERATOR_TOKEN = "op-" + secrets.token_hex(20)
TOKEN_RE = re.compile(rb"stx2_[A-Za-z0-9_\-]{86}")
SERVING_RE = re.compile(rb"stigmer-exec: serving on (grpcs?)://127\.0\.0\.1:(\d+) with server key ([A-Za-z0-9+/]{43}=)")
HIDDEN_MSG = "permission denied, or no such context for this token"


class BackgroundProcess:
    """The binary under test running in the background (`args`, in `home`): stdout closed,
    stderr drained by a thread into `stderr`. A subclass's `start` calls `launch`, which
    waits for a line on stderr; `stop` signals and waits, `kill` ends it at once (also on
    leaving a `with` block). `name` says what it is in messages, which end with `describe()`."""

    name = "the process"

    def __init__(self, home, args, env_extra=None):
        self.home = Path(home)
        self.args = args
        self.env_extra = env_extra
        self.proc = None
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._reader = None

    def launch(self, pattern: re.Pattern, timeout: float, line: str, **spawn_kwargs) -> re.Match:
        """Spawn `args` and return the match of `pattern` (bytes) on stderr once it appears
        (`line` names it in messages); raise if the process exits first or `timeout` passes."""
        self.proc = spawn(self.args, self.home, self.env_extra, **spawn_kwargs)
        self.proc.stdout.close()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

        def printed():
            m = pattern.search(self.stderr)
            if m:
                return m
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode} before {line}:\n{self.describe()}")
            return None

        return wait_for(printed, timeout, lambda: f"{line}:\n{self.describe()}")

    def _drain(self):
        fd = self.proc.stderr.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # closed under it by stop
                break
            if not chunk:
                break
            with self._lock:
                self._buf += chunk

    @property
    def stderr(self) -> bytes:
        with self._lock:
            return bytes(self._buf)

    def describe(self) -> str:
        code = None if self.proc is None else self.proc.poll()
        return (f"{binary_path()} {' '.join(map(str, self.args))}\nexit={code}\n"
                f"stderr={self.stderr.decode(errors='replace')}")

    def stop(self, sig=signal.SIGTERM, timeout: float = 10.0) -> int:
        """Signal the process, wait for it, return its exit status; kill it and raise if it
        is still running after `timeout` s. On return `stderr` holds everything it wrote
        (read to EOF), so a test may count its lines without waiting any longer."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT_S)
            raise AssertionError(f"{self.name} did not exit within {timeout} s of {sig!r}:\n{self.describe()}")
        finally:
            if self._reader:
                self._reader.join(timeout=TIMEOUT_S)
            drained = not (self._reader and self._reader.is_alive())
            self.proc.stderr.close()
        assert drained, f"{self.name}'s stderr was not read to its end within {TIMEOUT_S} s of its exit"
        return code

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT_S)
        if self._reader:
            self._reader.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.kill()


class Server(BackgroundProcess):
    """`stigmer-exec serve` on 127.0.0.1; stderr is collected in the background."""

    name = "serve"

    def __init__(self, home, tmp_path, *, store=None, port=0, tls=None, sweep="60s", log_level="info",
                 ttl=None, token=OPERATOR_TOKEN, env_extra=None, nofile=None):
        self.nofile = nofile
        self.token_file = Path(tmp_path) / f"operator-token-{secrets.token_hex(4)}"
        self.token_file.write_text(token + "\n")
        self.token_file.chmod(0o600)
        args = ["serve", "--listen", f"127.0.0.1:{port}", "--operator-token-file", self.token_file,
                "--log-level", log_level, "--sweep-interval", sweep]
        if store:
            args += ["--store", store]
        if tls:
            args += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        if ttl:
            args += ["--ttl", ttl]
        super().__init__(home, args, env_extra)
        self.scheme = self.port = self.url = self.server_key = None

    def start(self, timeout: float = 15.0) -> "Server":
        limit = self.nofile
        preexec = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))) if limit else None
        m = self.launch(SERVING_RE, timeout, "the 'serving on' line", preexec_fn=preexec)
        self.scheme = m.group(1).decode()
        self.port = int(m.group(2))
        self.url = f"{self.scheme}://127.0.0.1:{self.port}"
        self.server_key = m.group(3).decode()
        return self


def remote_create(home, server_url, exec_id, *args, secret_stdin: bytes | None = None, token=OPERATOR_TOKEN,
                  env_extra=None):
    """`context create --server URL --execution-id ID ARGS` with `token` in STIGMER_TOKEN."""
    env = {"STIGMER_TOKEN": token} if token is not None else {}
    env.update(env_extra or {})
    return run(["context", "create", "--server", server_url, "--execution-id", exec_id, *args], home,
               input=None if secret_stdin is None else secret_stdin + b"\n", env_extra=env)


def created_token(proc) -> str:
    """The execution token of a successful `context create --server`: stdout is that one line."""
    ok(proc)
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, f"stdout must be exactly the token line:\n{describe(proc)}"
    assert TOKEN_RE.fullmatch(lines[0]), describe(proc)
    assert lines[0] not in proc.stderr, "the token also went to stderr"
    return lines[0].decode()


def remote_cli(home, server_url, *args, token=OPERATOR_TOKEN):
    """`context ARGS --server URL` with `token` in STIGMER_TOKEN."""
    env = {"STIGMER_TOKEN": token} if token is not None else {}
    return run(["context", *args, "--server", server_url], home, env_extra=env)


def remote_run(home, server_url, exec_id, cmd, *, token=None, extra=(), env_extra=None):
    env = {} if token is None else {"STIGMER_TOKEN": token}
    env.update(env_extra or {})
    return run(["run", "--server", server_url, "--execution-id", exec_id, *extra, "--", *cmd], home, env_extra=env)


# --------------------------------------------------------------------------
# the Kubernetes client's models (the `kubernetes` package is imported on first use)

_K8S_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_k8s_api = None


class _K8sBody:
    """What ApiClient.deserialize reads from a response: `.data`, the body as JSON text."""

    def __init__(self, document):
        self.data = json.dumps(document)


def _k8s_client():
    global _k8s_api
    if _k8s_api is None:
        from kubernetes import client

        _k8s_api = client.ApiClient()
    return _k8s_api


def k8s_model(document, model: str):
    """`document` (a dict as read from YAML or JSON) deserialized by the official client as
    `model` (e.g. "V1Pod"); fields the model does not know are dropped silently."""
    return _k8s_client().deserialize(_K8sBody(document), model)


def _k8s_canonical(value):
    """Absent and null are the same to the API (`creationTimestamp: null`), and the client
    writes timestamps back in isoformat (+00:00 for Z): compare those as instants."""
    if isinstance(value, dict):
        return {k: _k8s_canonical(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_k8s_canonical(v) for v in value]
    if isinstance(value, str) and _K8S_TIMESTAMP.match(value):
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


def _k8s_differences(want, got, path="") -> list[str]:
    """Every path where `got` (after the round trip) differs from `want` (as written)."""
    if isinstance(want, dict) and isinstance(got, dict):
        out = []
        for key in want.keys() | got.keys():
            where = f"{path}.{key}"
            if key not in got:
                out.append(f"{where}: dropped (unknown to the model: misspelled, misplaced, or not in this API version?)")
            elif key not in want:
                out.append(f"{where}: added as {got[key]!r}")
            else:
                out += _k8s_differences(want[key], got[key], where)
        return out
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return [f"{path}: {len(want)} items became {len(got)}"]
        return [d for i, (w, g) in enumerate(zip(want, got)) for d in _k8s_differences(w, g, f"{path}[{i}]")]
    if want != got or type(want) is not type(got):
        return [f"{path}: {want!r} became {got!r}"]
    return []


def k8s_round_trip(document, model: str, what: str = "the document"):
    """Assert that `document` deserialized as `model` (e.g. "V1Pod") and serialized back
    (`sanitize_for_serialization`) is unchanged, up to nulls and timestamp spelling: a
    misspelled, misplaced or mistyped field does not survive. `what` names the document in
    the message. Returns the model object."""
    obj = k8s_model(document, model)
    assert type(obj).__name__ == model, f"{what}: deserialized as {type(obj).__name__}, not {model}"
    lost = _k8s_differences(_k8s_canonical(document), _k8s_canonical(_k8s_client().sanitize_for_serialization(obj)))
    assert not lost, f"{what} does not survive the client's {model}:\n  " + "\n  ".join(sorted(lost))
    return obj


# --------------------------------------------------------------------------
# PostgreSQL


def pg_bin() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name)
                        if p.parent.name.isdigit() else 0)
    if not candidates:
        raise RuntimeError("PostgreSQL is not installed (/usr/lib/postgresql/*/bin)")
    return candidates[-1]


def _as_postgres(cmd) -> list[str]:
    return (["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []) + [str(c) for c in cmd]


class PgCluster:
    """A PostgreSQL cluster on 127.0.0.1, owned (started here) or external."""

    def __init__(self, host: str, port: int, user: str = "stigmer", base: Path | None = None, settings=()):
        self.host, self.port, self.user = host, port, user
        self.base = base  # None: external, never started, stopped or restarted here
        self.settings = tuple(settings)  # NAME=VALUE, as `postgres -c` takes them

    @property
    def owned(self) -> bool:
        return self.base is not None

    @classmethod
    def external(cls, url: str) -> "PgCluster":
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 5432, parts.username or "stigmer")

    @classmethod
    def create(cls, settings=(), configure=None) -> "PgCluster":
        """A new cluster, started. `settings`: extra `-c NAME=VALUE`s; `configure(cluster)`
        runs between initdb and the first start (to place files in `cluster.data`)."""
        # Not under pytest's tmp dir: /tmp/pytest-of-root is 0700, and postgres is not root.
        base = Path(tempfile.mkdtemp(prefix="stigmer-pg-"))
        if os.geteuid() == 0:
            shutil.chown(base, user="postgres")
        cluster = cls("127.0.0.1", free_port(), base=base, settings=settings)
        proc = subprocess.run(_as_postgres([pg_bin() / "initdb", "-D", base / "data", "-A", "trust", "-U", "stigmer"]),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        if proc.returncode != 0:
            shutil.rmtree(base, ignore_errors=True)
            raise RuntimeError(f"initdb failed: {proc.stderr.decode(errors='replace')}")
        try:
            if configure:
                configure(cluster)
            cluster.start()
        except BaseException:
            cluster.destroy()
            raise
        return cluster

    @property
    def data(self) -> Path:
        return self.base / "data"

    def place(self, name: str, source: Path, mode: int = 0o600) -> Path:
        """Copy `source` into the data directory as the server's own file (PostgreSQL
        refuses a key file others can read)."""
        target = self.data / name
        shutil.copyfile(source, target)
        target.chmod(mode)
        if os.geteuid() == 0:
            shutil.chown(target, user="postgres")
        return target

    def _ctl(self, *args, check=True):
        proc = subprocess.run(_as_postgres([pg_bin() / "pg_ctl", "-D", self.base / "data", *args]),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        if check and proc.returncode != 0:
            log = (self.base / "log").read_text(errors="replace") if (self.base / "log").exists() else ""
            raise RuntimeError(f"pg_ctl {args} failed: {proc.stderr.decode(errors='replace')}\n{log[-2000:]}")
        return proc

    def _opts(self) -> str:
        return (f"-k {self.base} -p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off "
                f"-c max_connections=200" + "".join(f" -c {setting}" for setting in self.settings))

    def start(self):
        assert self.owned
        self._ctl("-o", self._opts(), "-l", self.base / "log", "-w", "start")

    def stop(self, mode: str = "fast"):
        assert self.owned
        self._ctl("-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast"):
        assert self.owned
        self._ctl("-m", mode, "-o", self._opts(), "-l", self.base / "log", "-w", "restart")

    def destroy(self):
        if not self.owned:
            return
        self._ctl("-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.base, ignore_errors=True)

    def url(self, db: str) -> str:
        return f"postgres://{self.user}@{self.host}:{self.port}/{db}"

    def psql(self, db: str, sql: str) -> str:
        """Run SQL as the cluster's user; return unaligned, tuples-only output."""
        proc = subprocess.run(
            ["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h", self.host, "-p", str(self.port),
             "-U", self.user, "-d", db, "-c", sql],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60,
            env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
        )
        if proc.returncode != 0:
            raise AssertionError(f"psql {sql!r} failed: {proc.stderr.decode(errors='replace')}")
        return proc.stdout.decode().strip()

    def create_db(self, prefix: str = "t") -> str:
        name = f"{prefix}_{secrets.token_hex(6)}"
        self.psql("postgres", f"CREATE DATABASE {name}")
        return name

    def drop_db(self, name: str):
        try:
            self.psql("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        except AssertionError:
            pass


# --------------------------------------------------------------------------
# a private CA


class PrivateCA:
    """A throwaway certificate authority made with openssl in `directory` (EC P-256, valid
    two days), which issues server and client certificates."""

    def __init__(self, directory: Path, name: str = "stigmer-test-ca"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.pem, self.key = self.dir / f"{name}.pem", self.dir / f"{name}.key"
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                      "-keyout", self.key, "-out", self.pem, "-days", "2", "-subj", f"/CN={name}",
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def _openssl(self, *args):
        proc = subprocess.run(["openssl", *map(str, args)], cwd=self.dir, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=60)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")

    def issue(self, name: str, subject_alt_names: str | None = None, client: bool = False) -> tuple[Path, Path]:
        """(cert.pem, key.pem) for CN=`name`; a server certificate names
        `subject_alt_names` (e.g. "DNS:localhost"), a client certificate none."""
        key, csr, cert = self.dir / f"{name}.key", self.dir / f"{name}.csr", self.dir / f"{name}.pem"
        self._openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                      "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
        extensions = self.dir / f"{name}.ext"
        lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
                 f"extendedKeyUsage={'clientAuth' if client else 'serverAuth'}"]
        if subject_alt_names:
            lines.append(f"subjectAltName={subject_alt_names}")
        extensions.write_text("\n".join(lines) + "\n")
        self._openssl("x509", "-req", "-in", csr, "-CA", self.pem, "-CAkey", self.key, "-set_serial",
                      str(secrets.randbits(63)), "-days", "2", "-extfile", extensions, "-out", cert)
        key.chmod(0o600)
        return cert, key


# --------------------------------------------------------------------------
# a recording stand-in for stigmer-exec-full (via $STIGMER_EXEC_FULL)

RECORDER = r'''#!{python}
import json, os, subprocess, sys
# Descriptors the launcher hands the helper (the token on 3) pass through, as exec would.
passed = [fd for fd in range(3, 64) if fd != 1 and os.path.exists("/proc/self/fd/%d" % fd)]
for fd in passed:
    os.set_inheritable(fd, True)
out = subprocess.run([{real!r}, *sys.argv[1:]], stdout=subprocess.PIPE, pass_fds=passed)
n = len(os.listdir({logdir!r}))
with open(os.path.join({logdir!r}, "call-%03d.json" % n), "w") as f:
    json.dump({{"argv": sys.argv[1:], "env": sorted(os.environ), "stdout": out.stdout.hex(),
               "code": out.returncode}}, f)
sys.stdout.buffer.write(out.stdout)
sys.stdout.flush()
sys.exit(out.returncode)
'''


def recording_companion(tmp_path) -> tuple[Path, Path]:
    """(script, log dir): a stand-in companion that runs the real one and records each call's
    argv, environment names and stdout."""
    logdir = Path(tmp_path) / "helper-calls"
    logdir.mkdir()
    script = Path(tmp_path) / "recording-companion"
    script.write_text(RECORDER.format(python=sys.executable, real=str(companion_path()), logdir=str(logdir)))
    script.chmod(0o755)
    return script, logdir


def recorded_calls(logdir: Path) -> list[dict]:
    calls = []
    for path in sorted(logdir.glob("call-*.json")):
        call = json.loads(path.read_text())
        call["stdout"] = bytes.fromhex(call["stdout"])
        calls.append(call)
    return calls


# --------------------------------------------------------------------------
# gRPC stubs and HPKE

PROTO = REPO / "Protos" / "stigmer" / "exec" / "v1" / "execution_context.proto"


def generate_stubs(out_dir: Path):
    """Generate execution_context_pb2{,_grpc} from the .proto into out_dir; import them."""
    from grpc_tools import protoc  # grpcio-tools

    out_dir.mkdir(parents=True, exist_ok=True)
    include = importlib.resources.files("grpc_tools") / "_proto"
    rc = protoc.main([
        "grpc_tools.protoc",
        f"-I{PROTO.parent}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(PROTO),
    ])
    if rc != 0:
        raise RuntimeError(f"protoc failed with {rc}")
    sys.path.insert(0, str(out_dir))
    try:
        pb2 = importlib.import_module("execution_context_pb2")
        pb2_grpc = importlib.import_module("execution_context_pb2_grpc")
    finally:
        sys.path.remove(str(out_dir))
    return pb2, pb2_grpc


HPKE_INFO = b"stigmer-exec/v1 context"
KEM_ID, KDF_ID, AEAD_ID = 0x0020, 0x0001, 0x0003


def _labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt or bytes(32), b"HPKE-v1" + suite_id + label + ikm, hashlib.sha256).digest()


def _labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled_info = length.to_bytes(2, "big") + b"HPKE-v1" + suite_id + label + info
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + labeled_info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def _hpke_context(mode: int, shared_dh: bytes, kem_context: bytes, info: bytes):
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    kem_suite = b"KEM" + KEM_ID.to_bytes(2, "big")
    eae_prk = _labeled_extract(kem_suite, b"", b"eae_prk", shared_dh)
    shared_secret = _labeled_expand(kem_suite, eae_prk, b"shared_secret", kem_context, 32)
    suite = b"HPKE" + KEM_ID.to_bytes(2, "big") + KDF_ID.to_bytes(2, "big") + AEAD_ID.to_bytes(2, "big")
    psk_id_hash = _labeled_extract(suite, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(suite, b"", b"info_hash", info)
    ks_context = bytes([mode]) + psk_id_hash + info_hash
    secret = _labeled_extract(suite, shared_secret, b"secret", b"")
    key = _labeled_expand(suite, secret, b"key", ks_context, 32)
    base_nonce = _labeled_expand(suite, secret, b"base_nonce", ks_context, 12)
    return ChaCha20Poly1305(key), base_nonce


def _raw(public_key) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def hpke_open_all(private_key, enc: bytes, ciphertexts: list[bytes], aads: list[bytes],
                  info: bytes = HPKE_INFO, sender_public: bytes | None = None) -> list[bytes]:
    """RFC 9180 base mode, or Auth mode with `sender_public` (the server key); one
    context, messages opened in order (sequence 0, 1, …)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

    pk_rm = _raw(private_key.public_key())
    dh = private_key.exchange(X25519PublicKey.from_public_bytes(enc))
    kem_context = enc + pk_rm
    if sender_public is not None:
        dh += private_key.exchange(X25519PublicKey.from_public_bytes(sender_public))
        kem_context += sender_public
    aead, base_nonce = _hpke_context(2 if sender_public is not None else 0, dh, kem_context, info)
    out = []
    for seq, (ct, aad) in enumerate(zip(ciphertexts, aads)):
        nonce = bytes(a ^ b for a, b in zip(base_nonce, seq.to_bytes(12, "big")))
        out.append(aead.decrypt(nonce, ct, aad))
    return out


def hpke_seal_all(recipient_public: bytes, plaintexts: list[bytes], aads: list[bytes],
                  info: bytes = HPKE_INFO, sender_private=None) -> tuple[bytes, list[bytes]]:
    """The sender's side (a fake server's): base mode, or Auth mode with `sender_private`."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

    ephemeral = X25519PrivateKey.generate()
    enc = _raw(ephemeral.public_key())
    pk_r = X25519PublicKey.from_public_bytes(recipient_public)
    dh = ephemeral.exchange(pk_r)
    kem_context = enc + recipient_public
    if sender_private is not None:
        dh += sender_private.exchange(pk_r)
        kem_context += _raw(sender_private.public_key())
    aead, base_nonce = _hpke_context(2 if sender_private is not None else 0, dh, kem_context, info)
    out = []
    for seq, (pt, aad) in enumerate(zip(plaintexts, aads)):
        nonce = bytes(a ^ b for a, b in zip(base_nonce, seq.to_bytes(12, "big")))
        out.append(aead.encrypt(nonce, pt, aad))
    return enc, out


class Canonical:
    """DESIGN.md §9's canonical encoding: a label, then u32-length-prefixed fields, i64
    big-endian numbers, one byte per flag."""

    def __init__(self, label: str):
        self.data = b""
        self.add(label)

    def add(self, field) -> "Canonical":
        if isinstance(field, bool):
            self.data += b"\x01" if field else b"\x00"
        elif isinstance(field, int):
            self.data += field.to_bytes(8, "big", signed=True)
        else:
            raw = field.encode() if isinstance(field, str) else bytes(field)
            self.data += len(raw).to_bytes(4, "big") + raw
        return self


def parse_execution_token(token: str):
    """An stx2_ token: (Ed25519 private key, the server key it pins)."""
    import base64
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    assert token.startswith("stx2_"), token[:5]
    raw = base64.urlsafe_b64decode(token[5:] + "=" * (-len(token[5:]) % 4))
    assert len(raw) == 64
    return Ed25519PrivateKey.from_private_bytes(raw[:32]), raw[32:]


def random_execution_token(server_key: bytes | None = None) -> str:
    """A token of the right form that no server issued."""
    import base64
    raw = secrets.token_bytes(32) + (server_key if server_key is not None else secrets.token_bytes(32))
    return "stx2_" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def signed_get(pb2, token: str, execution_id: str, recipient: bytes, names=(), at: int | None = None,
               server_key: bytes | None = None):
    """A GetExecutionContextRequest signed as the launcher signs it."""
    key, pinned = parse_execution_token(token)
    server_key = pinned if server_key is None else server_key
    at = int(time.time()) if at is None else at
    proof = Canonical("stigmer-exec/v1 fetch").add(execution_id).add(recipient).add(server_key).add(at).add(len(names))
    for name in names:
        proof.add(name)
    return pb2.GetExecutionContextRequest(execution_id=execution_id, recipient_public_key=recipient, names=list(names),
                                          token_public_key=_raw(key.public_key()), time=at,
                                          signature=key.sign(proof.data), server_public_key=server_key)


def delivery_plaintext(execution_id: str, created_at: int, expires_at: int, values) -> bytes:
    """What a server seals (DESIGN.md §9): values are (name, is_secret, layer, bytes)."""
    c = Canonical("stigmer-exec/v1 delivery").add(execution_id).add(created_at).add(expires_at).add(len(values))
    for name, is_secret, layer, value in values:
        c.add(name).add(is_secret).add(layer).add(value)
    return c.data


def delivery_aad(execution_id: str) -> bytes:
    return Canonical("stigmer-exec/v1 delivery").add(execution_id).data


def parse_delivery(plaintext: bytes):
    """(execution_id, created_at, expires_at, [(name, is_secret, layer, value)])."""
    at = 0

    def field() -> bytes:
        nonlocal at
        n = int.from_bytes(plaintext[at:at + 4], "big")
        at += 4 + n
        return plaintext[at - n:at]

    def number() -> int:
        nonlocal at
        at += 8
        return int.from_bytes(plaintext[at - 8:at], "big", signed=True)

    def flag() -> bool:
        nonlocal at
        at += 1
        return plaintext[at - 1] == 1

    assert field() == b"stigmer-exec/v1 delivery"
    execution_id, created, expires, count = field().decode(), number(), number(), number()
    values = [(field().decode(), flag(), field().decode(), field()) for _ in range(count)]
    assert at == len(plaintext)
    return execution_id, created, expires, values


# --------------------------------------------------------------------------
# strace logs


CALL_RE = re.compile(r"^(?P<pid>\d+)\s+(?P<name>\w+)\((?P<args>.*)\)\s+=\s+(?P<ret>-?\d+|\?)(?P<rest>.*)$")


def docker_agent(tmp_path: Path, docker_script: str, agent: str, server: str, api_key: str) -> tuple[Path, str]:
    """A stand-in `docker` (the script, first on PATH) and an Agent manifest with one
    docker MCP server `server` whose env_placeholders.API_KEY is `api_key`: the config's
    path and the PATH to launch with."""
    fake_bin = tmp_path / "fakebin"
    fake_bin.mkdir()
    docker = fake_bin / "docker"
    docker.write_text(docker_script)
    docker.chmod(0o755)
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        "apiVersion: agentic.stigmer.ai/v1\n"
        "kind: Agent\n"
        "metadata:\n"
        f"  name: {agent}\n"
        "spec:\n"
        "  mcp_servers:\n"
        f"    - name: {server}\n"
        "      docker:\n"
        "        image: ghcr.io/example/tools-mcp:1.2\n"
        "        env_placeholders:\n"
        f"          API_KEY: {api_key}\n"
    )
    return cfg, f"{fake_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}"


# --------------------------------------------------------------------------
# The sandbox probe (sandbox_probe.py): one JSON line per action

SANDBOX_PROBE = INTEGRATION_DIR / "sandbox_probe.py"


def probe_cmd(*actions) -> list[str]:
    """The probe as a command: the interpreter (absolute), isolated (-I) and without site (-S)."""
    return [PYTHON, "-I", "-S", str(SANDBOX_PROBE), *[str(a) for a in actions]]


def probe_records(proc) -> list[dict]:
    """The probe's JSON lines (the launch must have succeeded)."""
    ok(proc)
    records = []
    for line in proc.stdout.decode(errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"probe output is not one JSON object per line:\n{describe(proc)}") from None
    return records


def strace_calls(log: Path) -> list[dict]:
    """Complete syscalls of an `strace -f -y` log, unfinished/resumed pairs joined, in order."""
    pending: dict[str, str] = {}
    calls = []
    for line in log.read_text(errors="replace").splitlines():
        m = re.match(r"^(\d+)\s+(.*)$", line)
        if not m:
            continue
        pid, body = m.groups()
        if body.endswith("<unfinished ...>"):
            pending[pid] = body[: -len("<unfinished ...>")].rstrip()
            continue
        resumed = re.match(r"^<\.\.\. \w+ resumed>\s?(.*)$", body)
        if resumed:
            body = pending.pop(pid, "") + resumed.group(1)
        c = CALL_RE.match(f"{pid} {body}")
        if c:
            calls.append({**c.groupdict(), "line": body})
    return calls
