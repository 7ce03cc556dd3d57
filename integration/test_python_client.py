"""The runner side: the Python client in clients/python (`stigmer_exec`, installed as a user
would: `pip install ./clients/python`, see scripts/deps.sh) against the real launcher and
`serve`, and the Temporal activities of examples/temporal run by the real Temporal SDK
(temporalio's ActivityEnvironment: no Temporal server).

What is checked: the execution token reaches the launcher on a pipe only; the launcher's
own failures (`--error-fd`) become the client's exceptions, a failing command `ChildFailed`;
cancellation, a timeout and Ctrl-C leave no process of the launcher's session; heartbeats
flow while the command runs; and what Temporal would store in its history holds ids and
names, never a value or a token.
"""

from __future__ import annotations

import asyncio
import filecmp
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

try:
    import stigmer_exec
    import temporalio  # noqa: F401
except ImportError as missing:
    pytest.fail(f"{missing.name} is not installed: run scripts/deps.sh (integration/requirements.txt, "
                "pip install ./clients/python)", pytrace=False)
from stigmer_exec import ChildFailed, MissingVariables, NotFound, NotPermitted, StigmerExecError, Unavailable

from helpers import (
    OPERATOR_TOKEN,
    REPO,
    Server,
    apply_examples,
    binary_path,
    env_manifest,
    free_port,
    key_init,
    new_canary,
    pid_alive,
    sha256,
    wait_for,
    write,
)

from temporalio.api.failure.v1 import Failure  # noqa: E402
from temporalio.converter import DataConverter  # noqa: E402
from temporalio.exceptions import ApplicationError  # noqa: E402
from temporalio.testing import ActivityEnvironment  # noqa: E402

sys.path.insert(0, str(REPO / "examples" / "temporal"))
from activities import ContextSpec, RunnerConfig, StigmerActivities, Step, StepResult  # noqa: E402
import workflow as example_workflow  # noqa: E402

CLIENT = REPO / "clients" / "python"
CANARY = new_canary("py-client")  # API_KEY in the server's store
# Prints the SHA-256 of the variables named in argv (or "unset"): proof without the value.
DIGEST = ("import hashlib,os,sys; print(' '.join(hashlib.sha256(os.environ[n].encode()).hexdigest() "
          "if n in os.environ else 'unset' for n in sys.argv[1:]))")
# Starts a grandchild that ignores SIGTERM (only SIGKILL ends it), records its own pid,
# parent, group and session and the grandchild's pid in argv[1] (atomically), and sleeps.
STUBBORN = """
import json, os, signal, subprocess, sys, time
g = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                      "print('ready', flush=True); time.sleep(120)"], stdout=subprocess.PIPE)
assert g.stdout.readline() == b"ready\\n"
tmp = sys.argv[1] + ".tmp"
with open(tmp, "w") as f:
    json.dump({"pid": os.getpid(), "ppid": os.getppid(), "pgid": os.getpgid(0), "sid": os.getsid(0),
               "grandchild": g.pid}, f)
os.rename(tmp, sys.argv[1])
time.sleep(120)
"""


def child(*code_and_args: str) -> list[str]:
    return [sys.executable, "-c", *code_and_args]


def session_members(sid: int) -> list[int]:
    """Live (not zombie) processes of session `sid`."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
                out.append(int(entry.name))
    return out


def assert_all_gone(pids: dict) -> None:
    """The command, the launcher (the session's leader) and the grandchild have exited,
    and nothing of the launcher's session is left."""
    for pid in {pids["pid"], pids["sid"], pids["grandchild"]}:
        wait_for(lambda: not pid_alive(pid), 5, f"process {pid} to be gone", interval=0.02)
    assert session_members(pids["sid"]) == [], f"processes of session {pids['sid']} remain"


def new_id(tag: str = "py") -> str:
    return f"{tag}-{secrets.token_hex(4)}"


# --------------------------------------------------------------------------
# fixtures: one server for the module, its store holding the secret API_KEY


@pytest.fixture(scope="module")
def server(tmp_path_factory, examples, bin_path):
    tmp = tmp_path_factory.mktemp("py-client")
    home = tmp / "server"
    key_init(home)
    secrets_env = write(tmp, "runner-secrets.yaml", env_manifest(
        "runner-secrets", {"API_KEY": CANARY.decode(), "API_ORG": "acme"}, secret={"API_KEY"}))
    apply_examples(home, examples, secrets_env)
    srv = Server(home, tmp).start()
    yield srv
    srv.kill()
    assert CANARY not in srv.stderr


@pytest.fixture
def launcher_env(tmp_path):
    """The launcher's environment: a home of its own (nothing is written there)."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "STIGMER_HOME": str(tmp_path / "h")}


def api(server) -> dict:
    return {"server": server.url, "operator_token": OPERATOR_TOKEN}


def launch(server, env) -> dict:
    return {"server": server.url, "binary": binary_path(), "env": env, "fetch_timeout": 5}


def no_secret_in(*blobs) -> None:
    for blob in blobs:
        text = blob if isinstance(blob, bytes) else str(blob).encode()
        assert CANARY not in text


# --------------------------------------------------------------------------
# the package itself


def test_installed_package_is_this_checkout():
    """`import stigmer_exec` is the installed package (scripts/deps.sh), and it is the
    code of this checkout (re-run scripts/deps.sh after changing clients/python)."""
    installed = Path(stigmer_exec.__file__).parent
    assert CLIENT / "src" not in installed.parents, "stigmer_exec imported from the source tree, not installed"
    source = CLIENT / "src" / "stigmer_exec"
    names = sorted(str(p.relative_to(source)) for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    _, mismatch, errors = filecmp.cmpfiles(source, installed, names, shallow=False)
    assert not mismatch and not errors, f"installed stigmer_exec differs from clients/python: {mismatch + errors}"
    assert (installed / "py.typed").exists()


def test_generated_code_is_current(tmp_path):
    """clients/python/generate.sh regenerates exactly what is committed."""
    out = tmp_path / "v1"
    out.mkdir()
    proc = subprocess.run([CLIENT / "generate.sh"], env={**os.environ, "OUT": str(out)}, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    committed = CLIENT / "src" / "stigmer_exec" / "v1"
    for name in ("execution_context_pb2.py", "execution_context_pb2.pyi", "execution_context_pb2_grpc.py"):
        assert (out / name).read_bytes() == (committed / name).read_bytes(), f"{name} is stale: run clients/python/generate.sh"


def test_token_goes_through_a_pipe_only(tmp_path):
    """A stand-in launcher records its argv, environment and descriptors: the token is on
    --token-fd (and only there), --error-fd is open, nothing else leaked in."""
    record = tmp_path / "record.json"
    fake = write(tmp_path, "fake-launcher", f"""#!{sys.executable}
import hashlib, json, os, sys
argv = sys.argv
token_fd, error_fd = int(argv[argv.index("--token-fd") + 1]), int(argv[argv.index("--error-fd") + 1])
token = os.read(token_fd, 4096)
eof = os.read(token_fd, 4096)
json.dump({{"argv": argv, "env": dict(os.environ), "token_sha": hashlib.sha256(token).hexdigest(), "eof": eof == b"",
           "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")), "token_fd": token_fd, "error_fd": error_fd,
           "pgid": os.getpgid(0), "pid": os.getpid()}}, open({str(record)!r}, "w"))
""")
    fake.chmod(0o755)
    token = "stx2_" + secrets.token_urlsafe(64)
    done = stigmer_exec.run("exec-1", ["true"], token=token, binary=fake, server="grpc://127.0.0.1:1",
                            server_key="K" * 43 + "=", fetch_timeout=2.5, seccomp="strict", init=True,
                            mask_output=True, extra_args=["--clean-env"], file_vars=["A_FILE"])
    assert done == stigmer_exec.Completed(0, b"", b"")
    got = json.loads(record.read_text())
    assert token not in json.dumps(got["argv"]) + json.dumps(got["env"])
    assert got["token_sha"] == sha256(token.encode()) and got["eof"], "the token, then EOF (write end closed)"
    assert got["pgid"] == got["pid"], "the launcher leads a process group of its own"
    # Only stdio, the two pipes, and the directory listing's own descriptor.
    assert len(set(got["fds"]) - {0, 1, 2, got["token_fd"], got["error_fd"]}) <= 1, got["fds"]
    assert got["argv"][1:] == ["run", "--execution-id", "exec-1", "--file-var", "A_FILE",
                               "--error-fd", str(got["error_fd"]), "--token-fd", str(got["token_fd"]),
                               "--server", "grpc://127.0.0.1:1", "--server-key", "K" * 43 + "=", "--seccomp", "strict",
                               "--fetch-timeout", "3s", "--init", "--mask-output", "--clean-env", "--", "true"]


def test_error_records_map_to_exceptions(tmp_path):
    """Each --error-fd record becomes its exception; an empty message falls back to the
    launcher's stderr line; no record and a failing status is ChildFailed."""
    def fake(body: str) -> Path:
        path = write(tmp_path, f"fake-{secrets.token_hex(3)}", f"#!{sys.executable}\nimport os, sys\n"
                     f"fd = int(sys.argv[sys.argv.index('--error-fd') + 1])\n{body}\n")
        path.chmod(0o755)
        return path

    def record(status, code, message="", names=()):
        line = json.dumps({"status": status, "code": code, "message": message, "names": list(names)})
        return fake(f"os.write(fd, {line!r}.encode() + b'\\n')\n"
                    f"sys.stderr.write('stigmer-exec: the stderr line\\n')\nsys.exit({status})")

    cases = [(record(78, "unresolved", "--file-var A, B: not set", ["A", "B"]), MissingVariables),
             (record(77, "notPermitted"), NotPermitted), (record(69, "unavailable"), Unavailable),
             (record(66, "notFound", "server \"x\" is not in f.json"), NotFound),
             (record(127, "commandNotFound", "command not found: \"x\""), StigmerExecError),
             (record(64, "usage", "Unknown option '--x'; see --help"), StigmerExecError)]
    for binary, cls in cases:
        with pytest.raises(StigmerExecError) as info:
            stigmer_exec.run("e", ["x"], binary=binary)
        assert type(info.value) is cls, info.value
    with pytest.raises(MissingVariables) as info:
        stigmer_exec.run("e", ["x"], binary=cases[0][0])
    assert (info.value.status, info.value.code, info.value.names) == (78, "unresolved", ("A", "B"))
    with pytest.raises(NotPermitted) as info:
        stigmer_exec.run("e", ["x"], binary=cases[1][0])
    assert info.value.message == "the stderr line", "an empty message: the launcher's stderr line"
    with pytest.raises(NotPermitted) as info:
        stigmer_exec.run("e", ["x"], binary=cases[1][0], stderr=None)
    assert info.value.message == "notPermitted", "stderr not captured: the code"
    with pytest.raises(ChildFailed) as info:
        stigmer_exec.run("e", ["x"], binary=fake("print('out'); sys.exit(3)"))
    assert (info.value.status, info.value.signal, info.value.result.stdout) == (3, None, b"out\n")
    done = stigmer_exec.run("e", ["x"], binary=fake("sys.exit(3)"), check=False)
    assert done.returncode == 3


# --------------------------------------------------------------------------
# the client against the real launcher and server


def test_create_run_delete(server, launcher_env, tmp_path):
    exec_id = new_id()
    runtime_secret = new_canary("runtime")
    token = stigmer_exec.create_context(exec_id, env={"MODE": "plain"}, secrets={"RUNTIME_SECRET": runtime_secret.decode()},
                                        environment_refs=["runner-secrets"], ttl_seconds=600, **api(server))
    assert token.startswith("stx2_") and len(token) == 91
    started = time.monotonic()
    done = stigmer_exec.run(exec_id, child(DIGEST, "API_KEY", "RUNTIME_SECRET", "MODE", "STIGMER_TOKEN"), token=token,
                            **launch(server, launcher_env))
    elapsed = time.monotonic() - started
    assert done.returncode == 0 and done.stderr == b"", done
    assert done.stdout.decode().split() == [sha256(CANARY), sha256(runtime_secret), sha256(b"plain"), "unset"]
    print(f"one remote launch through the client: {elapsed * 1000:.0f} ms")

    # Passed through, not captured: the output goes where stdout points.
    out = tmp_path / "out"
    with out.open("wb") as f:
        done = stigmer_exec.run(exec_id, child(DIGEST, "API_ORG"), token=token, stdout=f, **launch(server, launcher_env))
    assert done.stdout is None and out.read_text().split() == [sha256(b"acme")]
    # input= reaches the command's stdin.
    done = stigmer_exec.run(exec_id, child("import sys; print(sys.stdin.read().upper())"), token=token,
                            input=b"hello", **launch(server, launcher_env))
    assert done.stdout == b"HELLO\n"
    # --mask-output: the value printed comes back concealed.
    done = stigmer_exec.run(exec_id, child("import os; print(os.environ['API_KEY'])"), token=token, mask_output=True,
                            **launch(server, launcher_env))
    assert done.stdout == b"<concealed>\n"

    assert stigmer_exec.delete_context(exec_id, **api(server)) is True
    with pytest.raises(NotPermitted) as info:  # the server does not tell "deleted" from "never was"
        stigmer_exec.run(exec_id, ["true"], token=token, **launch(server, launcher_env))
    assert info.value.status == 77 and "permission denied, or no such context" in info.value.message
    assert stigmer_exec.delete_context(exec_id, **api(server)) is False
    no_secret_in(str(info.value))
    assert token not in str(info.value)


def test_launcher_failures(server, launcher_env, tmp_path):
    exec_id = new_id()
    token = stigmer_exec.create_context(exec_id, environment_refs=["runner-secrets"], **api(server))
    opts = launch(server, launcher_env)
    errors = []

    with pytest.raises(MissingVariables) as info:
        stigmer_exec.run(exec_id, ["true"], token=token, file_vars=["NOT_SET_A", "NOT_SET_B"], **opts)
    assert info.value.names == ("NOT_SET_A", "NOT_SET_B") and info.value.status == 78
    errors.append(info.value)

    config = write(tmp_path, "mcp.json", json.dumps({"mcpServers": {
        "probe": {"command": sys.executable, "args": ["-c", DIGEST, "KEY"], "env": {"KEY": "${API_KEY}"}},
        "broken": {"command": "true", "env": {"X": "${MISSING_ONE}", "Y": "${API_KEY}"}}}}))
    done = stigmer_exec.mcp_run(exec_id, config, "probe", token=token, input=b"", **opts)
    assert done.stdout.decode().split() == [sha256(CANARY)]
    with pytest.raises(MissingVariables) as info:
        stigmer_exec.mcp_run(exec_id, config, "broken", token=token, **opts)
    assert info.value.names == ("MISSING_ONE",)
    errors.append(info.value)
    with pytest.raises(NotFound) as info:
        stigmer_exec.mcp_run(exec_id, config, "absent", token=token, **opts)
    errors.append(info.value)

    with pytest.raises(StigmerExecError) as info:
        stigmer_exec.run(exec_id, ["/nonexistent/command"], token=token, **opts)
    assert (type(info.value), info.value.status, info.value.code) == (StigmerExecError, 127, "commandNotFound")
    other_key = token[:10] + ("B" if token[10] == "A" else "A") + token[11:]  # another signing key, same server
    with pytest.raises(NotPermitted):
        stigmer_exec.run(exec_id, ["true"], token=other_key, **opts)
    with pytest.raises(Unavailable) as info:
        stigmer_exec.run(exec_id, ["true"], token=token, **{**opts, "server": f"grpc://127.0.0.1:{free_port()}",
                                                            "fetch_timeout": 1})
    assert "unavailable" in info.value.message, info.value.message
    errors.append(info.value)

    # The command's own failures.
    with pytest.raises(ChildFailed) as info:
        stigmer_exec.run(exec_id, child("import sys; print('partial'); sys.exit(3)"), token=token, **opts)
    assert (info.value.status, info.value.signal, info.value.result.stdout) == (3, None, b"partial\n")
    for supervised in (False, True):  # execve'd (the status Python sees) and --init (128+N)
        with pytest.raises(ChildFailed) as info:
            stigmer_exec.run(exec_id, child("import os, signal; os.kill(os.getpid(), signal.SIGTERM)"), token=token,
                             init=supervised, **opts)
        assert (info.value.status, info.value.signal) == (143, signal.SIGTERM), supervised
    assert stigmer_exec.run(exec_id, child("raise SystemExit(5)"), token=token, check=False, **opts).returncode == 5

    # The API's errors.
    with pytest.raises(MissingVariables) as info:  # the agent requires SLACK_WEBHOOK
        stigmer_exec.create_context(new_id(), instance="github-reviewer-prod", **api(server))
    assert info.value.names == ("SLACK_WEBHOOK",) and info.value.status == 78, info.value
    errors.append(info.value)
    with pytest.raises(NotFound):
        stigmer_exec.create_context(new_id(), instance="no-such-instance", **api(server))
    with pytest.raises(StigmerExecError) as info:
        stigmer_exec.create_context(exec_id, **api(server))
    assert info.value.code == "conflict"
    assert stigmer_exec.create_context(exec_id, replace=True, environment_refs=["runner-secrets"], **api(server)) != token
    with pytest.raises(NotPermitted):
        stigmer_exec.create_context(new_id(), server=server.url, operator_token="op-" + secrets.token_hex(20))
    with pytest.raises(Unavailable):
        stigmer_exec.create_context(new_id(), server=f"grpc://127.0.0.1:{free_port()}", operator_token=OPERATOR_TOKEN,
                                    timeout=2)
    with pytest.raises(StigmerExecError) as info:  # refused before any connection is made
        stigmer_exec.create_context(new_id(), server="grpc://192.0.2.1:7443", operator_token=OPERATOR_TOKEN)
    assert info.value.code == "usage" and "loopback" in info.value.message
    for error in errors:
        no_secret_in(str(error), error.message)
        assert token not in str(error) and OPERATOR_TOKEN not in str(error)


def test_tls(server, tmp_path, launcher_env):
    from test_remote import make_tls

    ca, cert, key = make_tls(tmp_path)
    tls = Server(server.home, tmp_path, tls=(cert, key)).start()
    try:
        exec_id = new_id("tls")
        token = stigmer_exec.create_context(exec_id, environment_refs=["runner-secrets"], server=tls.url,
                                            operator_token=OPERATOR_TOKEN, tls_ca=ca)
        done = stigmer_exec.run(exec_id, child(DIGEST, "API_KEY"), token=token, tls_ca=ca,
                                **{**launch(tls, launcher_env), "server": tls.url})
        assert done.stdout.decode().split() == [sha256(CANARY)]
        with pytest.raises((NotPermitted, Unavailable)):  # the CA not given: not trusted
            stigmer_exec.run(exec_id, ["true"], token=token, **{**launch(tls, launcher_env), "fetch_timeout": 2})
        with pytest.raises(Unavailable):
            stigmer_exec.create_context(new_id(), server=tls.url, operator_token=OPERATOR_TOKEN, timeout=3)
        assert stigmer_exec.delete_context(exec_id, server=tls.url, operator_token=OPERATOR_TOKEN, tls_ca=ca)
    finally:
        tls.kill()


# --------------------------------------------------------------------------
# stopping: cancellation, timeout, Ctrl-C


def test_cancel_and_timeout_leave_no_process(server, launcher_env, tmp_path):
    exec_id = new_id()
    token = stigmer_exec.create_context(exec_id, environment_refs=["runner-secrets"], **api(server))
    opts = {**launch(server, launcher_env), "grace_period": 1.0}

    async def cancelled(pidfile: Path, **extra) -> dict:
        task = asyncio.ensure_future(stigmer_exec.run_async(exec_id, child(STUBBORN, str(pidfile)), token=token,
                                                            **opts, **extra))
        while not pidfile.exists():
            assert not task.done(), task
            await asyncio.sleep(0.02)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 5
        return json.loads(pidfile.read_text())

    pids = asyncio.run(cancelled(tmp_path / "exec.json"))
    assert pids["pid"] == pids["pgid"] == pids["sid"], "execve: the command is the launcher, leading its session"
    assert_all_gone(pids)
    # --init: the launcher is the command's parent and gives it a group of its own (no
    # terminal needed); so the client stops the whole session, not only the group.
    pids = asyncio.run(cancelled(tmp_path / "init.json", init=True))
    assert pids["ppid"] == pids["sid"] != pids["pgid"] == pids["pid"], pids
    assert_all_gone(pids)

    pidfile = tmp_path / "timeout.json"
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        stigmer_exec.run(exec_id, child(STUBBORN, str(pidfile)), token=token, timeout=1.5, **opts)
    assert 2.4 < time.monotonic() - started < 6, "the timeout, then the grace (the grandchild ignores SIGTERM)"
    assert_all_gone(json.loads(pidfile.read_text()))


def test_ctrl_c_stops_a_sync_run(server, launcher_env, tmp_path):
    exec_id = new_id()
    token = stigmer_exec.create_context(exec_id, environment_refs=["runner-secrets"], **api(server))
    pidfile = tmp_path / "pids.json"
    script = write(tmp_path, "sync_run.py", f"""
import json, signal, sys, stigmer_exec
# As at a terminal. A test run started in the background by a shell without job control
# (`.ci/run &`) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt.
signal.signal(signal.SIGINT, signal.default_int_handler)
token = sys.stdin.readline().strip()
stigmer_exec.run({exec_id!r}, [sys.executable, "-c", {STUBBORN!r}, {str(pidfile)!r}], token=token,
                 server={server.url!r}, binary={str(binary_path())!r}, env={launcher_env!r}, grace_period=1)
""")
    proc = subprocess.Popen([sys.executable, script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        proc.stdin.write(token.encode() + b"\n")
        proc.stdin.close()
        wait_for(pidfile.exists, 15, "the command to start")
        proc.send_signal(signal.SIGINT)
        try:
            # Cleanup is SIGTERM, 1 s of grace, SIGKILL: seconds, but a loaded CI machine
            # once took more than 10 (what it was doing is in the message below).
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            err = proc.stderr.read()
            raise AssertionError(f"Ctrl-C did not end the run within 30 s; stderr:\n{err.decode(errors='replace')}") from None
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and b"KeyboardInterrupt" in err, err.decode()
    assert token.encode() not in err
    assert_all_gone(json.loads(pidfile.read_text()))


# --------------------------------------------------------------------------
# the Temporal activities of examples/temporal, run by the real SDK


def history(*values) -> bytes:
    """What Temporal would store for these activity inputs/outputs: the default data
    converter's payloads, serialized."""
    payloads = asyncio.run(DataConverter.default.encode(list(values)))
    return b"".join(p.SerializeToString() for p in payloads)


def failure_history(error: BaseException) -> bytes:
    failure = Failure()
    asyncio.run(DataConverter.default.encode_failure(error, failure))
    return failure.SerializeToString()


@pytest.fixture
def activities(server, tmp_path, monkeypatch, launcher_env):
    for name, value in launcher_env.items():
        monkeypatch.setenv(name, value)
    config = RunnerConfig(server=server.url, operator_token_file=str(server.token_file), binary=str(binary_path()),
                          fetch_timeout=5, grace_period=1.0, heartbeat_interval=0.1)
    return StigmerActivities(config, task_queue="stigmer-runner-test")


def test_temporal_activities_success_heartbeat_and_history(activities, server):
    exec_id = new_id("wf")
    env = ActivityEnvironment()
    beats: list = []
    env.on_heartbeat = lambda *details: beats.append((time.monotonic(), details))
    recorded = []  # (input, output) of every activity call: what the history would hold

    spec = ContextSpec(exec_id, environment_refs=["runner-secrets"], env={"MODE": "plain"}, ttl_seconds=600)
    recorded.append((spec, asyncio.run(env.run(activities.create_context, spec))))
    token = activities._tokens[exec_id][0]  # held by the worker, in memory

    step = Step(exec_id, child(f"import time; time.sleep(1); exec({DIGEST!r})", "API_KEY", "MODE"))
    started = time.monotonic()
    result = asyncio.run(env.run(activities.run_step, step))
    ran = time.monotonic() - started
    recorded.append((step, result))
    assert isinstance(result, StepResult) and result.returncode == 0, result
    assert result.stdout.split() == [sha256(CANARY), sha256(b"plain")]
    assert len(beats) >= 5, f"{len(beats)} heartbeats in {ran:.1f} s at 0.1 s"
    assert all(t <= started + ran for t, _ in beats)

    # A command that prints the value: the result (and so the history) has it concealed.
    leak = Step(exec_id, child("import os; print('key=' + os.environ['API_KEY'])"))
    result = asyncio.run(env.run(activities.run_step, leak))
    recorded.append((leak, result))
    assert result.stdout == "key=<concealed>\n", result

    queue = asyncio.run(env.run(activities.worker_task_queue))
    recorded.append((None, queue))
    recorded.append((exec_id, asyncio.run(env.run(activities.delete_context, exec_id))))
    assert recorded[-1][1] is True and exec_id not in activities._tokens

    for inp, out in recorded:
        blob = history(inp, out)
        assert CANARY not in blob and token.encode() not in blob and OPERATOR_TOKEN.encode() not in blob, (inp, out)
    assert all(exec_id.encode() in history(inp) for inp, _ in recorded if inp is not None)

    # Deleted: the worker no longer has it, and the token no longer works anywhere.
    with pytest.raises(ApplicationError) as info:
        asyncio.run(ActivityEnvironment().run(activities.run_step, step))
    assert info.value.type == "ContextNotHere" and info.value.non_retryable
    with pytest.raises(NotPermitted):
        stigmer_exec.run(exec_id, ["true"], token=token, server=server.url, binary=binary_path())


def test_temporal_activity_missing_variables(activities):
    exec_id = new_id("wf")
    env = ActivityEnvironment()
    asyncio.run(env.run(activities.create_context, ContextSpec(exec_id, environment_refs=["runner-secrets"])))
    step = Step(exec_id, ["true"], file_vars=["API_KEY", "NOT_IN_CONTEXT"])
    with pytest.raises(ApplicationError) as info:
        asyncio.run(env.run(activities.run_step, step))
    error = info.value
    assert error.type == "MissingVariables" and error.non_retryable, error
    assert error.details[0]["names"] == ["NOT_IN_CONTEXT"] and error.details[0]["status"] == 78, error.details
    blob = failure_history(error) + history(step)
    assert b"NOT_IN_CONTEXT" in blob and CANARY not in blob
    assert activities._tokens[exec_id][0].encode() not in blob

    # At creation: the agent requires SLACK_WEBHOOK, which nothing supplies.
    with pytest.raises(ApplicationError) as info:
        asyncio.run(env.run(activities.create_context, ContextSpec(new_id("wf"), instance="github-reviewer-prod")))
    assert info.value.type == "MissingVariables" and info.value.details[0]["names"] == ["SLACK_WEBHOOK"]
    assert info.value.non_retryable
    asyncio.run(env.run(activities.delete_context, exec_id))


def test_temporal_activity_cancellation(activities, tmp_path):
    exec_id = new_id("wf")
    env = ActivityEnvironment()
    beats: list = []
    env.on_heartbeat = lambda *details: beats.append(details)
    asyncio.run(env.run(activities.create_context, ContextSpec(exec_id, environment_refs=["runner-secrets"])))
    pidfile = tmp_path / "pids.json"

    async def scenario() -> float:
        task = asyncio.ensure_future(env.run(activities.run_step, Step(exec_id, child(STUBBORN, str(pidfile)))))
        while not pidfile.exists() or len(beats) < 3:
            assert not task.done(), task
            await asyncio.sleep(0.02)
        started = time.monotonic()
        env.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - started

    took = asyncio.run(scenario())
    pids = json.loads(pidfile.read_text())
    assert pids["ppid"] == pids["pgid"] == pids["sid"], "--mask-output: the launcher is the parent, in one group"
    assert_all_gone(pids)
    assert 0.9 <= took < 5, f"SIGKILL after the 1 s grace (the grandchild ignores SIGTERM): {took:.2f} s"
    asyncio.run(ActivityEnvironment().run(activities.delete_context, exec_id))


def test_temporal_workflow_is_importable():
    """The example workflow is a valid workflow and passes the sandbox's import checks, as
    a Worker would check it at start (it runs for real only against a Temporal server:
    see examples/temporal/README.md)."""
    from temporalio import workflow
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

    defn = workflow._Definition.must_from_class(example_workflow.AgentRun)
    assert defn.name == "AgentRun"

    async def prepare() -> None:  # the sandbox runs the module's imports on an event loop
        SandboxedWorkflowRunner().prepare_workflow(defn)

    asyncio.run(prepare())
    job = example_workflow.Job(steps=[["python3", "agent.py"]], instance="github-reviewer-prod")
    assert CANARY not in history(job)


TEMPORAL_TEST_SERVER = os.environ.get("TEMPORAL_TEST_SERVER") or shutil.which("temporal-test-server")


@pytest.mark.skipif(not TEMPORAL_TEST_SERVER, reason="no temporal-test-server binary (temporalio would download "
                    "one): set TEMPORAL_TEST_SERVER, or put it on PATH")
def test_temporal_workflow_end_to_end(server, activities, tmp_path):
    """The example workflow on a time-skipping test server: the context exists while the
    steps run, is gone when the workflow completes and when it is cancelled, and the
    workflow's whole history holds no value and no token."""
    from temporalio.client import WorkflowFailureError
    from temporalio.testing import WorkflowEnvironment
    from temporalio.worker import Worker

    AgentRun, Job = example_workflow.AgentRun, example_workflow.Job

    def raw(history) -> bytes:  # the events as stored: payloads' bytes as they are (not base64)
        return b"".join(event.SerializeToString() for event in history.events)
    shared = example_workflow.SHARED_QUEUE
    pidfile = tmp_path / "pids.json"

    async def scenario() -> None:
        async with await WorkflowEnvironment.start_time_skipping(
                test_server_existing_path=TEMPORAL_TEST_SERVER) as env:
            acts = activities.all()
            async with Worker(env.client, task_queue=shared, workflows=[AgentRun], activities=acts), \
                    Worker(env.client, task_queue=activities.task_queue, activities=acts):
                done_id = new_id("wf")
                results = await env.client.execute_workflow(
                    AgentRun.run, Job(steps=[child(DIGEST, "API_KEY"), child("import os; print(os.environ['API_KEY'])")],
                                      environment_refs=["runner-secrets"]), id=done_id, task_queue=shared)
                assert [r.stdout for r in results] == [sha256(CANARY) + "\n", "<concealed>\n"], results
                assert stigmer_exec.delete_context(done_id, **api(server)) is False, "deleted on completion"
                blob = raw(await env.client.get_workflow_handle(done_id).fetch_history())
                assert done_id.encode() in blob and CANARY not in blob and b"stx2_" not in blob

                cancel_id = new_id("wf")
                handle = await env.client.start_workflow(
                    AgentRun.run, Job(steps=[child(STUBBORN, str(pidfile))], environment_refs=["runner-secrets"],
                                      heartbeat_timeout_seconds=2),
                    id=cancel_id, task_queue=shared)
                while not pidfile.exists():
                    await asyncio.sleep(0.05)
                await handle.cancel()
                with pytest.raises(WorkflowFailureError):
                    await handle.result()
                assert_all_gone(json.loads(pidfile.read_text()))
                assert stigmer_exec.delete_context(cancel_id, **api(server)) is False, "deleted on cancellation"
                blob = raw(await handle.fetch_history())
                assert CANARY not in blob and b"stx2_" not in blob

    asyncio.run(scenario())
