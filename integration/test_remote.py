"""Black-box tests of remote contexts ("Remote contexts"): `stigmer-exec serve` (handed over
to stigmer-exec-full) with its SQLite store, `context create|get|delete|gc --server`,
`run --server` from a home with no key at all, token scoping, the TTL sweep, launchers
retrying across a server restart, the gRPC API from Python stubs (values HPKE-sealed to
the caller), and TLS.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from helpers import (
    describe,
    EXAMPLE_TOKEN,
    STORY_ARGS,
    STORY_LAYERS,
    STORY_NAMES,
    story_values,
    table_rows,
    HIDDEN_MSG,
    OPERATOR_TOKEN,
    PRINT_ENV,
    Server,
    apply_examples,
    created_token,
    env_lines,
    files_containing,
    hpke_open_all,
    parse_execution_token,
    signed_get,
    delivery_aad,
    parse_delivery,
    key_init,
    new_canary,
    ok,
    one_line_error,
    recorded_calls,
    recording_companion,
    remote_cli,
    remote_create,
    remote_run,
    spawn,
    wait_for,
    run,
)


def story_create(home, url, exec_id, canary, *extra):
    return remote_create(home, url, exec_id, *STORY_ARGS, *extra, secret_stdin=canary)


# --------------------------------------------------------------------------
# fixtures


@pytest.fixture
def server_home(tmp_path, examples):
    """The server's home: a key and the example manifests in its SQLite store."""
    path = tmp_path / "server"
    key_init(path)
    apply_examples(path, examples)
    return path


@pytest.fixture
def client_home(tmp_path, bin_path):
    """A launcher's home with no key at all (not even created)."""
    return tmp_path / "client"


@pytest.fixture
def operator_home(tmp_path, bin_path):
    """Where the operator's `context … --server` commands run from (no key, no store)."""
    return tmp_path / "operator"


@pytest.fixture
def servers():
    """Servers started by a test; killed at teardown if still running."""
    started: list[Server] = []
    yield started
    for server in started:
        server.kill()


@pytest.fixture
def server(server_home, tmp_path, servers):
    srv = Server(server_home, tmp_path).start()
    servers.append(srv)
    return srv


# --------------------------------------------------------------------------
# 1. remote launch end to end


def test_remote_launch_end_to_end(server, server_home, client_home, operator_home, tmp_path):
    canary = new_canary()
    created = story_create(operator_home, server.url, "rem-1", canary)
    token = created_token(created)
    assert b"rem-1" in created.stderr and canary not in created.stderr, describe(created)

    got = ok(remote_cli(operator_home, server.url, "get", "rem-1"))
    assert table_rows(got.stdout) == STORY_LAYERS, describe(got)
    assert canary not in got.stdout + got.stderr and EXAMPLE_TOKEN not in got.stdout + got.stderr

    # The launcher: no key anywhere, the token in STIGMER_TOKEN, the server in --server.
    parent = {"STIGMER_FOO": "bar", "STIGMER_EXECUTION_ID": "rem-1", "KEEP_ME": "1"}
    proc = remote_run(client_home, server.url, "rem-1", ["env"], token=token, env_extra=parent)
    ok(proc)
    env = env_lines(proc.stdout)
    for name, value in story_values(canary).items():
        assert env.get(name) == value, f"{name}: {env.get(name)!r}\n{describe(proc)}"
    assert env.get("KEEP_ME") == "1", describe(proc)
    assert not [k for k in env if k.startswith("STIGMER_")], describe(proc)
    assert token.encode() not in proc.stdout, "the execution token reached the child"
    assert canary not in proc.stderr, describe(proc)

    # The server URL from STIGMER_SERVER and the token from --token-file / --token-fd work too.
    token_file = tmp_path / "exec-token"
    token_file.write_text(token + "\n")
    proc = ok(run(["run", "--execution-id", "rem-1", "--token-file", token_file, "--",
                    "python3", "-c", PRINT_ENV, *STORY_NAMES], client_home, env_extra={"STIGMER_SERVER": server.url}))
    assert json.loads(proc.stdout) == story_values(canary), describe(proc)
    r, w = os.pipe()
    os.write(w, token.encode())
    os.close(w)
    try:
        proc = ok(run(["run", "--server", server.url, "--execution-id", "rem-1", "--token-fd", "3", "--",
                        "python3", "-c", PRINT_ENV, *STORY_NAMES], client_home, fd_map={3: r}))
    finally:
        os.close(r)
    assert json.loads(proc.stdout) == story_values(canary), describe(proc)

    # Nothing about the context lands in the client's home, and it has no key.
    assert not (client_home / "encryption.key").exists()
    for needle in (canary, EXAMPLE_TOKEN, token.encode()):
        assert files_containing(client_home, needle) == [], needle

    # The server's info-level log names methods and ids, never values or tokens.
    log = server.stderr
    assert b"rem-1" in log and b"Create" in log and b"Get" in log, log
    for needle in (canary, EXAMPLE_TOKEN, token.encode(), OPERATOR_TOKEN.encode()):
        assert needle not in log, f"{needle!r} in the server log"
    # The server keeps only the token's hash and sealed values.
    for needle in (canary, EXAMPLE_TOKEN, token.encode()):
        assert files_containing(server_home, needle) == [], needle
    assert server.stop() == 0, server.stderr


def test_fetch_helper_never_sees_plaintext_or_key(server, client_home, operator_home, tmp_path):
    """The companion fetch helper (spawned by `run --server`) gets no master key and hands the
    launcher only ciphertext; it is located through $STIGMER_EXEC_FULL here so it can be
    recorded."""
    canary = new_canary()
    token = created_token(story_create(operator_home, server.url, "rem-helper", canary))
    script, logdir = recording_companion(tmp_path)
    proc = remote_run(client_home, server.url, "rem-helper", ["python3", "-c", PRINT_ENV, *STORY_NAMES], token=token,
                      env_extra={"STIGMER_EXEC_FULL": script, "STIGMER_ENCRYPTION_KEY": "A" * 43 + "="})
    assert json.loads(ok(proc).stdout) == story_values(canary), describe(proc)
    calls = recorded_calls(logdir)
    assert [c["argv"][0] for c in calls] == ["fetch"], calls
    assert "STIGMER_ENCRYPTION_KEY" not in calls[0]["env"], calls[0]["env"]
    frame = calls[0]["stdout"]
    assert frame, "the helper wrote nothing"
    for value in story_values(canary).values():
        assert value.encode() not in frame, f"{value!r} in the helper's output"


# --------------------------------------------------------------------------
# 2. token scoping


def test_token_scoping(server, client_home, operator_home):
    created_a = story_create(operator_home, server.url, "scope-a", new_canary())
    token_a = created_token(created_a)
    assert len(created_a.stdout.splitlines()) == 1
    token_b = created_token(remote_create(operator_home, server.url, "scope-b", "--env", "B=1"))
    assert token_a != token_b

    # The operator reads and deletes any context.
    for exec_id in ("scope-a", "scope-b"):
        ok(remote_cli(operator_home, server.url, "get", exec_id))
    ok(remote_cli(operator_home, server.url, "delete", "scope-b"))
    one_line_error(remote_cli(operator_home, server.url, "get", "scope-b"), 66)
    token_c = created_token(remote_create(operator_home, server.url, "scope-c", "--env", "C=1"))

    # An execution token reads exactly its own context; another's looks like a missing one.
    ok(remote_run(client_home, server.url, "scope-a", ["true"], token=token_a))
    other = one_line_error(remote_run(client_home, server.url, "scope-c", ["true"], token=token_a), 77, HIDDEN_MSG)
    missing = one_line_error(remote_run(client_home, server.url, "scope-none", ["true"], token=token_a), 77,
                             HIDDEN_MSG)
    deleted = one_line_error(remote_run(client_home, server.url, "scope-b", ["true"], token=token_b), 77, HIDDEN_MSG)
    assert other == missing.replace("scope-none", "scope-c") == deleted.replace("scope-b", "scope-c"), (other, missing)
    # A random token of the right form; a bearer token of the old form (refused before any
    # request: it could be replayed); anything else is an operator token, which pins no
    # server key, so the launch needs --server-key.
    random_token = "stx2_" + base64.urlsafe_b64encode(secrets.token_bytes(64)).decode().rstrip("=")
    one_line_error(remote_run(client_home, server.url, "scope-a", ["true"], token=random_token), 77, HIDDEN_MSG)
    one_line_error(remote_run(client_home, server.url, "scope-a", ["true"], token="stx_" + secrets.token_urlsafe(32)),
                   77, "older server", "stx2_")
    one_line_error(remote_run(client_home, server.url, "scope-a", ["true"], token=secrets.token_hex(20)), 64, "--server-key")
    one_line_error(remote_run(client_home, server.url, "scope-a", ["true"], token=secrets.token_hex(20),
                              extra=["--server-key", server.server_key]), 77)

    # No token at all.
    one_line_error(remote_run(client_home, server.url, "scope-a", ["true"]), 77)
    one_line_error(remote_cli(operator_home, server.url, "get", "scope-a", token=None), 77)

    # An execution token can neither create nor delete (nor sweep).
    one_line_error(remote_create(operator_home, server.url, "scope-new", "--env", "X=1", token=token_a), 77)
    one_line_error(remote_cli(operator_home, server.url, "delete", "scope-a", token=token_a), 77)
    one_line_error(remote_cli(operator_home, server.url, "delete", "scope-c", token=token_a), 77)
    one_line_error(remote_cli(operator_home, server.url, "gc", token=token_a), 77)
    ok(remote_cli(operator_home, server.url, "get", "scope-a"))
    ok(remote_cli(operator_home, server.url, "get", "scope-c"))
    one_line_error(remote_cli(operator_home, server.url, "get", "scope-new"), 66)
    ok(remote_run(client_home, server.url, "scope-c", ["true"], token=token_c))

    # --delete-on-exit cannot go with --server.
    one_line_error(remote_run(client_home, server.url, "scope-a", ["true"], token=token_a, extra=["--delete-on-exit"]),
                   64)
    for token in (token_a, token_b, token_c):
        assert token.encode() not in server.stderr


# --------------------------------------------------------------------------
# 3. TTL sweep


def test_ttl_sweep(server_home, tmp_path, servers, client_home, operator_home):
    server = Server(server_home, tmp_path, sweep="1s").start()
    servers.append(server)
    token = created_token(remote_create(operator_home, server.url, "ttl-1", "--env", "A=1", "--ttl", "2s"))
    created_token(remote_create(operator_home, server.url, "ttl-long", "--env", "A=1"))
    ok(remote_cli(operator_home, server.url, "get", "ttl-1"))

    # Gone once the sweeper (not `gc`) has deleted it.
    wait_for(lambda: remote_cli(operator_home, server.url, "get", "ttl-1").returncode == 66, 10,
             "context get --server to say not found")
    wait_for(lambda: b"swept expired contexts" in server.stderr, 5, "the sweep's log line")
    db = server_home / "stigmer.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        ids = {r[0] for r in conn.execute("SELECT execution_id FROM contexts")}
    conn.close()
    assert ids == {"ttl-long"}, ids

    one_line_error(remote_cli(operator_home, server.url, "get", "ttl-1"), 66)
    gc = ok(remote_cli(operator_home, server.url, "gc"))
    assert gc.stdout == b"0\n", describe(gc)
    proc = remote_run(client_home, server.url, "ttl-1", ["true"], token=token)
    one_line_error(proc, (77, 66))
    ok(remote_cli(operator_home, server.url, "get", "ttl-long"))
    assert b"sweep failed" not in server.stderr, server.stderr


# --------------------------------------------------------------------------
# 4. launchers retry across a server restart


def test_launchers_wait_for_a_restarted_server(server_home, tmp_path, servers, client_home, operator_home):
    first = Server(server_home, tmp_path).start()
    servers.append(first)
    port = first.port
    canary = new_canary()
    token = created_token(story_create(operator_home, first.url, "restart-1", canary))
    assert first.stop(signal.SIGTERM) == 0, first.stderr

    launchers = [
        spawn(["run", "--server", first.url, "--execution-id", "restart-1", "--fetch-timeout", "20s", "--",
               "python3", "-c", PRINT_ENV, *STORY_NAMES], client_home, {"STIGMER_TOKEN": token})
        for _ in range(3)
    ]
    try:
        time.sleep(1.0)  # they are retrying against a closed port
        assert all(p.poll() is None for p in launchers), [p.returncode for p in launchers]
        second = Server(server_home, tmp_path, port=port).start()
        servers.append(second)
        assert second.port == port
        for p in launchers:
            out, err = p.communicate(timeout=25)
            assert p.returncode == 0, (p.returncode, out, err)
            assert json.loads(out) == story_values(canary), (out, err)
    finally:
        for p in launchers:
            if p.poll() is None:
                p.kill()
                p.communicate()

    # Down for good: --fetch-timeout 2s gives up with 69, and the child never starts.
    assert second.stop() == 0, second.stderr
    marker = tmp_path / "child-started"
    started = time.monotonic()
    proc = remote_run(client_home, f"grpc://127.0.0.1:{port}", "restart-1",
                      ["python3", "-c", f"open({str(marker)!r}, 'w').write('x')"], token=token,
                      extra=["--fetch-timeout", "2s"])
    elapsed = time.monotonic() - started
    one_line_error(proc, 69, secrets_=(canary, token.encode()))
    assert 1.5 <= elapsed < 8, elapsed
    assert not marker.exists(), "the child ran without its environment"


# --------------------------------------------------------------------------
# 8. the standard gRPC API from generated Python stubs


def test_grpc_api_from_python_stubs(stubs, server):
    import grpc
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    pb2, pb2_grpc = stubs
    canary = new_canary()
    op = (("authorization", f"Bearer {OPERATOR_TOKEN}"),)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        svc = pb2_grpc.ExecutionContextServiceStub(channel)

        request = pb2.CreateExecutionContextRequest(
            spec=pb2.ExecutionContextSpec(execution_id="py-1", data={
                "PLAIN": pb2.ExecutionValue(value="plain value"),
                "SLACK_WEBHOOK": pb2.ExecutionValue(value=canary.decode(), is_secret=True),
                "LOG_LEVEL": pb2.ExecutionValue(value="trace"),
            }),
            ttl_seconds=600, instance="github-reviewer-prod")
        created = svc.CreateExecutionContext(request, metadata=op, timeout=10)
        token = created.execution_token
        assert token.startswith("stx2_") and len(token) == 91, created
        assert base64.b64encode(created.server_public_key).decode() == server.server_key, created
        assert parse_execution_token(token)[1] == created.server_public_key
        assert created.expires_at - created.created_at == 600, created
        layers = {v.name: (v.is_secret, v.layer) for v in created.variables}
        assert layers == {
            "LOG_LEVEL": (False, "runtime"),
            "TIMEOUT": (False, "environment:base"),
            "GITHUB_TOKEN": (True, "environment:github-prod"),
            "GITHUB_ORG": (False, "environment:github-prod"),
            "PLAIN": (False, "runtime"),
            "SLACK_WEBHOOK": (True, "runtime"),
        }, created

        # Operator, no recipient: names, flags and layers; no value at all.
        got = svc.GetExecutionContext(pb2.GetExecutionContextRequest(execution_id="py-1"), metadata=op, timeout=10)
        assert {v.name: (v.is_secret, v.layer) for v in got.variables} == layers
        assert got.sealed_context == b"" and got.encapsulated_key == b"", got
        raw = got.SerializeToString()
        for value in (canary, EXAMPLE_TOKEN, b"plain value", b"my-org"):
            assert value not in raw

        # Execution token and an X25519 key: every value sealed to it.
        private = X25519PrivateKey.generate()
        public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        got = svc.GetExecutionContext(signed_get(pb2, token, "py-1", public), timeout=10)
        assert got.execution_id == "py-1"
        assert len(got.encapsulated_key) == 32, got
        raw = got.SerializeToString()
        for value in (canary, EXAMPLE_TOKEN, b"plain value", b"my-org"):
            assert value not in raw, f"{value!r} in the raw response"
        expected = {"PLAIN": b"plain value", "SLACK_WEBHOOK": canary, "LOG_LEVEL": b"trace", "TIMEOUT": b"30s",
                    "GITHUB_TOKEN": EXAMPLE_TOKEN, "GITHUB_ORG": b"my-org"}
        # One message, HPKE Auth mode under the server key: execution, times and every
        # name, flag, layer and value.
        [plain] = hpke_open_all(private, got.encapsulated_key, [got.sealed_context], [delivery_aad("py-1")],
                                sender_public=created.server_public_key)
        execution_id, created_at, expires_at, values = parse_delivery(plain)
        assert (execution_id, created_at, expires_at) == ("py-1", got.created_at, got.expires_at)
        assert {n: v for n, _, _, v in values} == expected
        assert {n: (s, l) for n, s, l, _ in values} == layers
        # Base mode (no server authentication), and another key, do not open it.
        with pytest.raises(Exception):
            hpke_open_all(private, got.encapsulated_key, [got.sealed_context], [delivery_aad("py-1")])
        with pytest.raises(Exception):
            hpke_open_all(X25519PrivateKey.generate(), got.encapsulated_key, [got.sealed_context], [delivery_aad("py-1")],
                          sender_public=created.server_public_key)

        # Status codes.
        def code_of(call, req, metadata=None):
            with pytest.raises(grpc.RpcError) as info:
                call(req, metadata=metadata, timeout=10)
            return info.value.code(), info.value.details()

        get_py1 = pb2.GetExecutionContextRequest(execution_id="py-1", recipient_public_key=public)
        assert code_of(svc.GetExecutionContext, get_py1)[0] == grpc.StatusCode.UNAUTHENTICATED
        assert code_of(svc.CreateExecutionContext, request)[0] == grpc.StatusCode.UNAUTHENTICATED
        # The execution token itself sent as a bearer token is not accepted.
        bearer = (("authorization", f"Bearer {token}"),)
        assert code_of(svc.GetExecutionContext, get_py1, bearer)[0] == grpc.StatusCode.PERMISSION_DENIED
        wrong = (("authorization", "Bearer stx_" + secrets.token_urlsafe(32)),)
        stranger = "stx2_" + base64.urlsafe_b64encode(secrets.token_bytes(32) + created.server_public_key).decode().rstrip("=")
        wrong_code, wrong_msg = code_of(svc.GetExecutionContext, signed_get(pb2, stranger, "py-1", public))
        assert wrong_code == grpc.StatusCode.PERMISSION_DENIED, wrong_msg
        # Another execution's id, signed with this token: the same answer as a stranger's.
        assert code_of(svc.GetExecutionContext, signed_get(pb2, token, "py-none", public)) == (wrong_code, wrong_msg)
        for call, req in ((svc.CreateExecutionContext, request),
                          (svc.DeleteExecutionContext, pb2.DeleteExecutionContextRequest(execution_id="py-1")),
                          (svc.SweepExpiredContexts, pb2.SweepExpiredContextsRequest())):
            assert code_of(call, req, bearer)[0] == grpc.StatusCode.PERMISSION_DENIED
            assert code_of(call, req, wrong)[0] == grpc.StatusCode.PERMISSION_DENIED
        assert code_of(svc.CreateExecutionContext, request, op)[0] == grpc.StatusCode.ALREADY_EXISTS

        # Sweep and delete with the operator token.
        short = pb2.CreateExecutionContextRequest(spec=pb2.ExecutionContextSpec(
            execution_id="py-short", data={"A": pb2.ExecutionValue(value="1")}), ttl_seconds=1)
        svc.CreateExecutionContext(short, metadata=op, timeout=10)
        swept = [0]

        def sweep_once():
            swept[0] += svc.SweepExpiredContexts(pb2.SweepExpiredContextsRequest(), metadata=op, timeout=10).deleted
            return swept[0] >= 1

        wait_for(sweep_once, 6, "SweepExpiredContexts to delete py-short", interval=0.25)
        assert swept[0] == 1
        assert svc.DeleteExecutionContext(pb2.DeleteExecutionContextRequest(execution_id="py-1"), metadata=op,
                                          timeout=10).deleted is True
        assert svc.DeleteExecutionContext(pb2.DeleteExecutionContextRequest(execution_id="py-1"), metadata=op,
                                          timeout=10).deleted is False
        assert code_of(svc.GetExecutionContext, pb2.GetExecutionContextRequest(execution_id="py-1"), op)[0] == \
            grpc.StatusCode.NOT_FOUND
    assert canary not in server.stderr and token.encode() not in server.stderr


def test_hpke_helper_matches_the_library():
    """Guards the test's own RFC 9180 code against cryptography's single-shot HPKE."""
    hpke = pytest.importorskip("cryptography.hazmat.primitives.hpke")
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    private = X25519PrivateKey.generate()
    suite = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
    sealed = suite.encrypt(b"hello hpke", private.public_key(), info=b"stigmer-exec/v1 context")
    assert hpke_open_all(private, sealed[:32], [sealed[32:]], [b""]) == [b"hello hpke"]


# --------------------------------------------------------------------------
# 9. TLS


def make_tls(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key): a throwaway CA and a server cert for 127.0.0.1/localhost."""
    d = tmp_path / "tls"
    d.mkdir()

    def ossl(*args):
        proc = subprocess.run(["openssl", *map(str, args)], cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")

    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=stigmer-test-ca",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                               "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
                               "keyUsage=critical,digitalSignature,keyEncipherment\n")
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial",
         str(secrets.randbits(63)), "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem")
    return d / "ca.pem", d / "server.pem", d / "server.key"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_tls(server_home, tmp_path, servers, client_home, operator_home, host):
    """grpcs:// with a private CA; the certificate names IP:127.0.0.1 and DNS:localhost."""
    ca, cert, key = make_tls(tmp_path)
    server = Server(server_home, tmp_path, tls=(cert, key)).start()
    servers.append(server)
    assert server.scheme == "grpcs" and server.url.startswith("grpcs://127.0.0.1:"), server.stderr
    assert b"serving on grpcs://127.0.0.1:" in server.stderr
    url = f"grpcs://{host}:{server.port}"

    canary = new_canary()
    quick = ["--fetch-timeout", "5s"]  # a refused handshake is retried like an unreachable server
    token = created_token(story_create(operator_home, url, "tls-1", canary, "--tls-ca", ca, *quick))
    proc = remote_run(client_home, url, "tls-1", ["python3", "-c", PRINT_ENV, *STORY_NAMES], token=token,
                      extra=["--tls-ca", ca, *quick])
    assert json.loads(ok(proc).stdout) == story_values(canary), describe(proc)

    # Without the CA the server's certificate is not trusted: refused, one line, no child.
    marker = tmp_path / "child-started"
    started = time.monotonic()
    proc = remote_run(client_home, url, "tls-1", ["python3", "-c", f"open({str(marker)!r}, 'w')"],
                      token=token, extra=["--fetch-timeout", "3s"])
    one_line_error(proc, (77, 69), secrets_=(canary,))
    assert time.monotonic() - started < 10
    assert not marker.exists()
    # Plaintext gRPC to a TLS port does not work either.
    proc = remote_run(client_home, url.replace("grpcs://", "grpc://"), "tls-1", ["true"], token=token,
                      extra=["--fetch-timeout", "2s"])
    one_line_error(proc, (77, 69))
    assert canary not in server.stderr
    assert server.stop() == 0


# --------------------------------------------------------------------------
# 10. serve's usage


def test_serve_usage(server_home, tmp_path, bin_path):
    proc = run(["serve", "--listen", "127.0.0.1:0"], server_home)
    one_line_error(proc, 64, "operator")
    short = tmp_path / "short-token"
    short.write_text("tooshort\n")
    short.chmod(0o600)
    proc = run(["serve", "--listen", "127.0.0.1:0", "--operator-token-file", short], server_home)
    one_line_error(proc, 64)
    # No master key: refused before binding.
    keyless = tmp_path / "keyless"
    proc = run(["serve", "--listen", "127.0.0.1:0"], keyless, env_extra={"STIGMER_OPERATOR_TOKEN": OPERATOR_TOKEN})
    one_line_error(proc, 77)
    proc = ok(run(["serve", "--help"], server_home))
    assert b"--listen" in proc.stdout and b"--operator-token-file" in proc.stdout
