"""Trust boundaries, attacked from outside (SECURITY.md's attackers): the child, another
process of the same user, the careless user. Each test performs the attack against the
built binary and shows it fails; the control shows the check is not blind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from helpers import (
    CORE_FILE_SIZE,
    OPERATOR_TOKEN,
    PYTHON,
    STORY_ARGS,
    apply_examples,
    Server,
    base_env,
    companion_path,
    create_context,
    describe,
    key_init,
    kill_quietly,
    new_canary,
    ok,
    one_line_error,
    pid_alive,
    recorded_calls,
    recording_companion,
    remote_create,
    remote_run,
    random_execution_token,
    parse_execution_token,
    signed_get,
    hpke_open_all,
    hpke_seal_all,
    delivery_aad,
    delivery_plaintext,
    parse_delivery,
    HIDDEN_MSG,
    created_token,
    run,
    simple_context,
    spawn,
    wait_for,
    wait_gone,
    write,
)

# --------------------------------------------------------------------------
# the child: it must not open the launcher's key, store or token files


READ_ATTEMPT = r"""
import json, os, sys
out = {}
for path in sys.argv[1:]:
    try:
        with open(path, "rb") as f:
            f.read(1)
        out[path] = "read"
    except OSError as e:
        out[path] = e.strerror
print(json.dumps(out))
"""


def attempt_reads(home, paths, *extra, exec_id="trust-1"):
    proc = run(["run", "--execution-id", exec_id, *extra, "--", PYTHON, "-c", READ_ATTEMPT, *map(str, paths)], home)
    return json.loads(ok(proc).stdout)


@pytest.mark.parametrize("mode", [[], ["--init"], ["--mask-output"], ["--seccomp", "none"]])
def test_child_cannot_open_the_key_or_the_store(home, mode):
    """A compromised child (root here, as in CI) tries the key file and the store directly
    and through /proc/1/root; Landlock refuses, also without a seccomp filter."""
    key_init(home)
    simple_context(home, "trust-1", new_canary())
    targets = [home / "encryption.key", home / "stigmer.db", Path(f"/proc/1/root{home}/encryption.key")]
    result = attempt_reads(home, targets, *mode)
    assert all(v == "Permission denied" for v in result.values()), result
    # Control: the same child with --no-isolation reads both (the check is not blind).
    control = attempt_reads(home, targets[:2], "--no-isolation", *mode)
    assert all(v == "read" for v in control.values()), control


def test_child_cannot_list_the_home_or_reach_a_store_elsewhere(home, tmp_path):
    key_init(home)
    stores = home.parent / "stores"
    stores.mkdir()
    store = stores / "ctx.db"
    ok(create_context(home, "trust-2", "--secret", "S", secret_stdin=new_canary(), store=store))
    proc = run(["run", "--store", store, "--execution-id", "trust-2", "--", PYTHON, "-c",
                "import os,sys\nfor p in sys.argv[1:]:\n try: os.listdir(p); print(p, 'listed')\n except OSError as e: print(p, e.strerror)",
                home, store.parent], home)
    lines = ok(proc).stdout.decode().splitlines()
    assert lines == [f"{home} Permission denied", f"{stores} Permission denied"], lines
    # What exists beside them still works: the test's own tmp_path, /usr, /etc.
    proc = run(["run", "--execution-id", "trust-2", "--store", store, "--", "sh", "-c",
                f"echo ok > {tmp_path}/written && cat /etc/hostname >/dev/null && ls /usr/bin >/dev/null && echo fine"], home)
    assert ok(proc).stdout == b"fine\n" and (tmp_path / "written").read_text() == "ok\n"


def test_walk_grants_every_sibling_and_closes_only_its_own_descriptors(tmp_path, bin_path):
    """The walk opens one O_PATH descriptor per granted entry and closes them in runs
    (close_range). With 150 entries beside the home (more than one batch) and an inherited
    descriptor in the middle of the numbers it takes, every sibling is still granted, the
    key is still refused, and the inherited descriptor reaches the child untouched."""
    parent = tmp_path / "crowded"
    parent.mkdir()
    for i in range(150):
        (parent / f"sibling-{i:03}").write_text(f"{i}\n")
    home = parent / "home"
    home.mkdir(mode=0o700)
    key_init(home)
    simple_context(home, "trust-walk", new_canary())
    r, w = os.pipe()
    try:
        os.write(w, b"inherited")
        os.close(w)
        # fd 9 is open across the walk: its descriptors run below and above it.
        # The parent is on the way down (it cannot be listed): the siblings by name.
        probe = ("import os,sys\n"
                 "n = sum(1 for i in range(150) if open(os.path.join(sys.argv[1], 'sibling-%03d' % i)).read() == '%d\\n' % i)\n"
                 "try:\n open(sys.argv[2], 'rb').read(1); key = 'read'\n"
                 "except OSError as e: key = e.strerror\n"
                 "print(n, key, os.read(9, 64).decode(), sep='|')")
        proc = run(["run", "--execution-id", "trust-walk", "--", PYTHON, "-c", probe, parent, home / "encryption.key"],
                   home, fd_map={9: r})
    finally:
        os.close(r)
    assert ok(proc).stdout == b"150|Permission denied|inherited\n", proc.stdout


def test_require_and_no_isolation_conflict(home):
    proc = run(["run", "--env", "A=1", "--require-isolation", "--no-isolation", "--", "true"], home)
    one_line_error(proc, 64, "--require-isolation")


def test_token_file_is_out_of_reach(home, tmp_path):
    """A --token-file is protected like the key (remote mode: no key on disk at all)."""
    token = home.parent / "token"
    token.write_text("stx_not_a_real_token\n")
    token.chmod(0o600)
    # The fetch fails (no server): what matters is that the ruleset is built first and
    # names the file. Ask for it in debug output.
    proc = run(["run", "--server", "grpc://127.0.0.1:1", "--fetch-timeout", "1s", "--token-file", token,
                "--execution-id", "t", "--log-level", "debug", "--", "true"], home)
    assert b"landlock ruleset" in proc.stderr and str(token).encode() in proc.stderr, describe(proc)


# --------------------------------------------------------------------------
# the child dies with its supervisor


@pytest.mark.parametrize("mode", [["--init"], ["--mask-output"], ["--init", "--mask-output"]])
def test_child_dies_with_a_sigkilled_supervisor(home, tmp_path, mode):
    pidfile = tmp_path / "child-pid"
    launcher = spawn(["run", "--env", "A=1", *mode, "--", "sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"], home)
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, f"{pidfile} written")
        child = int(pidfile.read_text())
        assert pid_alive(child)
        launcher.kill()  # SIGKILL: no chance to forward anything
        launcher.wait(timeout=10)
        wait_gone(child, timeout=10)
    finally:
        kill_quietly(launcher)


# --------------------------------------------------------------------------
# every process of both executables: non-dumpable, no core


def proc_limits(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]:
        name = line[:26].strip()
        out[name] = line[26:].split()[0]
    return out


def test_serve_has_no_core_limit(home, tmp_path):
    key_init(home)
    server = Server(home, tmp_path).start()
    try:
        assert proc_limits(server.proc.pid)[CORE_FILE_SIZE] == "0"
    finally:
        server.stop()


def test_companion_is_not_dumpable(tmp_path):
    """Another process of the same (non-root) user cannot read the companion's
    /proc/PID/environ: a non-dumpable process's /proc files belong to root. The control, a
    plain process of that user, has them owned by the user."""
    import socket
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts, never answers: the companion waits
    port = listener.getsockname()[1]
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    env = {"PATH": "/usr/bin:/bin", "STIGMER_TOKEN": "stx_t", "HOME": "/nonexistent"}
    companion = subprocess.Popen(
        [*nobody, str(companion_path()), "context", "get", "x", "--server", f"grpc://127.0.0.1:{port}",
         "--fetch-timeout", "20s"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    control = subprocess.Popen([*nobody, "sleep", "20"], env=env)
    try:
        def owner(pid):
            try:
                return os.stat(f"/proc/{pid}/environ").st_uid
            except FileNotFoundError:
                return None
        # setpriv execs the companion in the same pid; wait until it is the companion.
        wait_for(lambda: Path(f"/proc/{companion.pid}/exe").resolve().name == "stigmer-exec-full", 10, "the companion started")
        wait_for(lambda: owner(control.pid) == 65534, 10, "the control runs as nobody")
        wait_for(lambda: owner(companion.pid) == 0, 10, "the companion's /proc files owned by root (non-dumpable)")
        assert proc_limits(companion.pid)[CORE_FILE_SIZE] == "0"
    finally:
        for p in (companion, control):
            p.kill()
            p.wait()
        listener.close()


def test_token_reaches_the_fetch_helper_over_a_descriptor(home, tmp_path):
    script, logdir = recording_companion(tmp_path)
    token = random_execution_token()
    proc = run(["run", "--server", "grpc://127.0.0.1:1", "--fetch-timeout", "1s", "--execution-id", "t", "--", "true"],
               home, env_extra={"STIGMER_TOKEN": token, "STIGMER_EXEC_FULL": script})
    assert proc.returncode == 69, describe(proc)
    calls = recorded_calls(logdir)
    assert len(calls) == 1, calls
    assert "STIGMER_TOKEN" not in calls[0]["env"], calls[0]
    assert "--token-fd" in calls[0]["argv"] and token not in repr(calls[0]), calls[0]


def test_postgres_url_never_reaches_an_argv_we_build(home, tmp_path):
    script, logdir = recording_companion(tmp_path)
    url = "postgres://user:hunter2@127.0.0.1:1/db"
    proc = run(["run", "--execution-id", "t", "--", "true"], home,
               env_extra={"STIGMER_STORE": url, "STIGMER_EXEC_FULL": script})
    # The helper got the URL (it reached the database's port: 69, unreachable) over a
    # descriptor: neither its argv nor its environment (readable by the same user for an
    # instant before its main runs) holds it.
    assert proc.returncode == 69, describe(proc)
    calls = recorded_calls(logdir)
    assert calls and "hunter2" not in repr(calls[0]), calls
    assert "STIGMER_STORE" not in calls[0]["env"] and "--store-fd" in calls[0]["argv"], calls
    # In the user's own argv it works but is warned about.
    proc = run(["run", "--store", url, "--execution-id", "t", "--", "true"], home, env_extra={"STIGMER_EXEC_FULL": script})
    assert b"--store holds a database password" in proc.stderr and b"hunter2" not in proc.stderr, describe(proc)


def test_operator_token_file_must_be_private(home, tmp_path):
    key_init(home)
    token = tmp_path / "operator-token"
    token.write_text(OPERATOR_TOKEN + "\n")
    token.chmod(0o644)
    proc = run(["serve", "--listen", "127.0.0.1:0", "--operator-token-file", token], home)
    one_line_error(proc, 77, "0600", secrets_=(OPERATOR_TOKEN.encode(),))


def test_server_ttl_bounds(home, tmp_path):
    """ttl_seconds near 2^63 used to trap the server; 10^15 was accepted."""
    from helpers import generate_stubs
    import grpc
    key_init(home)
    server = Server(home, tmp_path).start()
    try:
        pb2, pb2_grpc = generate_stubs(tmp_path / "stubs")
        channel = grpc.insecure_channel(server.url.removeprefix("grpc://"))
        stub = pb2_grpc.ExecutionContextServiceStub(channel)
        md = [("authorization", f"Bearer {OPERATOR_TOKEN}")]
        for ttl in (2**63 - 1, 10**15, -5):
            req = pb2.CreateExecutionContextRequest(ttl_seconds=ttl)
            req.spec.execution_id = f"ttl-{abs(ttl) % 1000}"
            with pytest.raises(grpc.RpcError) as e:
                stub.CreateExecutionContext(req, metadata=md, timeout=10)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value
        assert server.proc.poll() is None, "the server died"
        ok_req = pb2.CreateExecutionContextRequest(ttl_seconds=3600)
        ok_req.spec.execution_id = "ttl-ok"
        stub.CreateExecutionContext(ok_req, metadata=md, timeout=10)
    finally:
        server.stop()


# --------------------------------------------------------------------------
# careless input: one clear line, never a value, nothing half-done


def test_secret_file_line_without_equals_is_not_echoed(home, tmp_path):
    token = "ghp_onlythetoken0123456789"
    f = write(tmp_path, "token.env", token + "\n")
    proc = run(["run", "--secret-file", f, "--", "true"], home)
    one_line_error(proc, 65, "token.env:1", secrets_=(token.encode(),))


def test_secret_in_mcp_command_is_not_echoed(home, tmp_path):
    key_init(home)
    secret = new_canary("cmd")
    ok(create_context(home, "trust-cmd", "--secret", "CMD", secret_stdin=secret))
    cfg = write(tmp_path, "c.json", json.dumps({"mcpServers": {"s": {"command": "${CMD}"}}}))
    proc = run(["mcp", "run", "--execution-id", "trust-cmd", "--config", cfg, "--server", "s"], home)
    assert proc.returncode == 127 and secret not in proc.stderr + proc.stdout, describe(proc)
    warning, error = proc.stderr.decode().splitlines()
    assert "command holds a secret" in warning and 'command not found: "${CMD}"' in error, describe(proc)


@pytest.mark.parametrize("where", ["env-file", "stdin", "manifest", "flag"])
def test_nul_in_a_value_is_refused_with_its_place(home, tmp_path, where):
    marker = tmp_path / "ran"
    cmd = ["--", "sh", "-c", f"touch {marker}"]
    if where == "env-file":
        f = tmp_path / "nul.env"
        f.write_bytes(b"A=ok\nB=be\x00fore\n")
        proc = run(["run", "--env-file", f, *cmd], home)
        one_line_error(proc, 65, "nul.env:2", "NUL")
    elif where == "stdin":
        proc = run(["run", "--secret", "S", *cmd], home, input=b"be\x00fore\n")
        one_line_error(proc, 65, "NUL")
    elif where == "manifest":
        key_init(home)
        f = write(tmp_path, "env.yaml", 'apiVersion: agentic.stigmer.ai/v1\nkind: Environment\nmetadata: {name: e}\n'
                  'spec:\n  data:\n    A:\n      value: "be\\0fore"\n')
        proc = run(["apply", "-f", f], home)
        one_line_error(proc, 65, "NUL")
    else:
        proc = run(["run", "--env", "A=x\x01", *cmd], home)  # argv cannot carry a NUL: the nearest check
        assert proc.returncode == 0 or proc.returncode == 65
        return
    assert not marker.exists()


def test_fifo_store_is_refused_not_waited_on(home, tmp_path):
    fifo = tmp_path / "store.fifo"
    os.mkfifo(fifo)
    proc = run(["run", "--store", fifo, "--execution-id", "x", "--", "true"], home, timeout=20)
    one_line_error(proc, 65, "not a regular file")


def test_secret_file_from_a_slow_writer(home, tmp_path, bin_path):
    """`--secret-file <(cmd)`: the pattern the README recommends, with a writer slower
    than the reader."""
    proc = subprocess.run(
        ["bash", "-c", f'"$0" run --secret-file <(sleep 0.5; echo S=slowvalue) -- sh -c \'printf %s "$S"\'', str(bin_path)],
        env=base_env(home), capture_output=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout == b"slowvalue", describe(proc)


def test_key_fd_zero_leaves_the_child_a_stdin(home, tmp_path, bin_path):
    key = key_init(home)
    simple_context(home, "trust-fd0", new_canary())
    keyfile = tmp_path / "key"
    keyfile.write_text(key + "\n")
    with open(keyfile, "rb") as f:
        proc = subprocess.run(
            [str(bin_path), "run", "--key-fd", "0", "--execution-id", "trust-fd0", "--",
             "sh", "-c", "test -e /proc/self/fd/0 && readlink /proc/self/fd/0"],
            stdin=f, env=base_env(home), capture_output=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout.strip() == b"/dev/null", describe(proc)


@pytest.mark.parametrize("url", ["grpc://[::1", "grpc://::1:7443", "grpc://[]:1", "grpc://u@h:1", "grpc://h:1/x"])
def test_bad_server_urls_are_usage_errors(home, url):
    proc = run(["context", "get", "x", "--server", url], home, env_extra={"STIGMER_TOKEN": "t"})
    one_line_error(proc, 64, "invalid server")


@pytest.mark.parametrize("query,code,needle", [
    ("sslmode=require", 69, "PostgreSQL"),  # spoken now (test_postgres_tls.py); nothing listens on port 1
    ("sslmode=verify-full", 64, "sslrootcert"),
    ("sslmode=prefer", 64, "sslmode=prefer"),
    ("sslmode=allow", 64, "sslmode=allow"),
])
def test_postgres_tls_asked_for_is_never_dropped(home, query, code, needle):
    """`?sslmode=require` used to be ignored (the password went out in clear). What cannot be
    honoured — verify-full without a CA to check against, the modes that fall back to a
    connection in clear — is refused before any connection, and the password is not echoed."""
    url = f"postgres://user:hunter2@127.0.0.1:1/db?{query}"
    proc = run(["context", "get", "x", "--store", url], home)
    assert b"hunter2" not in proc.stderr + proc.stdout, describe(proc)
    assert proc.returncode == code and needle.encode() in proc.stderr, describe(proc)


def test_store_password_is_not_echoed_in_errors(home):
    url = "postgres://user:hunter2@127.0.0.1:notaport/db"
    proc = run(["context", "get", "x"], home, env_extra={"STIGMER_STORE": url})
    one_line_error(proc, 64, "invalid port", secrets_=(b"hunter2",))


@pytest.mark.parametrize("mode", [["--init"], ["--mask-output"]])
def test_supervision_that_cannot_be_set_up_launches_nothing(home, tmp_path, mode):
    """Out of descriptors, the supervisor's signalfd, masking pipes or spawn pipe cannot be
    made: one line, a launcher status, and the child never starts (no busy loop, no hang)."""
    marker = tmp_path / "ran"
    proc = run(["run", "--env", "A=1", *mode, "--", "touch", marker], home,
               prefix=["prlimit", "--nofile=5"], timeout=30)
    assert proc.returncode in (70, 74, 77), describe(proc)
    err = proc.stderr.decode()
    assert len(err.splitlines()) == 1 and "nothing was launched" in err, describe(proc)
    assert not marker.exists()


def test_idle_connections_cannot_starve_the_server(home, tmp_path, examples):
    """150 sockets that connect and say nothing, against a server with a 128-descriptor
    limit, used to stop every launcher. Now the extra ones are closed on accept, the idle
    ones after 10 s, and a launcher that retries within --fetch-timeout gets its context."""
    import socket
    from helpers import apply_examples
    key_init(home)
    server = Server(home, tmp_path, nofile=128).start()
    idle = []
    try:
        for _ in range(150):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            idle.append(s)
        created = remote_create(home, server.url, "idle-1", "--env", "A=1")
        token = created_token(ok(created)) if created.returncode == 0 else None
        if token is None:  # refused while the idle ones hold every slot: retry after they are closed
            wait_for(lambda: remote_create(home, server.url, "idle-1", "--env", "A=1", "--replace").returncode == 0,
                     40, "a create once idle connections are closed")
            token = created_token(remote_create(home, server.url, "idle-1", "--env", "A=1", "--replace"))
        proc = run(["run", "--server", server.url, "--execution-id", "idle-1", "--fetch-timeout", "40s", "--",
                    "sh", "-c", 'printf %s "$A"'], tmp_path / "client", env_extra={"STIGMER_TOKEN": token}, timeout=60)
        assert proc.returncode == 0 and proc.stdout == b"1", describe(proc)
        assert server.proc.poll() is None
    finally:
        for s in idle:
            s.close()
        server.stop()


@pytest.mark.parametrize("args", [
    ["context", "get", "x", "--server", "grpc://stigmer.invalid:7443"],
    ["run", "--server", "grpc://stigmer.invalid:7443", "--execution-id", "x", "--", "true"],
])
def test_plaintext_grpc_to_a_remote_host_is_refused(home, args):
    """A bearer token over grpc:// to anything but loopback crosses the network in clear:
    refused before any connection is made (the host below is never resolved)."""
    proc = run(args, home, env_extra={"STIGMER_TOKEN": "stx_t"})
    one_line_error(proc, 64, "grpcs://", secrets_=(b"stx_t",))


def test_without_landlock_the_launch_says_so_or_refuses(home, tmp_path, bin_path):
    """A kernel without Landlock, made here by an outer stigmer-exec whose OCI profile
    answers landlock_create_ruleset with ENOSYS: the inner launch warns (and runs), or with
    --require-isolation refuses with one line and no child."""
    key_init(home)
    simple_context(home, "trust-noll", new_canary())
    profile = write(tmp_path, "no-landlock.json", json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["landlock_create_ruleset"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}))
    # The outer launch strips STIGMER_*: the inner one is told its home.
    outer = ["run", "--env", "OUTER=1", "--no-isolation", "--seccomp", profile, "--", str(bin_path), "run",
             "--home", home, "--execution-id", "trust-noll"]
    marker = tmp_path / "ran"
    proc = run([*outer, "--require-isolation", "--", "touch", marker], home)
    one_line_error(proc, 77, "Landlock is not available", "nothing was launched")
    assert not marker.exists()
    proc = run([*outer, "--", "touch", marker], home)
    assert proc.returncode == 0 and marker.exists(), describe(proc)
    assert b"warning: the child can open" in proc.stderr and b"Landlock is not available" in proc.stderr, describe(proc)


# --------------------------------------------------------------------------
# the network (7, 10): deliveries authenticated by the pinned server key; fetches signed
# by the execution token, which is never sent; tokens looked up by an indexed hash


class FakeServer:
    """A gRPC server on loopback that answers every fetch with values of its own choosing,
    sealed to the launcher's recipient key just as the real server seals them (with an
    identity of its own, or none), and records what it was sent."""

    def __init__(self, stubs, mode: str):
        import grpc
        from concurrent import futures
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        pb2, pb2_grpc = stubs
        self.requests = []
        fake = self
        identity = X25519PrivateKey.generate() if mode == "own-identity" else None

        class Servicer(pb2_grpc.ExecutionContextServiceServicer):
            def GetExecutionContext(self, request, context):
                fake.requests.append((request, dict(context.invocation_metadata())))
                now = int(time.time())
                values = [("LD_PRELOAD", False, "runtime", b"/tmp/attacker.so"), ("MARK", False, "runtime", b"fake")]
                plain = delivery_plaintext(request.execution_id, now, now + 3600, values)
                enc, [sealed] = hpke_seal_all(bytes(request.recipient_public_key), [plain],
                                              [delivery_aad(request.execution_id)], sender_private=identity)
                return pb2.GetExecutionContextResponse(
                    execution_id=request.execution_id, created_at=now, expires_at=now + 3600, encapsulated_key=enc,
                    variables=[pb2.VariableInfo(name=n, is_secret=s, layer=l) for n, s, l, _ in values],
                    sealed_context=sealed)

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        pb2_grpc.add_ExecutionContextServiceServicer_to_server(Servicer(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self):
        self.server.stop(None)


@pytest.mark.parametrize("mode", ["own-identity", "no-identity"])
def test_a_fake_server_cannot_hand_the_launcher_values(home, tmp_path, stubs, mode):
    """A fake server on a plaintext address (or anything where TLS ends early) seals an
    LD_PRELOAD of its own to the launcher's key. The launcher opens only what the server
    key it pinned (inside the execution token) sealed — and never sends the token."""
    key_init(home)
    server = Server(home, tmp_path).start()
    try:
        token = created_token(remote_create(home, server.url, "net-1", "--env", "MARK=real"))
        marker = tmp_path / "ran"
        script = ["sh", "-c", f'echo "$MARK $LD_PRELOAD" > {marker}']
        ok(remote_run(home, server.url, "net-1", script, token=token))  # control: the real server
        assert marker.read_text().strip() == "real", marker.read_text()
        marker.unlink()
        fake = FakeServer(stubs, mode)
        try:
            proc = remote_run(home, f"grpc://127.0.0.1:{fake.port}", "net-1", script, token=token)
            one_line_error(proc, 77, "failed authentication", "pinned server key")
            assert not marker.exists(), "the child ran with the fake server's values"
            assert len(fake.requests) == 1
            request, metadata = fake.requests[0]
            assert "authorization" not in metadata, metadata
            signing_key = parse_execution_token(token)[0].private_bytes_raw()
            assert token.encode() not in request.SerializeToString()
            assert signing_key not in request.SerializeToString()
        finally:
            fake.stop()
    finally:
        server.stop()


def test_a_seen_fetch_yields_nothing_readable(home, tmp_path, stubs):
    """Whoever sees a launcher's request (where TLS ends early) can replay it only as it
    was: the values come back sealed to the first launcher's key. With another recipient
    key, other names, or a time outside the window, the signature no longer holds."""
    import grpc
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    pb2, pb2_grpc = stubs
    key_init(home)
    canary = new_canary()
    server = Server(home, tmp_path).start()
    try:
        token = created_token(remote_create(home, server.url, "net-2", "--secret", "S", secret_stdin=canary))
        server_key = parse_execution_token(token)[1]
        launcher, attacker = X25519PrivateKey.generate(), X25519PrivateKey.generate()
        raw = lambda k: k.public_key().public_bytes_raw()
        seen = signed_get(pb2, token, "net-2", raw(launcher))
        with grpc.insecure_channel(server.url.removeprefix("grpc://")) as channel:
            svc = pb2_grpc.ExecutionContextServiceStub(channel)
            got = svc.GetExecutionContext(seen, timeout=10)  # replayed verbatim
            aads, cts = [delivery_aad("net-2")], [got.sealed_context]
            [plain] = hpke_open_all(launcher, got.encapsulated_key, cts, aads, sender_public=server_key)
            assert parse_delivery(plain)[3][0][3] == canary
            with pytest.raises(Exception):
                hpke_open_all(attacker, got.encapsulated_key, cts, aads, sender_public=server_key)

            def denied(request, message=HIDDEN_MSG):
                with pytest.raises(grpc.RpcError) as e:
                    svc.GetExecutionContext(request, timeout=10)
                assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED, e.value
                assert message in e.value.details(), e.value

            for field, value in (("recipient_public_key", raw(attacker)), ("time", seen.time + 1),
                                 ("execution_id", "net-other"), ("server_public_key", bytes(32))):
                forged = pb2.GetExecutionContextRequest()
                forged.CopyFrom(seen)
                setattr(forged, field, value)
                denied(forged)
            forged = pb2.GetExecutionContextRequest()
            forged.CopyFrom(seen)
            forged.names.append("S")
            denied(forged)
            # Outside the 300 s window either way (said plainly: clocks are no secret); inside
            # it, fine.
            now = int(time.time())
            denied(signed_get(pb2, token, "net-2", raw(attacker), at=now - 330), "check both clocks")
            denied(signed_get(pb2, token, "net-2", raw(attacker), at=now + 330), "check both clocks")
            svc.GetExecutionContext(signed_get(pb2, token, "net-2", raw(attacker), at=now - 200), timeout=10)
    finally:
        server.stop()
    assert canary not in server.stderr


# --------------------------------------------------------------------------
# the store (12): the whole context is authenticated under the key


def tamper(db_path, sql, *params):
    import sqlite3
    db = sqlite3.connect(db_path)
    try:
        db.execute(sql, params)
        db.commit()
    finally:
        db.close()


STORE_CHANGES = {
    "added-LD_PRELOAD": "INSERT INTO context_values (execution_id, name, position, value, sealed, is_secret, layer) "
                        "VALUES ('{id}', 'LD_PRELOAD', 99, '/tmp/attacker.so', 0, 0, 'runtime')",
    "changed-plain-value": "UPDATE context_values SET value = 'https://attacker.example' WHERE name = 'CTX_PLAIN'",
    "dropped-variable": "DELETE FROM context_values WHERE name = 'CTX_PLAIN'",
    "secret-made-plain": "UPDATE context_values SET is_secret = 0 WHERE name = 'CTX_SECRET'",
    "extended-lifetime": "UPDATE contexts SET expires_at = expires_at + 86400",
    "tag-removed": "UPDATE contexts SET tag = NULL",
}


@pytest.mark.parametrize("change", sorted(STORE_CHANGES))
def test_a_store_writer_cannot_change_a_context(home, tmp_path, change):
    """Whoever can write the store (not the key) changes a context's rows: the launch
    refuses before a child exists. AES-GCM binds each secret; the context's tag binds the
    rest."""
    key_init(home)
    canary = new_canary()
    simple_context(home, "st-1", canary)
    marker = tmp_path / "ran"
    ok(run(["run", "--execution-id", "st-1", "--", "touch", str(marker)], home))  # control
    marker.unlink()
    tamper(home / "stigmer.db", STORE_CHANGES[change].format(id="st-1"))
    proc = run(["run", "--execution-id", "st-1", "--", "touch", str(marker)], home)
    one_line_error(proc, 77, "st-1", "integrity", secrets_=(canary,))
    assert not marker.exists()


def test_a_store_writer_cannot_swap_in_a_token_of_their_own(home, tmp_path, stubs):
    """The attacker writes the hash of their own token key into a context on the server's
    store: their signed fetch is accepted, and the context's tag (which binds the token
    hash) stops it — no value leaves the server. The lookup is by an index on the hash."""
    import grpc
    import hashlib
    import sqlite3
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    pb2, pb2_grpc = stubs
    key_init(home)
    canary = new_canary()
    server = Server(home, tmp_path).start()
    try:
        token = created_token(remote_create(home, server.url, "sw-1", "--secret", "S", secret_stdin=canary))
        attacker = random_execution_token(parse_execution_token(token)[1])
        attacker_key = parse_execution_token(attacker)[0].public_key().public_bytes_raw()
        db = home / "stigmer.db"
        tamper(db, "UPDATE contexts SET token_hash = ? WHERE execution_id = 'sw-1'", hashlib.sha256(attacker_key).hexdigest())
        recipient = X25519PrivateKey.generate().public_key().public_bytes_raw()
        with grpc.insecure_channel(server.url.removeprefix("grpc://")) as channel:
            svc = pb2_grpc.ExecutionContextServiceStub(channel)
            with pytest.raises(grpc.RpcError) as e:
                svc.GetExecutionContext(signed_get(pb2, attacker, "sw-1", recipient), timeout=10)
            assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED and "integrity" in e.value.details(), e.value
        one_line_error(remote_run(home, server.url, "sw-1", ["true"], token=attacker), 77, "integrity", secrets_=(canary,))
        plan = sqlite3.connect(db).execute("EXPLAIN QUERY PLAN SELECT execution_id FROM contexts WHERE token_hash = ?",
                                           ("x",)).fetchall()
        assert "contexts_by_token" in repr(plan), plan
    finally:
        server.stop()
    assert canary not in server.stderr


RESOURCE_CHANGES = {
    "added-LD_PRELOAD": "INSERT INTO resource_values (kind, owner, name, position, value, sealed, is_secret, description) "
                        "VALUES ('Environment', 'base', 'LD_PRELOAD', 99, '/tmp/attacker.so', 0, 0, NULL)",
    "changed-plain-value": "UPDATE resource_values SET value = 'attacker-org' WHERE owner = 'github-prod' AND name = 'GITHUB_ORG'",
    "instance-repointed": "UPDATE resources SET environment_refs = 'base' WHERE kind = 'AgentInstance'",
    "tag-removed": "UPDATE resources SET tag = NULL WHERE kind = 'Environment' AND name = 'base'",
}


@pytest.mark.parametrize("change", sorted(RESOURCE_CHANGES))
def test_a_store_writer_cannot_change_what_a_merge_reads(home, tmp_path, examples, change):
    """The same attacker changes the Environments, Agents and AgentInstances a merge reads
    (for `run --instance` now, or the next `context create`): each resource carries a tag,
    so neither a launch nor a new context uses the change."""
    key_init(home)
    apply_examples(home, examples)
    marker = tmp_path / "ran"
    launch = ["run", "--instance", "github-reviewer-prod", "--env", "SLACK_WEBHOOK=x", "--", "touch", str(marker)]
    ok(run(launch, home))  # control
    marker.unlink()
    tamper(home / "stigmer.db", RESOURCE_CHANGES[change])
    one_line_error(run(launch, home), 77, "integrity", "in the store")
    assert not marker.exists()
    one_line_error(create_context(home, "res-1", *STORY_ARGS, secret_stdin=b"x"), 77, "integrity")
    one_line_error(run(["context", "get", "res-1"], home), 66)
