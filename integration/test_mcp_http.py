"""Black-box tests of `stigmer-exec mcp run` on http/sse servers: the bridge.

The remote server is mcp_http_server.py (the official SDK's MCPServer behind uvicorn, on
127.0.0.1), started per test as a subprocess and always stopped. It records every HTTP
request it receives (method, path, query, headers, body) in a JSON-lines file, so the
tests see what reached it. The client is the SDK's own stdio client (`stdio_client` +
`ClientSession`) started on `stigmer-exec mcp run … --server remote`, exactly as an MCP
client would start it; the launcher execs the companion `stigmer-exec-full` (hidden
command `mcp-bridge`), which talks MCP over HTTP to the server.

Every test builds its own STIGMER_HOME and context `http-1`: the plain ORG and the
secrets REMOTE_TOKEN and UNUSED_SECRET, random canaries that must never show up where
they do not belong (argv, environment, stderr, another origin). Assertion messages
compare digests and never print a canary.

The `test_sdk_*` tests drive the same server with the SDK's own HTTP clients
(streamable HTTP and SSE): they need no stigmer-exec binary, check the server the bridge
tests rely on, and are the baseline benchmarks/mcp-bridge.py compares the bridge with.
The bridge tests are skipped when stigmer-exec-full is not beside the launcher.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import re
import shutil
import signal
import ssl
import string
import subprocess
import time
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import parse_qs

import anyio
import httpx2
import pytest
from mcp import ClientSession, MCPError, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import REQUEST_TIMEOUT
from mcp_types.version import LATEST_HANDSHAKE_VERSION

from helpers import (
    strace_calls,
    INTEGRATION_DIR,
    PYTHON,
    TIMEOUT_S,
    base_env,
    binary_path,
    companion_path,
    create_context,
    free_port,
    key_init,
    kill_quietly,
    new_canary,
    ok,
    one_line_error,
    read_line,
    run,
    sha256,
    spawn,
    wait_file,
    wait_for,
    write_json,
)

HTTP_SERVER = INTEGRATION_DIR / "mcp_http_server.py"
EXEC_ID = "http-1"
ORG = "acme-org-9"
SERVER_NAME = "stigmer-remote-probe"
TOOLS = {"echo", "whoami", "slow", "big"}
BIG = 1_000_000
SESSION_TIMEOUT_S = 60
REQUEST_TIMEOUT_S = 20  # each request through the bridge

needs_bridge = pytest.mark.skipif(
    not companion_path().is_file(),
    reason=f"stigmer-exec-full (the bridge) is not beside the launcher: {companion_path()}",
)


# --------------------------------------------------------------------------
# the remote server


def big_text(size: int) -> str:
    """What the server's big(size) returns (mcp_http_server.big_text)."""
    alphabet = string.ascii_letters + string.digits
    return (alphabet * (size // len(alphabet) + 1))[:size]


class RemoteServer:
    """mcp_http_server.py in the background, once it printed `ready <port>`. Its record
    is `<name>-record.jsonl` and its stderr `<name>-stderr` in tmp_path."""

    def __init__(self, tmp_path: Path, *args, port: int = 0, token: bytes | None = None, name: str = "server"):
        self.name = name
        self.record = tmp_path / f"{name}-record.jsonl"
        self.errlog = tmp_path / f"{name}-stderr"
        argv = [PYTHON, str(HTTP_SERVER), "--port", str(port), "--record", str(self.record), *map(str, args)]
        if token is not None:  # in a file: the token stays out of the server's argv
            token_file = tmp_path / f"{name}-token"
            token_file.write_bytes(token + b"\n")
            argv += ["--token-file", str(token_file)]
        with open(self.errlog, "ab") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        try:
            line = read_line(self.proc, timeout=20)
            assert line.startswith(b"ready "), f"{name} did not start: {line!r}\n{self.errlog.read_text()}"
        except BaseException:
            self.kill()
            raise
        self.port = int(line.split()[1])

    def url(self, path: str = "/mcp", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def entries(self) -> list[dict]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines() if line.strip()]

    def requests(self) -> list[dict]:
        """The HTTP requests it received, in order (event lines left out)."""
        return [e for e in self.entries() if "method" in e]

    def events(self) -> list[dict]:
        return [e for e in self.entries() if "event" in e]

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after 10 s; its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=TIMEOUT_S)
        self.proc.stdout.close()
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=TIMEOUT_S)
        self.proc.stdout.close()


@pytest.fixture
def servers(tmp_path):
    """start(*args, port=0, token=None, name="server") -> RemoteServer; all stopped afterwards."""
    started: list[RemoteServer] = []

    def start(*args, **kwargs) -> RemoteServer:
        server = RemoteServer(tmp_path, *args, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


def make_tls(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key): a throwaway CA and a certificate it signed for 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    d = tmp_path / "tls"
    d.mkdir()
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stigmer-test-ca")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                     serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    return d / "ca.pem", d / "server.pem", d / "server.key"


# --------------------------------------------------------------------------
# calling tools (both through the bridge and directly)


def unwrap(exc: BaseException) -> BaseException:
    """The one exception inside (nested) single-exception groups, else exc itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def run_async(coro, timeout: float = SESSION_TIMEOUT_S):
    """asyncio.run with a deadline; a lone exception comes out of the task groups' wrapping."""
    try:
        return asyncio.run(asyncio.wait_for(coro, timeout))
    except BaseExceptionGroup as group:
        raise unwrap(group) from group


async def call_text(session: ClientSession, tool: str, progress_callback=None, **arguments) -> str:
    """The text of a successful tool call's single content item."""
    result = await session.call_tool(tool, arguments, progress_callback=progress_callback)
    assert not result.is_error, f"tool {tool} failed: {str(result)[:500]}"
    assert len(result.content) == 1 and result.content[0].type == "text", str(result)[:500]
    return result.content[0].text


async def whoami(session: ClientSession) -> dict:
    return json.loads(await call_text(session, "whoami"))


async def slow_with_progress(session: ClientSession, seconds: float = 1.0, steps: int = 5) -> list[float]:
    """Call slow(); the progress values received before it returned (it must return "done")."""
    progress: list[float] = []

    async def on_progress(value, total, message):
        progress.append(value)

    assert await call_text(session, "slow", on_progress, seconds=seconds, steps=steps) == "done"
    return list(progress)


async def cancel_slow(session: ClientSession) -> float:
    """Start slow(30 s), cancel it (the caller's scope, as an application would) once a
    progress notification came; the seconds the cancelled call took to give control back."""
    started = anyio.Event()
    scope = anyio.CancelScope()

    async def on_progress(value, total, message):
        started.set()

    async def call():
        with scope:
            await session.call_tool("slow", {"seconds": 30, "steps": 30}, progress_callback=on_progress)
            raise AssertionError("slow(30) returned although cancelled")

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        with anyio.move_on_after(15) as waiting:
            await started.wait()
        begin = time.monotonic()
        scope.cancel()
        assert not waiting.cancelled_caught, "no progress notification from slow() within 15 s"
    return time.monotonic() - begin


def check_basic_round(init, tools: set[str], echoed: str, who: dict, token: bytes | None):
    assert init.server_info.name == SERVER_NAME, init
    assert TOOLS <= tools, tools
    assert echoed == "hello through the bridge", echoed
    assert who["headers"].get("x-org") == ORG, who["headers"]
    if token is not None:
        assert who["authorization"] == sha256(b"Bearer " + token), "the Authorization header did not arrive intact"


# --------------------------------------------------------------------------
# the SDK's own HTTP clients, directly (no stigmer-exec)


@asynccontextmanager
async def direct_session(url: str, transport: str, headers: dict[str, str], ca: Path | None = None):
    """A ClientSession on the SDK's streamable-HTTP or SSE client (not initialised)."""
    verify = ssl.create_default_context(cafile=str(ca)) if ca else True
    timeout = httpx2.Timeout(30, read=300)
    if transport == "sse":
        def factory(headers=None, timeout=None, auth=None):
            return httpx2.AsyncClient(headers=headers, timeout=timeout, auth=auth, verify=verify)

        async with sse_client(url, headers=headers, httpx_client_factory=factory) as (read, write):
            async with ClientSession(read, write) as session:
                yield session
    else:
        async with httpx2.AsyncClient(headers=headers, timeout=timeout, verify=verify) as http:
            # No SSE event size limit: big(1 MB) comes back as one event.
            async with streamable_http_client(url, http_client=http, max_sse_event_size=None) as streams:
                async with ClientSession(streams[0], streams[1]) as session:
                    yield session


def bearer_headers(token: bytes) -> dict[str, str]:
    return {"Authorization": "Bearer " + token.decode(), "X-Org": ORG}


@pytest.mark.parametrize("mode", ["sse-responses", "json-response"])
def test_sdk_streamable_http(servers, tmp_path, mode):
    token = new_canary("direct")
    server = servers(*(["--json-response"] if mode == "json-response" else []), token=token)

    async def session_run():
        async with direct_session(server.url(), "streamable-http", bearer_headers(token)) as session:
            init = await session.initialize()
            tools = {t.name for t in (await session.list_tools()).tools}
            check_basic_round(init, tools, await call_text(session, "echo", text="hello through the bridge"),
                              await whoami(session), token)
            progress = await slow_with_progress(session)
            took = await cancel_slow(session)
            after = await call_text(session, "echo", text="after the cancel")
            text = await call_text(session, "big", size=BIG)
            return progress, took, after, text

    progress, took, after, text = run_async(session_run())
    assert progress, "no progress notification during slow()"
    assert took < 5, f"the cancelled call took {took:.1f} s to return"
    assert after == "after the cancel"
    assert len(text) == BIG and sha256(text.encode()) == sha256(big_text(BIG).encode()), "big() came back altered"
    wait_for(lambda: server.events(), 5, "the server to record the cancellation")
    assert server.events()[0]["event"] == "cancelled", server.events()
    requests = server.requests()
    session_ids = {r["headers"].get("mcp-session-id") for r in requests[1:]}
    assert len(session_ids) == 1 and None not in session_ids, session_ids
    assert requests[-1]["method"] == "DELETE", [r["method"] for r in requests]


def test_sdk_sse(servers):
    token = new_canary("direct")
    server = servers("--transport", "sse", token=token)

    async def session_run():
        async with direct_session(server.url("/sse"), "sse", bearer_headers(token)) as session:
            init = await session.initialize()
            tools = {t.name for t in (await session.list_tools()).tools}
            check_basic_round(init, tools, await call_text(session, "echo", text="hello through the bridge"),
                              await whoami(session), token)
            return await slow_with_progress(session)

    assert run_async(session_run()), "no progress notification during slow()"
    methods = [(r["method"], r["path"]) for r in server.requests()]
    assert methods[0] == ("GET", "/sse") and ("POST", "/messages/") in methods, methods


def test_sdk_wrong_token_is_refused(servers):
    token = new_canary("direct")
    server = servers(token=token)

    async def session_run():
        async with direct_session(server.url(), "streamable-http", bearer_headers(b"not-" + token)) as session:
            await session.initialize()

    with pytest.raises(MCPError):
        run_async(session_run())
    requests = server.requests()
    assert requests and requests[0]["method"] == "POST", requests


def test_sdk_tls(servers, tmp_path):
    ca, cert, key = make_tls(tmp_path)
    server = servers("--tls-cert", cert, "--tls-key", key)

    async def session_run():
        async with direct_session(server.url(scheme="https"), "streamable-http", {"X-Org": ORG}, ca=ca) as session:
            await session.initialize()
            return await call_text(session, "echo", text="over tls")

    assert run_async(session_run()) == "over tls"


def test_sdk_redirect_and_recorder(servers):
    recorder = servers("--recorder", name="b")
    redirect = servers("--redirect-to", f"http://127.0.0.1:{recorder.port}", name="a")
    with httpx2.Client() as http:
        first = http.post(redirect.url("/mcp?x=1"), content=b"{}", headers={"Authorization": "Bearer t"})
        assert first.status_code == 307 and first.headers["location"] == recorder.url("/mcp"), first
        second = http.post(first.headers["location"], content=b"{}")
        assert second.status_code == 401, second
    assert [r["headers"].get("authorization") for r in redirect.requests()] == ["Bearer t"]
    assert [(r["method"], r["path"], r["body"]) for r in recorder.requests()] == [("POST", "/mcp", "{}")]


def test_sdk_server_exits_0_on_sigterm(servers):
    server = servers()
    assert server.stop() == 0, server.errlog.read_text()


# --------------------------------------------------------------------------
# the bridge: contexts, configs and a session through `stigmer-exec mcp run`


class RemoteContext:
    """A home with a key and the context `http-1`: the plain ORG and the secrets
    REMOTE_TOKEN and UNUSED_SECRET (random canaries)."""

    def __init__(self, home: Path, tmp_path: Path):
        self.home = home
        self.tmp = tmp_path
        self.token = new_canary("remote")
        self.unused = new_canary("unused")
        key_init(home)
        ok(create_context(home, EXEC_ID, "--env", f"ORG={ORG}", "--secret", "REMOTE_TOKEN",
                          "--secret", "UNUSED_SECRET", secret_stdin=self.token + b"\n" + self.unused))

    @property
    def canaries(self) -> tuple[bytes, bytes]:
        return (self.token, self.unused)

    def assert_no_canary(self, *blobs: bytes, what: str = "output"):
        for blob in blobs:
            for canary in self.canaries:
                assert canary not in blob, f"a secret canary is in the {what} (value not shown)"


@pytest.fixture
def ctx(home, tmp_path) -> RemoteContext:
    return RemoteContext(home, tmp_path)


HEADERS = {"Authorization": "Bearer ${REMOTE_TOKEN}", "X-Org": "${ORG}"}


def mcp_config(tmp_path: Path, url: str, type_: str = "http", headers=HEADERS) -> Path:
    """An mcpServers config with the one server `remote`."""
    return write_json(tmp_path / "mcp.json", {"mcpServers": {"remote": {"type": type_, "url": url, "headers": headers}}})


def manifest_config(tmp_path: Path, url: str) -> Path:
    """A Stigmer Agent manifest whose server `remote` sends the token as a query parameter."""
    path = tmp_path / "agent.yaml"
    path.write_text(f"""\
apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: remote-probe
spec:
  description: a remote MCP server reached through the bridge
  mcp_servers:
    - name: remote
      http:
        url: {url}
        headers:
          X-Org: '${{ORG}}'
        query_params:
          api_key: '${{REMOTE_TOKEN}}'
        timeout_seconds: 30
""")
    return path


def bridge_args(ctx: RemoteContext, cfg: Path, *extra) -> list[str]:
    return ["mcp", "run", "--execution-id", EXEC_ID, "--config", str(cfg), "--server", "remote",
            "--home", str(ctx.home), *map(str, extra)]


class Bridge:
    """One session through `stigmer-exec mcp run … --server remote EXTRA`, started by the
    SDK's stdio client. The launcher runs under `sh`, which writes its exit status to
    `rc` once it ends (the stdio client does not report it); its stderr goes to `errlog`."""

    def __init__(self, ctx: RemoteContext, cfg: Path, *extra, name: str = "bridge", argv=None, env=None):
        self.ctx = ctx
        self.errlog = ctx.tmp / f"{name}-stderr"
        self.rc = ctx.tmp / f"{name}-rc"
        # sh -c '"$@"; echo $? > "$0"' RC COMMAND ARGS…: runs COMMAND ARGS, then writes its status to RC.
        # `argv` (a wrapped config's command and args) replaces the default `mcp run` command.
        self.params = StdioServerParameters(
            command="/bin/sh",
            args=["-c", '"$@"; echo $? > "$0"', str(self.rc), *(argv or [str(binary_path()), *bridge_args(ctx, cfg, *extra)])],
            env=env,
        )

    def run(self, body, timeout: float = SESSION_TIMEOUT_S):
        """`await body(session)` on a fresh ClientSession (initialising is up to body); its
        result. The session is closed (stdin EOF) before this returns."""

        async def session_run():
            with open(self.errlog, "w") as errlog:
                async with stdio_client(self.params, errlog=errlog) as (read, write):
                    async with ClientSession(read, write, read_timeout_seconds=REQUEST_TIMEOUT_S) as session:
                        return await body(session)

        return run_async(session_run(), timeout)

    @property
    def stderr(self) -> bytes:
        return self.errlog.read_bytes() if self.errlog.exists() else b""

    def exit_status(self) -> int:
        """The launcher's exit status; it must have ended on stdin EOF (the stdio client
        kills it 2 s after closing its stdin, and then no status is written)."""
        try:
            return int(wait_file(self.rc, timeout=5).strip())
        except AssertionError:
            raise AssertionError("no exit status recorded: the bridge did not exit on stdin EOF "
                                 f"(stderr={self.stderr[-2000:]!r})") from None


async def initialize_or_error(session: ClientSession):
    """The InitializeResult, or the MCPError initialize raised (not a timeout: the bridge
    must answer a failed request, not leave it pending)."""
    try:
        return await session.initialize()
    except MCPError as exc:
        assert exc.code != REQUEST_TIMEOUT, f"no answer to initialize within {REQUEST_TIMEOUT_S} s"
        return exc


def initialize_line() -> bytes:
    """A raw initialize request (for the tests that drive the bridge without the SDK)."""
    return json.dumps({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": LATEST_HANDSHAKE_VERSION, "capabilities": {},
                   "clientInfo": {"name": "stigmer-integration", "version": "1"}},
    }).encode() + b"\n"


def descendants(root: int) -> list[int]:
    """Processes whose parent chain reaches `root`."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found = []
    for pid in parents:
        p = parents.get(pid)
        while p and p != root:
            p = parents.get(p)
        if p == root:
            found.append(pid)
    return found


def bridge_processes() -> list[int]:
    """Descendants of this test process running a stigmer-exec binary."""
    pids = []
    for pid in descendants(os.getpid()):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if comm.startswith("stigmer-exec"):
            pids.append(pid)
    return pids


# --------------------------------------------------------------------------
# 1. streamable HTTP and legacy SSE through the bridge


@needs_bridge
@pytest.mark.parametrize("mode", ["sse-responses", "json-response"])
def test_streamable_http_session(ctx, servers, tmp_path, mode):
    server = servers(*(["--json-response"] if mode == "json-response" else []), token=ctx.token)
    bridge = Bridge(ctx, mcp_config(tmp_path, server.url()))

    async def body(session):
        init = await session.initialize()
        tools = {t.name for t in (await session.list_tools()).tools}
        check_basic_round(init, tools, await call_text(session, "echo", text="hello through the bridge"),
                          await whoami(session), ctx.token)
        progress = await slow_with_progress(session)
        took = await cancel_slow(session)
        after = await call_text(session, "echo", text="after the cancel")
        text = await call_text(session, "big", size=BIG)
        return progress, took, after, text

    progress, took, after, text = bridge.run(body)
    assert progress, "no progress notification reached the client during slow()"
    assert took < 5, f"the cancelled call took {took:.1f} s to give control back"
    assert after == "after the cancel", "the bridge did not keep working after a cancellation"
    assert len(text) == BIG and sha256(text.encode()) == sha256(big_text(BIG).encode()), "big() came back altered"
    assert bridge.exit_status() == 0, bridge.stderr
    ctx.assert_no_canary(bridge.stderr, what="bridge's stderr")

    # The cancellation reached the server (notifications/cancelled was passed on).
    wait_for(lambda: server.events(), 5, "the server to record the cancellation of slow()")
    requests = server.requests()
    summary = [(r["method"], r["body"][:60]) for r in requests]
    # Every request carried the configured headers.
    for r in requests:
        assert r["headers"].get("x-org") == ORG, f"{r['method']} without X-Org: {summary}"
        assert sha256(r["headers"].get("authorization", "").encode()) == sha256(b"Bearer " + ctx.token), \
            f"{r['method']} {r['body'][:60]!r} without the right Authorization header"
    assert "initialize" in requests[0]["body"] and requests[0]["method"] == "POST", summary
    session_ids = {r["headers"].get("mcp-session-id") for r in requests[1:]}
    assert len(session_ids) == 1 and None not in session_ids, f"session ids {session_ids}: {summary}"
    for r in requests[1:]:
        assert r["headers"].get("mcp-protocol-version"), \
            f"{r['method']} {r['body'][:60]!r} without MCP-Protocol-Version: {summary}"
    assert any(r["method"] == "POST" and "notifications/cancelled" in r["body"] for r in requests), summary
    deletes = [r for r in requests if r["method"] == "DELETE"]
    assert len(deletes) == 1, f"expected one DELETE of the session on close: {summary}"


@needs_bridge
def test_sigterm_ends_the_session_cleanly(ctx, servers, tmp_path):
    server = servers(token=ctx.token)
    proc = spawn(bridge_args(ctx, mcp_config(tmp_path, server.url())), ctx.home, stdin=subprocess.PIPE)
    try:
        proc.stdin.write(initialize_line())
        proc.stdin.flush()
        line = read_line(proc, timeout=30)
        assert "result" in json.loads(line), f"no initialize result: {line[:300]!r}"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        kill_quietly(proc)
    assert proc.returncode == 0, f"exit {proc.returncode} on SIGTERM, stderr={err[-2000:]!r}"
    ctx.assert_no_canary(err, what="bridge's stderr")
    requests = server.requests()
    deletes = [r for r in requests if r["method"] == "DELETE" and r["headers"].get("mcp-session-id")]
    assert deletes, f"no DELETE of the session on SIGTERM: {[(r['method'], r['body'][:60]) for r in requests]}"


@needs_bridge
def test_legacy_sse_session(ctx, servers, tmp_path):
    server = servers("--transport", "sse", token=ctx.token)
    bridge = Bridge(ctx, mcp_config(tmp_path, server.url("/sse"), type_="sse"))

    async def body(session):
        init = await session.initialize()
        tools = {t.name for t in (await session.list_tools()).tools}
        check_basic_round(init, tools, await call_text(session, "echo", text="hello through the bridge"),
                          await whoami(session), ctx.token)
        return await slow_with_progress(session)

    assert bridge.run(body), "no progress notification reached the client during slow()"
    assert bridge.exit_status() == 0, bridge.stderr
    ctx.assert_no_canary(bridge.stderr, what="bridge's stderr")
    requests = server.requests()
    methods = [(r["method"], r["path"]) for r in requests]
    assert methods[0] == ("GET", "/sse") and ("POST", "/messages/") in methods, methods
    for r in requests:
        assert r["headers"].get("x-org") == ORG, f"{r['method']} {r['path']} without X-Org"


@needs_bridge
def test_manifest_query_params_reach_the_server(ctx, servers, tmp_path):
    server = servers()  # no bearer check: the token travels as ?api_key=
    bridge = Bridge(ctx, manifest_config(tmp_path, server.url()))

    async def body(session):
        await session.initialize()
        return await whoami(session)

    who = bridge.run(body)
    assert who["headers"].get("x-org") == ORG, who["headers"]
    assert who["query"].get("api_key") == sha256(ctx.token), "api_key did not arrive intact"
    assert bridge.exit_status() == 0, bridge.stderr
    ctx.assert_no_canary(bridge.stderr, what="bridge's stderr")
    for r in server.requests():
        values = parse_qs(r["query"]).get("api_key", [])
        assert [sha256(v.encode()) for v in values] == [sha256(ctx.token)], \
            f"{r['method']} without exactly one right api_key"


# --------------------------------------------------------------------------
# 2. errors and refusals


@needs_bridge
def test_wrong_token_is_a_clean_401(ctx, servers, tmp_path):
    server = servers(token=new_canary("other"))
    bridge = Bridge(ctx, mcp_config(tmp_path, server.url()))
    error = bridge.run(initialize_or_error)
    assert isinstance(error, MCPError), f"initialize succeeded against a server expecting another token: {error}"
    assert error.code == -32000, error.code
    assert ctx.token.decode() not in error.message, "the secret is in the error message"
    assert "401" in error.message and "Authorization" in error.message, error.message
    ctx.assert_no_canary(bridge.stderr, what="bridge's stderr")
    lines = [line for line in bridge.stderr.decode().splitlines() if "401" in line and "Authorization" in line]
    assert lines, f"no stderr line naming 401 and Authorization: {bridge.stderr!r}"
    assert server.requests(), "the server saw no request"


@needs_bridge
def test_redirect_to_another_origin_drops_the_secret(ctx, servers, tmp_path):
    origin_b = servers("--recorder", name="b")
    origin_a = servers("--redirect-to", f"http://127.0.0.1:{origin_b.port}", name="a")
    bridge = Bridge(ctx, mcp_config(tmp_path, origin_a.url()))
    error = bridge.run(initialize_or_error)
    assert isinstance(error, MCPError), f"initialize succeeded against a recorder: {error}"
    ctx.assert_no_canary(error.message.encode(), bridge.stderr, what="error or stderr")

    # Not blind: origin A did get the secret header.
    a_requests = origin_a.requests()
    assert a_requests, "origin A saw no request"
    assert sha256(a_requests[0]["headers"].get("authorization", "").encode()) == sha256(b"Bearer " + ctx.token), \
        "origin A did not get the Authorization header"
    # Origin B got the redirected request, without the secret anywhere.
    b_requests = origin_b.requests()
    assert b_requests, "the redirect to origin B was not followed"
    ctx.assert_no_canary(origin_b.record.read_bytes(), what="record of origin B")
    for r in b_requests:
        for name in ("authorization", "cookie", "proxy-authorization"):
            assert name not in r["headers"], f"{name} sent to another origin"


@needs_bridge
def test_not_an_mcp_endpoint_is_one_line_and_65(ctx, servers, tmp_path):
    server = servers("--html")
    bridge = Bridge(ctx, mcp_config(tmp_path, server.url()))
    error = bridge.run(initialize_or_error)
    assert isinstance(error, MCPError), f"initialize succeeded against an HTML page: {error}"
    assert "not JSON-RPC" in error.message and "text/html" in error.message, error.message
    lines = bridge.stderr.decode(errors="replace").splitlines()
    assert len(lines) == 1 and "not JSON-RPC" in lines[0], bridge.stderr
    assert bridge.exit_status() == 65, bridge.stderr
    ctx.assert_no_canary(error.message.encode(), bridge.stderr, what="error or stderr")


@needs_bridge
def test_an_error_page_that_echoes_the_token_is_concealed(ctx, servers, tmp_path):
    # A careless server puts what it was sent in its error text: the token as sent, percent-
    # encoded and JSON-escaped, and the query. The status and the text are shown; the
    # secret in none of its forms.
    server = servers("--echo-error")
    cfg = mcp_config(tmp_path, server.url() + "?api_key=${REMOTE_TOKEN}")
    bridge = Bridge(ctx, cfg)
    error = bridge.run(initialize_or_error)
    assert isinstance(error, MCPError), f"initialize succeeded against an error page: {error}"
    assert "500" in error.message and "bad credentials" in error.message and "<concealed>" in error.message, error.message
    lines = bridge.stderr.decode(errors="replace").splitlines()
    assert len(lines) == 1 and "500" in lines[0] and "<concealed>" in lines[0], bridge.stderr
    from urllib.parse import quote
    for form in (ctx.token, quote(ctx.token.decode(), safe="").encode()):
        assert form not in error.message.encode() and form not in bridge.stderr, "a form of the secret was shown"
    assert server.requests(), "the server saw no request"


@needs_bridge
@pytest.mark.parametrize("type_", ["http", "sse"])
def test_sigterm_ends_a_stalled_session_at_once(ctx, servers, tmp_path, type_):
    # The server answers the head and then nothing: no answer, no endpoint. The client
    # gives up; SIGTERM ends the bridge at once (not after the 60 s timeout).
    server = servers("--stall")
    proc = spawn(bridge_args(ctx, mcp_config(tmp_path, server.url("/sse" if type_ == "sse" else "/mcp"), type_=type_)),
                 ctx.home, stdin=subprocess.PIPE)
    try:
        proc.stdin.write(initialize_line())
        proc.stdin.flush()
        wait_for(lambda: server.requests(), 10, "the stalled server to get a request")
        time.sleep(0.3)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        took = time.monotonic() - start
    finally:
        kill_quietly(proc)
    assert proc.returncode == 0, f"exit {proc.returncode}, stderr={err[-2000:]!r}"
    assert took < 6, f"SIGTERM took {took:.1f} s to end the bridge"
    ctx.assert_no_canary(err, what="bridge's stderr")


@needs_bridge
def test_wrapped_http_entry_runs_the_bridge(ctx, servers, tmp_path):
    # `mcp wrap` makes the http entry a stdio one: the client holds no url and no header,
    # and starting the entry as written reaches the server with the token.
    server = servers(token=ctx.token)
    cfg = mcp_config(tmp_path, server.url())
    wrapped = json.loads(ok(run(["mcp", "wrap", "--execution-id", EXEC_ID, "--config", str(cfg), "--home", str(ctx.home)],
                                ctx.home)).stdout)
    entry = wrapped["mcpServers"]["remote"]
    assert not {"url", "headers", "type"} & set(entry) and "${" not in json.dumps(entry), entry
    bridge = Bridge(ctx, cfg, argv=[entry["command"], *entry["args"]], env=entry.get("env"), name="wrapped")

    async def body(session):
        await session.initialize()
        return await call_text(session, "echo", text="through the wrapped entry")

    assert bridge.run(body) == "through the wrapped entry"
    assert bridge.exit_status() == 0, bridge.stderr
    ctx.assert_no_canary(bridge.stderr, json.dumps(wrapped).encode(), what="wrap output or stderr")


@needs_bridge
def test_plain_http_to_a_remote_host_with_a_secret_is_refused(ctx, tmp_path):
    cfg = mcp_config(tmp_path, "http://example.invalid/mcp")
    proc = run(bridge_args(ctx, cfg), ctx.home)
    one_line_error(proc, 64, "--allow-insecure-http", secrets_=ctx.canaries)


def restarted_session(ctx, servers, tmp_path, *server_args, path="/mcp", type_="http"):
    """One client session through the bridge: echo, the server killed (a crash: its
    sessions go with it) and started again on the same port, echo again. Returns the
    bridge and both servers, once both calls have answered."""
    port = free_port()
    first = servers(*server_args, port=port, token=ctx.token, name="first")
    bridge = Bridge(ctx, mcp_config(tmp_path, first.url(path), type_=type_))
    restarted = {}

    def restart():
        first.kill()
        restarted["server"] = servers(*server_args, port=port, token=ctx.token, name="second")

    async def body(session):
        await session.initialize()
        before = await call_text(session, "echo", text="before the restart")
        await anyio.to_thread.run_sync(restart)
        after = await call_text(session, "echo", text="after the restart")
        return before, after

    assert bridge.run(body) == ("before the restart", "after the restart")
    assert bridge.exit_status() == 0, bridge.stderr
    ctx.assert_no_canary(bridge.stderr, what="bridge's stderr")
    return bridge, first, restarted["server"]


@needs_bridge
def test_session_survives_a_server_restart(ctx, servers, tmp_path):
    _, first, second = restarted_session(ctx, servers, tmp_path)
    summary = [(r["method"], r["body"][:60]) for r in second.requests()]
    assert any(r["method"] == "POST" and '"initialize"' in r["body"] for r in second.requests()), \
        f"the bridge did not initialise again with the restarted server: {summary}"
    assert any("after the restart" in r["body"] for r in second.requests()), summary
    # The call first went out on the old session (answered 404), then again on a new one.
    old_ids = {r["headers"].get("mcp-session-id") for r in first.requests()} - {None}
    retried_ids = {r["headers"].get("mcp-session-id") for r in second.requests() if "after the restart" in r["body"]}
    assert retried_ids - old_ids - {None}, f"the call was not retried on a new session: {summary}"


@needs_bridge
def test_legacy_session_survives_a_server_restart(ctx, servers, tmp_path):
    # The legacy transport has no session id to fail: the stream ends. The bridge opens a
    # new one, replays the client's initialize on the new endpoint (its answer kept), and
    # the client's next call goes through as if nothing happened.
    _, _, second = restarted_session(ctx, servers, tmp_path, "--transport", "sse", path="/sse", type_="sse")
    requests = second.requests()
    summary = [(r["method"], r["path"], r["body"][:60]) for r in requests]
    assert any(r["method"] == "POST" and '"initialize"' in r["body"] and "stigmer-bridge-replay" in r["body"] for r in requests), summary


@needs_bridge
def test_a_server_that_keeps_losing_the_session_is_an_error_not_a_loop(ctx, servers, tmp_path):
    # Every request with a session id gets 404: the bridge initializes again once per
    # failure, and when that does not help, the request fails with one line and an error.
    server = servers("--forget-sessions", token=ctx.token)
    bridge = Bridge(ctx, mcp_config(tmp_path, server.url()))

    async def body(session):
        await session.initialize()
        try:
            await session.list_tools()
        except MCPError as exc:
            return exc
        return None

    error = bridge.run(body)
    assert isinstance(error, MCPError), f"tools/list succeeded against a server that forgets sessions: {error}"
    assert "404" in error.message and "session" in error.message, error.message
    initializes = [r for r in server.requests() if r["method"] == "POST" and '"initialize"' in r["body"]]
    assert 2 <= len(initializes) <= 6, f"{len(initializes)} initializes: the bridge looped or never retried"
    ctx.assert_no_canary(bridge.stderr, error.message.encode(), what="bridge's stderr or the error")


@needs_bridge
def test_tls_with_and_without_the_ca(ctx, servers, tmp_path):
    ca, cert, key = make_tls(tmp_path)
    server = servers("--tls-cert", cert, "--tls-key", key, token=ctx.token)
    cfg = mcp_config(tmp_path, server.url(scheme="https"))

    async def body(session):
        await session.initialize()
        return await call_text(session, "echo", text="over tls")

    trusted = Bridge(ctx, cfg, "--http-ca", ca, name="trusted")
    assert trusted.run(body) == "over tls"
    assert trusted.exit_status() == 0, trusted.stderr
    ctx.assert_no_canary(trusted.stderr, what="bridge's stderr")
    seen = len(server.requests())

    untrusted = Bridge(ctx, cfg, name="untrusted")
    error = untrusted.run(initialize_or_error)
    assert isinstance(error, MCPError), f"initialize succeeded with an untrusted certificate: {error}"
    ctx.assert_no_canary(error.message.encode(), untrusted.stderr, what="error or stderr")
    lines = untrusted.stderr.decode(errors="replace").splitlines()
    assert len(lines) == 1, f"expected one stderr line: {untrusted.stderr!r}"
    assert re.search(r"tls|certificate", lines[0], re.IGNORECASE), lines[0]
    assert len(server.requests()) == seen, "a request got through the failed handshake"


# --------------------------------------------------------------------------
# 3. the secret stays out of argv, environment, logs and traces


@needs_bridge
def test_no_canary_in_argv_environment_or_trace_log(ctx, servers, tmp_path):
    server = servers(token=ctx.token)
    bridge = Bridge(ctx, mcp_config(tmp_path, server.url()), "--log-level", "trace")
    seen = {}

    async def body(session):
        await session.initialize()
        await whoami(session)
        await slow_with_progress(session, seconds=0.4, steps=2)
        for pid in bridge_processes():
            proc_files = {}
            # Like every process of ours: no core file, and no raising the limit (hard 0;
            # the test runner's own hard limit is higher).
            core = [line for line in Path(f"/proc/{pid}/limits").read_text().splitlines() if line.startswith("Max core file size")]
            proc_files["core"] = core[0].split()[5] if core else "?"
            for name in ("cmdline", "environ"):
                try:
                    proc_files[name] = Path(f"/proc/{pid}/{name}").read_bytes()
                except PermissionError:  # not dumpable: nobody else can read it either
                    proc_files[name] = b""
            seen[pid] = proc_files
        return await call_text(session, "echo", text="still up")

    assert bridge.run(body) == "still up"
    assert seen, "no stigmer-exec process found under the test while the session was up"
    cmdlines = {pid: files["cmdline"].split(b"\0") for pid, files in seen.items()}
    assert any(b"mcp-bridge" in argv for argv in cmdlines.values()), \
        f"no process runs the bridge (`mcp-bridge`): {[argv[:2] for argv in cmdlines.values()]}"
    for pid, files in seen.items():
        assert files["core"] == "0", f"pid {pid} may dump core (hard limit {files['core']})"
        ctx.assert_no_canary(files["cmdline"], what=f"cmdline of pid {pid}")
        ctx.assert_no_canary(files["environ"], what=f"environment of pid {pid}")
    assert bridge.exit_status() == 0, bridge.stderr
    ctx.assert_no_canary(bridge.stderr, what="bridge's stderr at trace level")


STRACE_SET = "execve,openat,write,writev,sendto,sendmsg"
def fd_of(args: str) -> tuple[int, str] | None:
    """(fd, the path strace -y shows for it) of a call whose first argument is a descriptor."""
    m = re.match(r"^(\d+)<(.*?)>, ", args)
    return (int(m.group(1)), m.group(2)) if m else None


@needs_bridge
@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_strace_canary_only_in_socket_and_handoff_writes(ctx, servers, tmp_path):
    server = servers(token=ctx.token)
    cfg = mcp_config(tmp_path, server.url())
    log = tmp_path / "strace.log"
    argv = ["strace", "-f", "-y", "-v", "-qq", "-s", "65536", "-e", f"trace={STRACE_SET}", "-o", str(log),
            str(binary_path()), *bridge_args(ctx, cfg)]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=base_env(ctx.home))
    try:
        proc.stdin.write(initialize_line())
        proc.stdin.flush()
        line = read_line(proc, timeout=30)
        out, err = proc.communicate(timeout=30)  # closes stdin: EOF ends the session
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=TIMEOUT_S)
    response = json.loads(line)
    assert response.get("id") == 1 and "result" in response, f"no initialize result: {line[:300]!r}"
    assert proc.returncode == 0, f"exit {proc.returncode}, stderr={err[-2000:]!r}"
    ctx.assert_no_canary(line, out, err, what="launcher's stdout or stderr")

    calls = strace_calls(log)
    assert any(c["name"] == "execve" for c in calls), "no execve in the trace: strace saw nothing"
    token = ctx.token.decode()
    assert ctx.unused.decode() not in log.read_text(errors="replace"), \
        "the unused secret shows in the trace: the launcher opened a value the server does not need"
    socket_writes, misplaced = 0, []
    for c in calls:
        if token not in c["args"]:
            continue
        where = fd_of(c["args"])
        if c["name"] in ("write", "writev", "sendto", "sendmsg") and where and where[0] > 2 \
                and where[1].startswith(("socket:", "pipe:", "TCP:", "TCPv6:")):
            socket_writes += where[1].startswith(("socket:", "TCP:", "TCPv6:"))
            continue
        misplaced.append(f"{c['name']} on {where}")  # the call, never its arguments
    assert not misplaced, f"the secret appears in other calls: {misplaced}"
    assert socket_writes, "the secret is in no write to a socket: the check would be blind"
