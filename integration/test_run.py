"""Black-box tests of `stigmer-exec run` and the stored-context workflow.

Everything goes through the real binary and a real SQLite store under a fresh
per-test STIGMER_HOME: `key init`, `apply`, `env`, `context create|get|delete|gc`
and `run` (exec mode, --delete-on-exit mode and ephemeral mode).
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from helpers import (
    DB,
    EXAMPLE_TOKEN,
    KEY_FILE,
    MANIFESTS,
    PRINT_ENV,
    TIMEOUT_S,
    apply_examples,
    create_context,
    describe,
    env_lines,
    env_manifest,
    key_init,
    kill_quietly,
    mode_of,
    new_canary,
    ok,
    one_line_error,
    parse_variable_table,
    read_line,
    run,
    simple_context,
    spawn,
    wait_for,
    write,
)

# `context get run-1` for the example story with runtime.env.
RUN1_LAYERS = {
    "LOG_LEVEL": ("no", "runtime"),
    "TIMEOUT": ("no", "environment:base"),
    "GITHUB_TOKEN": ("yes", "environment:github-prod"),
    "GITHUB_ORG": ("no", "environment:github-prod"),
    "REGION": ("no", "runtime"),
    "GREETING": ("no", "runtime"),
    "LITERAL": ("no", "runtime"),
    "MULTI": ("no", "runtime"),
    "EMPTY": ("no", "runtime"),
    "SLACK_WEBHOOK": ("yes", "runtime"),
}

PRINT_ARGV = "import json,sys; print(json.dumps(sys.argv[1:]))"

# A child that reports the first of TERM/INT/HUP/USR1 it receives by writing
# the signal number to argv[1] and exiting 7; it gives up after 30 s.
SIGNAL_CHILD = r"""
import os, signal, sys, time
marker = sys.argv[1]
def handler(signum, frame):
    with open(marker, "w") as f:
        f.write(str(signum))
    os._exit(7)
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
    signal.signal(s, handler)
print("READY", flush=True)
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    time.sleep(0.05)
os._exit(99)
"""


# --------------------------------------------------------------------------
# helpers of these tests


def secret_env_manifest(tmp_path, env_name: str, var: str, value: bytes) -> Path:
    return write(
        tmp_path,
        f"environment-{env_name}.yaml",
        "apiVersion: agentic.stigmer.ai/v1\n"
        "kind: Environment\n"
        "metadata:\n"
        f"  name: {env_name}\n"
        "spec:\n"
        "  description: holds a canary secret\n"
        "  data:\n"
        f"    {var}:\n"
        f"      value: {value.decode()}\n"
        "      is_secret: true\n"
        "    VISIBLE:\n"
        "      value: plain\n",
    )


def child_env_json(proc) -> dict:
    ok(proc)
    return json.loads(proc.stdout)


def context_get_rc(home, exec_id) -> int:
    return run(["context", "get", exec_id], home).returncode


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root (and root) with its type, mode, size and content."""
    out = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = os.lstat(path)
        rel = str(path.relative_to(root))
        data = path.read_bytes() if path.is_file() else None
        out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_size, data)
    return out


# --------------------------------------------------------------------------
# 1. the example story, end to end


def test_story_create_get_run(home, examples):
    key_init(home)
    proc = apply_examples(home, examples)
    applied = proc.stdout.decode().splitlines()
    for line in (
        "Agent/github-reviewer applied",
        "AgentInstance/github-reviewer-prod applied",
        "Environment/base applied",
        "Environment/github-prod applied",
    ):
        assert line in applied, describe(proc)

    canary = new_canary()
    ok(
        create_context(
            home,
            "run-1",
            "--instance", "github-reviewer-prod",
            "--env-file", examples / "runtime.env",
            "--env", "LOG_LEVEL=trace",
            "--secret", "SLACK_WEBHOOK",
            secret_stdin=canary,
        )
    )

    got = ok(run(["context", "get", "run-1"], home))
    header, rows = parse_variable_table(got.stdout)
    assert header.get("execution") == "run-1", describe(got)
    assert "created" in header and "expires" in header, describe(got)
    assert rows == RUN1_LAYERS, describe(got)
    for value in (canary, EXAMPLE_TOKEN, b"my-org", b"eu-west-1", b"30s", b"hello world", b"line one", b"expansion"):
        assert value not in got.stdout and value not in got.stderr, f"{value!r} shown\n{describe(got)}"

    names = ["GITHUB_TOKEN", "SLACK_WEBHOOK", "MULTI", "EMPTY", "LOG_LEVEL", "GITHUB_ORG", "TIMEOUT",
             "REGION", "GREETING", "LITERAL"]
    env = child_env_json(run(["run", "--execution-id", "run-1", "--", "python3", "-c", PRINT_ENV, *names], home))
    assert env == {
        "GITHUB_TOKEN": EXAMPLE_TOKEN.decode(),
        "SLACK_WEBHOOK": canary.decode(),
        "MULTI": "line one\nline two",
        "EMPTY": "",
        "LOG_LEVEL": "trace",
        "GITHUB_ORG": "my-org",
        "TIMEOUT": "30s",
        "REGION": "eu-west-1",
        "GREETING": "hello world",
        "LITERAL": "no $expansion here",
    }


def test_default_run_execs_and_delete_on_exit_stays_parent(home):
    key_init(home)
    simple_context(home, "pid-1", new_canary())
    simple_context(home, "pid-2", new_canary())
    code = "import os; print(os.getpid(), os.getppid())"

    proc = spawn(["run", "--execution-id", "pid-1", "--", "python3", "-c", code], home)
    out, err = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, (out, err)
    pid, _ = map(int, out.split())
    assert pid == proc.pid, f"child pid {pid} != launcher pid {proc.pid}: run did not execve"

    proc = spawn(["run", "--execution-id", "pid-2", "--delete-on-exit", "--", "python3", "-c", code], home)
    out, err = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, (out, err)
    pid, ppid = map(int, out.split())
    assert pid != proc.pid and ppid == proc.pid, f"child {pid}/{ppid}, launcher {proc.pid}"


# --------------------------------------------------------------------------
# 2. no plaintext at rest


def test_no_plaintext_at_rest(home, examples, tmp_path):
    key_init(home)
    manifest_canary = new_canary("manifest")
    stdin_canary = new_canary("stdin")
    file_canary = new_canary("secretfile")
    vault = secret_env_manifest(tmp_path, "vault", "VAULT_TOKEN", manifest_canary)
    secret_file = write(tmp_path, "secrets.env", f"FILE_SECRET={file_canary.decode()}\n")

    # Create the db, then pin the WAL with an open read transaction.
    ok(run(["apply", "-f", examples / "environment-base.yaml"], home))
    db = home / DB
    assert db.is_file()
    reader = sqlite3.connect(str(db), isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM resources").fetchone()

        apply_examples(home, examples, vault)
        ok(
            create_context(
                home,
                "rest-1",
                "--agent", "github-reviewer",
                "--env-ref", "base", "--env-ref", "github-prod", "--env-ref", "vault",
                "--secret", "SLACK_WEBHOOK",
                "--secret-file", secret_file,
                secret_stdin=stdin_canary,
            )
        )
        names = ["VAULT_TOKEN", "SLACK_WEBHOOK", "FILE_SECRET", "GITHUB_TOKEN"]
        env = child_env_json(run(["run", "--execution-id", "rest-1", "--", "python3", "-c", PRINT_ENV, *names], home))
        assert env == {
            "VAULT_TOKEN": manifest_canary.decode(),
            "SLACK_WEBHOOK": stdin_canary.decode(),
            "FILE_SECRET": file_canary.decode(),
            "GITHUB_TOKEN": EXAMPLE_TOKEN.decode(),
        }

        wal = home / (DB + "-wal")
        assert wal.is_file() and wal.stat().st_size > 0, sorted(p.name for p in home.iterdir())

        files = [p for p in home.rglob("*") if p.is_file()]
        names_found = {p.name for p in files}
        assert {DB, DB + "-wal", KEY_FILE} <= names_found, names_found
        for path in files:
            data = path.read_bytes()
            for plaintext in (manifest_canary, stdin_canary, file_canary, EXAMPLE_TOKEN):
                assert plaintext not in data, f"{plaintext!r} found in {path}"
    finally:
        reader.execute("ROLLBACK")
        reader.close()

    # Secret values are stored sealed (read after the pinned snapshot is gone).

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as ro:
        rows = ro.execute(
            "SELECT name, value, sealed FROM context_values WHERE execution_id = 'rest-1' AND is_secret = 1"
        ).fetchall()
    ro.close()
    assert {r[0] for r in rows} == {"VAULT_TOKEN", "SLACK_WEBHOOK", "FILE_SECRET", "GITHUB_TOKEN"}, rows
    for name, value, sealed in rows:
        assert sealed == 1 and re.fullmatch(r"v1:[0-9a-f]{16}:[A-Za-z0-9+/]+={0,2}", value), (name, value)

    assert mode_of(home) == 0o700, oct(mode_of(home))
    for name in (DB, DB + "-wal", KEY_FILE):
        path = home / name
        if path.exists():
            assert mode_of(path) == 0o600, f"{name}: {oct(mode_of(path))}"
    assert (home / KEY_FILE).exists() and db.exists()


def test_db_wal_and_key_modes_while_wal_is_pinned(home, examples):
    key_init(home)
    ok(run(["apply", "-f", examples / "environment-base.yaml"], home))
    reader = sqlite3.connect(str(home / DB), isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM resources").fetchone()
        apply_examples(home, examples)
        simple_context(home, "modes-1", new_canary())
        wal = home / (DB + "-wal")
        assert wal.is_file()
        assert mode_of(home) == 0o700, oct(mode_of(home))
        for path in (home / DB, wal, home / KEY_FILE):
            assert mode_of(path) == 0o600, f"{path.name}: {oct(mode_of(path))}"
    finally:
        reader.execute("ROLLBACK")
        reader.close()


def test_launch_reads_a_wal_left_by_a_killed_writer(home):
    """The launch opens the WAL index read-only (SQLite's readonly_shm): alone on the file it
    reads the database directly when the WAL is empty, and indexes the WAL in its own
    memory when it is not. Here a process pins a snapshot, a context is written behind it
    (its frames stay in the WAL) and the pinning process is SIGKILLed: no connection is
    left, the WAL still holds the context, and the launch must see it."""
    key_init(home)
    simple_context(home, "wal-0", new_canary())
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3,sys,time\n"
         "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
         "c.execute('BEGIN'); c.execute('SELECT count(*) FROM contexts').fetchone()\n"
         "print('pinned', flush=True); time.sleep(60)", str(home / DB)],
        stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"pinned\n"
        canary = new_canary()
        simple_context(home, "wal-1", canary)
    finally:
        holder.kill()
        holder.wait()
    wal = home / (DB + "-wal")
    assert wal.stat().st_size > 0 and (home / (DB + "-shm")).is_file()
    env = child_env_json(run(["run", "--execution-id", "wal-1", "--", sys.executable, "-c", PRINT_ENV, "CTX_SECRET"], home))
    assert env == {"CTX_SECRET": canary.decode()}
    # A writer afterwards recovers the WAL as usual, and launches still read.
    simple_context(home, "wal-2", canary)
    env = child_env_json(run(["run", "--execution-id", "wal-2", "--", sys.executable, "-c", PRINT_ENV, "CTX_PLAIN"], home))
    assert env == {"CTX_PLAIN": "plain"}


def test_launch_writes_nothing_to_the_store_files(home):
    """The README's claim: a launch opens the database and its WAL index read-only
    (readonly_shm), so the index is not rebuilt — no file of the store changes, not even
    its modification time."""
    key_init(home)
    canary = new_canary()
    simple_context(home, "ro-1", canary)
    files = [home / DB, home / (DB + "-wal"), home / (DB + "-shm")]
    before = {p.name: (p.stat().st_mtime_ns, p.stat().st_size, p.read_bytes()) for p in files}
    env = child_env_json(run(["run", "--execution-id", "ro-1", "--", sys.executable, "-c", PRINT_ENV, "CTX_SECRET"], home))
    assert env == {"CTX_SECRET": canary.decode()}
    after = {p.name: (p.stat().st_mtime_ns, p.stat().st_size, p.read_bytes()) for p in files}
    assert after == before


def test_store_path_with_uri_characters(tmp_path, bin_path):
    """The read-only open names the store as a file: URI; a home whose path holds ?, # and
    % (and a space) still opens the same file."""
    home = tmp_path / "odd ?#% home"
    home.mkdir(mode=0o700)
    key_init(home)
    canary = new_canary()
    simple_context(home, "uri-1", canary)
    assert (home / (DB + "-shm")).is_file()
    env = child_env_json(run(["run", "--execution-id", "uri-1", "--", sys.executable, "-c", PRINT_ENV, "CTX_SECRET"], home))
    assert env == {"CTX_SECRET": canary.decode()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd ?#% home"]


# --------------------------------------------------------------------------
# 3. logs never carry secrets


@pytest.mark.parametrize("how", ["flag", "env"])
def test_trace_logs_never_contain_secrets(home, examples, tmp_path, how):
    if how == "flag":
        log, env_extra = ["--log-level", "trace"], None
    else:
        log, env_extra = [], {"STIGMER_LOG_LEVEL": "trace"}
    manifest_canary = new_canary("manifest")
    stdin_canary = new_canary("stdin")
    file_canary = new_canary("secretfile")
    eph_canary = new_canary("ephemeral")
    vault = secret_env_manifest(tmp_path, "vault", "VAULT_TOKEN", manifest_canary)
    secret_file = write(tmp_path, "secrets.env", f"FILE_SECRET={file_canary.decode()}\n")
    all_secrets = (manifest_canary, stdin_canary, file_canary, eph_canary, EXAMPLE_TOKEN)
    procs = []

    def go(args, input=None, extra=None, expect=0):
        env = dict(env_extra or {})
        env.update(extra or {})
        split = 2 if args[0] in ("context", "env", "key") else 1  # log flags go after the subcommand
        proc = run([*args[:split], *log, *args[split:]], home, input=input, env_extra=env)
        assert proc.returncode == expect, describe(proc)
        procs.append(proc)
        return proc

    go(["key", "init"])
    files = []
    for name in MANIFESTS:
        files += ["-f", examples / name]
    go(["apply", *files, "-f", vault])
    go(["env", "list"])
    go(["env", "get", "vault"])
    go(["env", "get", "github-prod"])
    go(
        ["context", "create", "--execution-id", "log-1", "--instance", "github-reviewer-prod",
         "--env-file", examples / "runtime.env", "--secret", "SLACK_WEBHOOK", "--secret-file", secret_file],
        input=stdin_canary + b"\n",
    )
    go(
        ["context", "create", "--execution-id", "log-2", "--agent", "github-reviewer",
         "--env-ref", "github-prod", "--env-ref", "vault", "--secret", "SLACK_WEBHOOK"],
        input=stdin_canary + b"\n",
    )
    go(["context", "create", "--execution-id", "log-missing", "--instance", "github-reviewer-prod"], expect=78)
    go(["context", "get", "log-1"])
    out = go(["run", "--execution-id", "log-1", "--", "sh", "-c", 'printf %s "$SLACK_WEBHOOK"'])
    assert out.stdout == stdin_canary, describe(out)
    go(["run", "--execution-id", "log-2", "--delete-on-exit", "--", "true"])
    go(["run", "--env", "A=1", "--secret", "B", "--env-ref", "vault", "--", "true"], input=eph_canary + b"\n")
    go(["run", "--execution-id", "log-1", "--", "true"],
       extra={"STIGMER_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode()}, expect=77)
    go(["run", "--execution-id", "nope", "--", "true"], expect=66)
    go(["context", "delete", "log-1"])
    go(["context", "gc"])

    for proc in procs:
        for secret in all_secrets:
            assert secret not in proc.stderr, f"{secret!r} logged:\n{describe(proc)}"
    # The level really was raised: trace/debug lines appeared somewhere.
    assert sum(len(p.stderr.splitlines()) for p in procs) > len(procs), "no log output at trace level"


# --------------------------------------------------------------------------
# 4. missing required variables


def test_context_create_missing_required_stores_nothing(home, examples):
    key_init(home)
    apply_examples(home, examples)
    proc = create_context(home, "x", "--instance", "github-reviewer-prod")
    err = one_line_error(proc, 78, "SLACK_WEBHOOK", secrets_=(EXAMPLE_TOKEN,))
    assert "GITHUB_TOKEN" not in err and "GITHUB_ORG" not in err, f"supplied names listed as missing: {err!r}"
    assert context_get_rc(home, "x") == 66
    with sqlite3.connect(f"file:{home / DB}?mode=ro", uri=True) as ro:
        assert ro.execute("SELECT count(*) FROM contexts").fetchone() == (0,)
        assert ro.execute("SELECT count(*) FROM context_values").fetchone() == (0,)
    ro.close()


def test_ephemeral_run_missing_required_lists_all_and_never_starts(home, examples, tmp_path):
    key_init(home)
    apply_examples(home, examples)
    marker = tmp_path / "MARKER"
    proc = run(["run", "--agent", "github-reviewer", "--", "touch", marker], home)
    one_line_error(proc, 78, "GITHUB_ORG", "GITHUB_TOKEN", "SLACK_WEBHOOK")
    assert not marker.exists()


# --------------------------------------------------------------------------
# 5. tampering and wrong key


def _tamper_b64(value: str) -> str:
    prefix, _, body = value.rpartition(":")
    chars = list(body.rstrip("="))
    mid = len(chars) // 2
    for i in list(range(mid, len(chars) - 1)) + list(range(1, mid)):
        if chars[i].isalpha():
            chars[i] = "B" if chars[i] == "A" else "A"
            break
    else:
        raise AssertionError(f"no letter to swap in {value!r}")
    tampered = "".join(chars) + body[len(body.rstrip("=")):]
    base64.b64decode(tampered, validate=True)
    assert tampered != body
    return f"{prefix}:{tampered}"


@pytest.mark.parametrize("log", [[], ["--log-level", "trace"]], ids=["default", "trace"])
def test_tampered_secret_is_refused_before_child_starts(home, tmp_path, log):
    key_init(home)
    canary = new_canary()
    simple_context(home, "tamper-1", canary)
    conn = sqlite3.connect(str(home / DB))
    try:
        (value,) = conn.execute(
            "SELECT value FROM context_values WHERE execution_id = 'tamper-1' AND name = 'CTX_SECRET'"
        ).fetchone()
        assert value.startswith("v1:"), value
        conn.execute(
            "UPDATE context_values SET value = ? WHERE execution_id = 'tamper-1' AND name = 'CTX_SECRET'",
            (_tamper_b64(value),),
        )
        conn.commit()
    finally:
        conn.close()

    marker = tmp_path / "MARKER"
    proc = run(["run", *log, "--execution-id", "tamper-1", "--", "touch", marker], home)
    if log:
        assert proc.returncode == 77, describe(proc)
        assert canary not in proc.stderr and canary not in proc.stdout, describe(proc)
    else:
        one_line_error(proc, 77, secrets_=(canary,))
    assert not marker.exists(), "child started despite tampered ciphertext"


def test_wrong_key_is_refused_before_child_starts(home, tmp_path):
    key_init(home)
    canary = new_canary()
    simple_context(home, "wrongkey-1", canary)
    marker = tmp_path / "MARKER"
    other = base64.b64encode(os.urandom(32)).decode()
    proc = run(
        ["run", "--execution-id", "wrongkey-1", "--", "touch", marker],
        home,
        env_extra={"STIGMER_ENCRYPTION_KEY": other},
    )
    one_line_error(proc, 77, secrets_=(canary,))
    assert not marker.exists(), "child started with the wrong key"


# --------------------------------------------------------------------------
# 6. exit codes


def test_every_exit_code_passes_through(home):
    key_init(home)
    simple_context(home, "codes-1", new_canary())

    def one(n):
        proc = run(["run", "--execution-id", "codes-1", "--", "sh", "-c", f"exit {n}"], home)
        return n, proc

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(256)))
    wrong = [(n, p.returncode, p.stderr) for n, p in results if p.returncode != n]
    assert not wrong, f"exit codes not passed through: {wrong[:10]}"


@pytest.mark.parametrize(
    "script, expected",
    [("exit 0", 0), ("exit 1", 1), ("exit 42", 42), ("exit 255", 255),
     ("kill -TERM $$", 128 + signal.SIGTERM), ("kill -KILL $$", 128 + signal.SIGKILL)],
    ids=["0", "1", "42", "255", "SIGTERM", "SIGKILL"],
)
def test_delete_on_exit_passes_exit_status_and_deletes(home, script, expected):
    key_init(home)
    simple_context(home, "doe-1", new_canary())
    proc = run(["run", "--execution-id", "doe-1", "--delete-on-exit", "--", "sh", "-c", script], home)
    assert proc.returncode == expected, describe(proc)
    assert context_get_rc(home, "doe-1") == 66


def test_launch_failures_have_distinct_codes(home, tmp_path):
    key_init(home)
    simple_context(home, "fail-1", new_canary())
    missing = run(["run", "--execution-id", "fail-1", "--", "no-such-command-xyz"], home)
    one_line_error(missing, 127, "no-such-command-xyz")

    not_exec = write(tmp_path, "script.sh", "#!/bin/sh\necho hi\n")
    os.chmod(not_exec, 0o644)
    proc = run(["run", "--execution-id", "fail-1", "--", not_exec], home)
    one_line_error(proc, 126)

    proc = run(["run", "--execution-id", "no-such-id", "--", "true"], home)
    one_line_error(proc, 66, "no-such-id")

    proc = run(["run", "--execution-id", "fail-1"], home)
    assert proc.returncode == 64, describe(proc)
    proc = run(["run", "--execution-id", "fail-1", "--"], home)
    assert proc.returncode == 64, describe(proc)

    # None of the failures consumed the context.
    assert context_get_rc(home, "fail-1") == 0


# --------------------------------------------------------------------------
# 7. environment isolation


def test_stigmer_variables_never_reach_the_child(home):
    key_b64 = key_init(home)
    canary = new_canary()
    simple_context(home, "iso-1", canary)
    proc = run(
        ["run", "--", "env"],
        home,
        env_extra={
            "STIGMER_ENCRYPTION_KEY": key_b64,
            "STIGMER_FOO": "bar",
            "STIGMER_EXECUTION_ID": "iso-1",
            "FOO": "1",
        },
    )
    env = env_lines(ok(proc).stdout)
    assert not [k for k in env if k.startswith("STIGMER_")], describe(proc)
    assert key_b64.encode() not in proc.stdout, describe(proc)
    assert env.get("CTX_PLAIN") == "plain", describe(proc)
    assert env.get("CTX_SECRET") == canary.decode(), describe(proc)
    assert env.get("FOO") == "1", describe(proc)
    assert "PATH" in env and "HOME" in env, describe(proc)


def test_clean_env_keeps_only_the_basics_and_the_context(home):
    key_init(home)
    canary = new_canary()
    simple_context(home, "clean-1", canary)
    parent = {
        "FOO": "1",
        "USER": "tester",
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "TERM": "dumb",
        "LD_PRELOAD": "",
        "STIGMER_FOO": "bar",
    }
    proc = run(["run", "--execution-id", "clean-1", "--clean-env", "--", "env"], home, env_extra=parent)
    env = dict(line.split("=", 1) for line in ok(proc).stdout.decode().splitlines())
    assert env == {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home.parent),
        "USER": "tester",
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "TERM": "dumb",
        "CTX_PLAIN": "plain",
        "CTX_SECRET": canary.decode(),
    }, describe(proc)


# --------------------------------------------------------------------------
# 8. argv is passed through untouched


def test_argv_reaches_child_unchanged(home):
    key_init(home)
    simple_context(home, "argv-1", new_canary())
    args = ["a b", "$HOME", "'q'", "*", "", '"dq"', "--", "-x", "--execution-id", "--clean-env",
            "ünïcødé", "line\nbreak", "${CTX_SECRET}", "`id`", "a;b|c&d"]
    proc = ok(run(["run", "--execution-id", "argv-1", "--", "python3", "-c", PRINT_ARGV, *args], home))
    assert json.loads(proc.stdout) == args, describe(proc)


# --------------------------------------------------------------------------
# 9. parallel launches against one store


def test_fifty_parallel_launches(home):
    key_init(home)
    canaries = {f"par-{i}": new_canary() for i in range(5)}
    for exec_id, canary in canaries.items():
        simple_context(home, exec_id, canary)
    jobs = [f"par-{i % 5}" for i in range(50)]

    def one(exec_id):
        return exec_id, run(["run", "--execution-id", exec_id, "--", "sh", "-c", 'printf %s "$CTX_SECRET"'], home)

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(one, jobs))
    bad = [(i, p.returncode, p.stdout, p.stderr) for i, p in results if p.returncode != 0 or p.stdout != canaries[i]]
    assert not bad, f"{len(bad)} of 50 launches failed: {bad[:5]}"


# --------------------------------------------------------------------------
# 10. --delete-on-exit and signal forwarding


def test_delete_on_exit_deletes_after_child_exits(home):
    key_init(home)
    canary = new_canary()
    simple_context(home, "del-1", canary)
    proc = run(["run", "--execution-id", "del-1", "--delete-on-exit", "--", "sh", "-c", 'printf %s "$CTX_SECRET"'], home)
    assert proc.returncode == 0 and proc.stdout == canary, describe(proc)
    assert context_get_rc(home, "del-1") == 66
    again = run(["run", "--execution-id", "del-1", "--", "true"], home)
    assert again.returncode == 66, describe(again)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1],
                         ids=lambda s: s.name)
def test_signals_are_forwarded_with_delete_on_exit(home, tmp_path, sig):
    key_init(home)
    simple_context(home, "sig-1", new_canary())
    marker = tmp_path / "MARKER"
    proc = spawn(
        ["run", "--execution-id", "sig-1", "--delete-on-exit", "--", "python3", "-c", SIGNAL_CHILD, marker],
        home,
    )
    try:
        line = read_line(proc)
        assert line == b"READY\n", f"child never became ready: {line!r} (launcher exit {proc.poll()})"
        os.kill(proc.pid, sig)
        out, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        kill_quietly(proc)
    assert proc.returncode == 7, f"exit={proc.returncode} stderr={err!r}"
    assert marker.read_text() == str(int(sig)), f"child got {marker.read_text()!r}, sent {int(sig)}"
    assert context_get_rc(home, "sig-1") == 66


# --------------------------------------------------------------------------
# 11. ephemeral runs write nothing


def test_ephemeral_run_writes_nothing(home):
    key_init(home)
    before = snapshot(home)
    canary = new_canary()
    proc = run(["run", "--env", "A=1", "--secret", "B", "--", "sh", "-c", 'printf %s "$A$B"'], home,
               input=canary + b"\n")
    assert proc.returncode == 0 and proc.stdout == b"1" + canary, describe(proc)
    assert not (home / DB).exists()
    assert snapshot(home) == before, sorted(p.name for p in home.iterdir())


def test_ephemeral_run_with_stored_manifests_adds_no_context(home, examples):
    key_init(home)
    apply_examples(home, examples)
    canary = new_canary()
    env = child_env_json(
        run(
            ["run", "--instance", "github-reviewer-prod", "--secret", "SLACK_WEBHOOK", "--",
             "python3", "-c", PRINT_ENV, "SLACK_WEBHOOK", "GITHUB_TOKEN"],
            home,
            input=canary + b"\n",
        )
    )
    assert env == {"SLACK_WEBHOOK": canary.decode(), "GITHUB_TOKEN": EXAMPLE_TOKEN.decode()}
    with sqlite3.connect(f"file:{home / DB}?mode=ro", uri=True) as ro:
        assert ro.execute("SELECT count(*) FROM contexts").fetchone() == (0,)
        assert ro.execute("SELECT count(*) FROM context_values").fetchone() == (0,)
    ro.close()
    for path in home.rglob("*"):
        if path.is_file():
            assert canary not in path.read_bytes(), path


# --------------------------------------------------------------------------
# 12. duplicates, --replace, expiry and gc


def _value_of(home, exec_id, name) -> str | None:
    env = child_env_json(run(["run", "--execution-id", exec_id, "--", "python3", "-c", PRINT_ENV, name], home))
    return env[name]


def test_duplicate_id_is_refused_and_replace_wins(home):
    key_init(home)
    ok(create_context(home, "dup-1", "--env", "A=first", "--env", "ONLY_FIRST=1"))
    proc = create_context(home, "dup-1", "--env", "A=second")
    one_line_error(proc, 65, "dup-1")
    assert _value_of(home, "dup-1", "A") == "first"

    ok(create_context(home, "dup-1", "--env", "A=second", "--replace"))
    env = child_env_json(run(["run", "--execution-id", "dup-1", "--", "python3", "-c", PRINT_ENV, "A", "ONLY_FIRST"],
                             home))
    assert env == {"A": "second", "ONLY_FIRST": None}


def test_expired_context_is_refused_and_collected(home):
    key_init(home)
    ok(create_context(home, "short-1", "--env", "A=1", "--ttl", "1s"))
    ok(create_context(home, "long-1", "--env", "A=1"))

    def refused():
        proc = run(["run", "--execution-id", "short-1", "--", "true"], home)
        return proc if proc.returncode != 0 else None

    proc = wait_for(refused, 5, "run of short-1 (--ttl 1s) to be refused", interval=0.1)
    one_line_error(proc, 66, "expired")

    gc = ok(run(["context", "gc"], home))
    assert gc.stdout.decode().strip() == "1", describe(gc)
    gc = ok(run(["context", "gc"], home))
    assert gc.stdout.decode().strip() == "0", describe(gc)
    assert context_get_rc(home, "short-1") == 66
    assert context_get_rc(home, "long-1") == 0


# --------------------------------------------------------------------------
# 13. apply is all or nothing; env get hides secrets


INVALID_ENV_DOC = env_manifest("atomic-bad", {"BAD-NAME": "x"})
VALID_ENV_DOC = env_manifest("atomic-good", {"GOOD": "y"})


@pytest.mark.parametrize("layout", ["one-file", "two-files"])
def test_apply_is_all_or_nothing(home, examples, tmp_path, layout):
    key_init(home)
    apply_examples(home, examples)
    before = ok(run(["env", "list"], home)).stdout
    if layout == "one-file":
        files = [write(tmp_path, "mixed.yaml", VALID_ENV_DOC + "---\n" + INVALID_ENV_DOC)]
    else:
        files = [write(tmp_path, "good.yaml", VALID_ENV_DOC), write(tmp_path, "bad.yaml", INVALID_ENV_DOC)]
    args = ["apply"]
    for f in files:
        args += ["-f", f]
    proc = run(args, home)
    one_line_error(proc, 65)
    after = ok(run(["env", "list"], home)).stdout
    assert b"atomic-good" not in after and b"atomic-bad" not in after, after
    assert after == before


def test_env_get_hides_secret_values(home, examples):
    key_init(home)
    apply_examples(home, examples)
    proc = ok(run(["env", "get", "github-prod"], home))
    lines = [l.split() for l in proc.stdout.decode().splitlines() if l.strip()]
    assert lines[0] == ["NAME", "SECRET", "VALUE"], describe(proc)
    rows = {cells[0]: cells[1:] for cells in lines[1:]}
    assert rows["GITHUB_TOKEN"] == ["yes", "<secret>"], describe(proc)
    assert rows["GITHUB_ORG"] == ["no", "my-org"], describe(proc)
    assert EXAMPLE_TOKEN not in proc.stdout and EXAMPLE_TOKEN not in proc.stderr, describe(proc)
