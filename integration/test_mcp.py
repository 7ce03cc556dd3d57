"""Black-box tests of `stigmer-exec mcp run|wrap|check` with a real MCP client.

The server under the launcher is mcp_env_server.py, a stdio MCP server built
with the official Python SDK that reports (through tools) the environment,
working directory and arguments it received — secrets only as sha256 digests.
The client is the SDK's own stdio client (`stdio_client` + `ClientSession`),
started on `stigmer-exec mcp run …` exactly as Claude Desktop would start it.

Every test builds its own STIGMER_HOME, key and context; the canaries are
random per test and must never show up on the launcher's stdout, stderr or in
a `mcp wrap` / `mcp check` output.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mcp.types import LATEST_PROTOCOL_VERSION

from helpers import (
    docker_agent,
    LIT_TEMPLATE,
    MCP_EXEC_ID as EXEC_ID,
    PLAIN_ORG,
    PROBE_TOOLS,
    PYTHON,
    SERVER_SCRIPT,
    TIMEOUT_S,
    McpContext,
    describe,
    envsrv_claude,
    key_init,
    kill_quietly,
    ok,
    one_stderr_line,
    probe,
    read_line,
    run,
    sha256,
    spawn,
    wait_exit,
    wait_file,
    wait_gone,
    write_json,
)

# What `mcp run` passes from its own environment (DESIGN.md §4, the MCP SDKs' base).
MCP_BASE = {"HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER"}
# Variables the Python interpreter adds to its own environment at start-up:
# PEP 538 locale coercion sets LC_CTYPE=C.UTF-8 when it starts in the C locale,
# which it does here because LANG/LC_* are not passed to the server.
PYTHON_ADDED = {"LC_CTYPE"}
# The env the envsrv configs give the server (besides the SHUTDOWN_MARKER control file).
SERVER_ENV_NAMES = {"TOKEN", "ORG", "LEVEL", "LIT"}
LIT_RESOLVED = "costs $$5 and ${x}"  # `$$` not before `{` stays, `$${` is a literal `${`
EXIT_TIMEOUT_S = 5


# --------------------------------------------------------------------------
# helpers of these tests


@pytest.fixture
def ctx(home, tmp_path) -> McpContext:
    return McpContext(home, tmp_path)


def initialize_line(request_id: int = 1) -> bytes:
    message = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": {
            "protocolVersion": LATEST_PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "stigmer-integration", "version": "1"},
        },
    }
    return json.dumps(message).encode() + b"\n"


def parse_table(stdout: bytes) -> dict[str, list[str]]:
    """`mcp check` output: {SERVER: [TYPE, STATUS, VARIABLES…]}."""
    lines = [line for line in stdout.decode().splitlines() if line.strip()]
    assert lines, f"no table in {stdout!r}"
    assert lines[0].split() == ["SERVER", "TYPE", "STATUS", "VARIABLES"], lines[0]
    rows = {}
    for line in lines[1:]:
        cells = line.split()
        rows[cells[0]] = cells[1:]
    return rows


# --------------------------------------------------------------------------
# configs


def envsrv_manifest(marker: Path, workdir: Path) -> str:
    # Block-style YAML, as users write Agent manifests; single quotes keep `$` and `{` plain.
    return f"""\
apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: env-probe
spec:
  description: reports the environment its MCP server receives
  mcp_servers:
    - name: envsrv
      stdio:
        command: {PYTHON}
        args:
          - {SERVER_SCRIPT}
          - '--org=${{PLAIN_ORG}}'
        env_placeholders:
          TOKEN: '${{SECRET_TOKEN}}'
          ORG: '${{env:PLAIN_ORG}}'
          LEVEL: '${{LOG_LEVEL:-info}}'
          LIT: '{LIT_TEMPLATE}'
          SHUTDOWN_MARKER: {marker}
        working_dir: '${{NO_SUCH_WORKDIR:-{workdir}}}'
    - name: remote
      http:
        url: https://mcp.example.invalid/search
        headers:
          Authorization: Bearer ${{SECRET_TOKEN}}
"""


# --------------------------------------------------------------------------
# the checks every envsrv launch must pass


def check_probe(ctx: McpContext, out: dict, *, marker: Path, cwd: Path, errlog: Path, extra_allowed=()):
    """The assertions every envsrv launch must satisfy."""
    assert out["server_name"] == "stigmer-env-probe"
    assert PROBE_TOOLS <= out["tools"], out["tools"]

    # the secret arrives intact, through the environment only
    assert out["digest"] == sha256(ctx.token)
    assert out["LEVEL"] == "info"
    assert out["LIT"] == LIT_RESOLVED
    assert out["ORG"] == PLAIN_ORG
    assert out["argv"] == [f"--org={PLAIN_ORG}"]
    assert Path(out["cwd"]).resolve() == cwd.resolve()

    # least privilege: the MCP base, the server's own env, and nothing else
    names = set(out["env_names"])
    configured = SERVER_ENV_NAMES | {"SHUTDOWN_MARKER"}
    assert configured <= names, f"missing {configured - names}"
    unexpected = names - configured - MCP_BASE - PYTHON_ADDED - set(extra_allowed)
    assert not unexpected, f"server received unexpected variables {sorted(unexpected)}"
    for name in ("UNUSED_SECRET", "SECRET_TOKEN", "PLAIN_ORG", "WORKDIR", "PARENT_ONLY_VAR"):
        assert name not in names, f"{name} reached the server"
    assert not [n for n in names if n.startswith("STIGMER_")], sorted(names)
    digests = {name: digest for name, digest in out["env_digests"]}
    assert sha256(ctx.unused) not in digests.values(), "the unused secret reached the server"
    assert [n for n, d in digests.items() if d == sha256(ctx.token)] == ["TOKEN"]

    # the session closed cleanly: the server saw EOF, returned and exited normally
    assert wait_file(marker) == "clean-exit"
    wait_gone(out["pid"])
    ctx.assert_no_canary(errlog.read_bytes())


# --------------------------------------------------------------------------
# 1. a real MCP client through `mcp run`


def test_claude_form_session_gets_exactly_its_env(ctx, bin_path, tmp_path):
    marker = tmp_path / "shutdown"
    cfg = write_json(tmp_path / "claude.json", envsrv_claude(marker))
    errlog = tmp_path / "client-stderr"
    out = probe(
        bin_path,
        ["mcp", "run", "--execution-id", EXEC_ID, "--config", cfg, "--server", "envsrv", "--home", ctx.home],
        # Goes to the launcher only: none of it may reach the server.
        {"PARENT_ONLY_VAR": "parent-value", "STIGMER_LOG_LEVEL": "warning"},
        errlog,
    )
    check_probe(ctx, out, marker=marker, cwd=ctx.workdir, errlog=errlog)
    assert b"holds a secret" not in errlog.read_bytes()  # no secret in argv here


def test_stigmer_manifest_session_gets_exactly_its_env(ctx, bin_path, tmp_path):
    marker = tmp_path / "shutdown"
    workdir = tmp_path / "wd2"
    workdir.mkdir()
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(envsrv_manifest(marker, workdir))
    errlog = tmp_path / "client-stderr"
    out = probe(
        bin_path,
        ["mcp", "run", "--config", cfg, "--server", "envsrv"],  # id and home from the environment
        {
            "STIGMER_EXECUTION_ID": EXEC_ID,
            "STIGMER_HOME": str(ctx.home),
            "PARENT_ONLY_VAR": "parent-value",
            "TERM": "() { :; }",  # an exported shell function: skipped, as the MCP SDKs do
        },
        errlog,
    )
    check_probe(ctx, out, marker=marker, cwd=workdir, errlog=errlog)
    assert "TERM" not in out["env_names"], "a function-valued TERM was passed on"


def test_wrapped_config_launches_the_same_session(ctx, bin_path, tmp_path):
    marker = tmp_path / "shutdown"
    original = envsrv_claude(marker)
    cfg = write_json(tmp_path / "claude.json", original)

    proc = ok(run(["mcp", "wrap", "--execution-id", EXEC_ID, "--config", cfg, "--home", ctx.home], ctx.home))
    ctx.assert_no_canary(proc.stdout, proc.stderr)
    assert PLAIN_ORG.encode() not in proc.stdout, "a context value in the wrap output"
    wrapped = json.loads(proc.stdout)
    wrapped_cfg = write_json(tmp_path / "wrapped.json", wrapped)
    assert set(wrapped) == {"mcpServers"} and set(wrapped["mcpServers"]) == {"envsrv", "remote"}
    server = wrapped["mcpServers"]["envsrv"]
    assert os.path.isabs(server["command"]), server
    assert os.path.realpath(server["command"]) == os.path.realpath(bin_path), server
    assert server["args"] == [
        "mcp", "run", "--execution-id", EXEC_ID, "--config", str(cfg.resolve()),
        "--server", "envsrv", "--home", os.path.realpath(ctx.home),
    ], server
    assert "env" not in server and "cwd" not in server, f"original env/cwd kept: {server}"
    assert "${" not in json.dumps(server), server
    # The http server becomes a stdio entry that starts the bridge: the client no longer
    # holds its url or headers.
    remote = wrapped["mcpServers"]["remote"]
    assert remote["args"] == [
        "mcp", "run", "--execution-id", EXEC_ID, "--config", str(cfg.resolve()),
        "--server", "remote", "--home", os.path.realpath(ctx.home),
    ], remote
    assert os.path.realpath(remote["command"]) == os.path.realpath(bin_path), remote
    assert not {"url", "headers", "type"} & set(remote), remote

    # Without --home (STIGMER_HOME in the environment) the wrapped args still carry the
    # home, absolute: an MCP client starts servers with a bare environment.
    bare = json.loads(ok(run(["mcp", "wrap", "--execution-id", EXEC_ID, "--config", cfg], ctx.home)).stdout)
    assert bare["mcpServers"]["envsrv"]["args"] == [
        "mcp", "run", "--execution-id", EXEC_ID, "--config", str(cfg.resolve()), "--server", "envsrv",
        "--home", os.path.realpath(ctx.home),
    ]

    # Start the client exactly as a client would from the wrapped file.
    launch = json.loads(wrapped_cfg.read_text())["mcpServers"]["envsrv"]
    errlog = tmp_path / "client-stderr"
    out = probe(launch["command"], launch["args"], launch.get("env"), errlog)
    check_probe(ctx, out, marker=marker, cwd=ctx.workdir, errlog=errlog)


def test_wrapped_manifest_keeps_its_form(ctx, bin_path, tmp_path):
    workdir = tmp_path / "wd2"
    workdir.mkdir()
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(envsrv_manifest(tmp_path / "shutdown", workdir))
    proc = ok(run(["mcp", "wrap", "--execution-id", EXEC_ID, "--config", cfg], ctx.home))
    ctx.assert_no_canary(proc.stdout, proc.stderr)
    wrapped = json.loads(proc.stdout)
    assert wrapped["apiVersion"] == "agentic.stigmer.ai/v1" and wrapped["kind"] == "Agent"
    servers = {s["name"]: s for s in wrapped["spec"]["mcp_servers"]}
    assert set(servers) == {"envsrv", "remote"}
    stdio = servers["envsrv"]["stdio"]
    assert os.path.realpath(stdio["command"]) == os.path.realpath(bin_path)
    assert stdio["args"] == [
        "mcp", "run", "--execution-id", EXEC_ID, "--config", str(cfg.resolve()), "--server", "envsrv",
        "--home", os.path.realpath(ctx.home),
    ]
    assert "env_placeholders" not in stdio and "working_dir" not in stdio, stdio
    assert "http" not in servers["remote"], servers["remote"]
    assert servers["remote"]["stdio"]["args"] == [
        "mcp", "run", "--execution-id", EXEC_ID, "--config", str(cfg.resolve()), "--server", "remote",
        "--home", os.path.realpath(ctx.home),
    ]


# --------------------------------------------------------------------------
# 2. the protocol channel and shutdown


def test_stdout_carries_only_protocol_and_eof_ends_the_server(ctx, tmp_path):
    marker = tmp_path / "shutdown"
    cfg = write_json(tmp_path / "claude.json", envsrv_claude(marker))
    proc = spawn(["mcp", "run", "--log-level", "trace", "--execution-id", EXEC_ID, "--config", cfg,
                  "--server", "envsrv"], ctx.home, stdin=subprocess.PIPE)
    try:
        out, err = proc.communicate(initialize_line(), timeout=10)  # writes, then closes stdin
    except subprocess.TimeoutExpired:
        kill_quietly(proc)
        pytest.fail("mcp run did not exit within 10 s of stdin EOF")
    assert proc.returncode == 0, (proc.returncode, out, err)
    lines = out.splitlines()
    assert lines, f"no initialize response: stdout={out!r} stderr={err!r}"
    for line in lines:
        message = json.loads(line)  # every stdout line is a JSON-RPC message
        assert message.get("jsonrpc") == "2.0", line
    responses = [json.loads(line) for line in lines if json.loads(line).get("id") == 1]
    assert len(responses) == 1 and "result" in responses[0], out
    assert responses[0]["result"]["serverInfo"]["name"] == "stigmer-env-probe"
    ctx.assert_no_canary(out, err)
    assert marker.read_text() == "clean-exit"


def _start_and_initialize(ctx, cfg, *extra):
    proc = spawn(["mcp", "run", "--execution-id", EXEC_ID, "--config", cfg, "--server", "envsrv", *extra],
                 ctx.home, stdin=subprocess.PIPE)
    try:
        proc.stdin.write(initialize_line())
        proc.stdin.flush()
        line = read_line(proc, timeout=10)
        assert line.endswith(b"\n"), f"no initialize response: {line!r} (exit {proc.poll()})"
        response = json.loads(line)
        assert response.get("id") == 1 and "result" in response, line
    except BaseException as exc:
        proc.kill()
        _, err = proc.communicate(timeout=TIMEOUT_S)
        raise AssertionError(f"{exc}\nstderr={err!r}") from exc
    return proc


def test_sigterm_reaches_the_exec_mode_server(ctx, tmp_path):
    cfg = write_json(tmp_path / "claude.json", envsrv_claude(tmp_path / "shutdown"))
    proc = _start_and_initialize(ctx, cfg)
    try:
        # exec mode: the launcher's pid is the server's process now
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        assert str(SERVER_SCRIPT).encode() in cmdline, cmdline
        os.kill(proc.pid, signal.SIGTERM)
        rc = wait_exit(proc)
        assert rc == -signal.SIGTERM, f"exit {rc}, stderr={proc.stderr.read()!r}"
    finally:
        kill_quietly(proc)


@pytest.mark.parametrize("handled", [False, True], ids=["default-term", "server-handles-term"])
def test_sigterm_is_forwarded_with_init(ctx, tmp_path, handled):
    started, shutdown = tmp_path / "started", tmp_path / "shutdown"
    extra_env = {"STARTED_MARKER": str(started)}
    if handled:
        extra_env["TERM_EXIT_CODE"] = "42"
    cfg = write_json(tmp_path / "claude.json", envsrv_claude(shutdown))
    doc = json.loads(cfg.read_text())
    doc["mcpServers"]["envsrv"]["env"].update(extra_env)
    write_json(cfg, doc)

    proc = _start_and_initialize(ctx, cfg, "--init")
    try:
        server_pid = int(wait_file(started))
        assert server_pid != proc.pid, "--init should supervise the server as a child"
        os.kill(proc.pid, signal.SIGTERM)
        rc = wait_exit(proc)
        if handled:
            assert rc == 42, f"exit {rc}, stderr={proc.stderr.read()!r}"
            assert shutdown.read_text() == "sigterm"
        else:
            assert rc == 128 + signal.SIGTERM, f"exit {rc}, stderr={proc.stderr.read()!r}"
        wait_gone(server_pid)
    finally:
        kill_quietly(proc)


# --------------------------------------------------------------------------
# 3. placeholder errors, check, refusals


def _bad_config(tmp_path, marker: Path) -> Path:
    return write_json(tmp_path / "bad.json", {"mcpServers": {"badsrv": {
        "command": "/usr/bin/touch",  # would create the marker if it ever ran
        "args": [str(marker), "--x=${NOT_IN_CONTEXT}"],
        "env": {"TOKEN": "${NOT_IN_CONTEXT}", "FINE": "${SECRET_TOKEN}"},
    }}})


def test_missing_placeholder_is_refused_before_start(ctx, tmp_path):
    marker = tmp_path / "started"
    cfg = _bad_config(tmp_path, marker)
    proc = run(["mcp", "run", "--execution-id", EXEC_ID, "--config", cfg, "--server", "badsrv"], ctx.home)
    assert proc.returncode == 78, describe(proc)
    assert proc.stdout == b"", describe(proc)
    err = one_stderr_line(proc)
    for needle in ("badsrv", "args[1]", "env.TOKEN", "NOT_IN_CONTEXT", "column"):
        assert needle in err, f"{needle!r} not in stderr:\n{describe(proc)}"
    ctx.assert_no_canary(proc.stderr)
    time.sleep(0.2)
    assert not marker.exists(), "the server was started despite the unresolvable placeholder"

    proc = run(["mcp", "check", "--execution-id", EXEC_ID, "--config", cfg], ctx.home)
    assert proc.returncode == 78, describe(proc)
    err = one_stderr_line(proc)
    for needle in ("badsrv", "args[1]", "env.TOKEN", "column"):
        assert needle in err, f"{needle!r} not in stderr:\n{describe(proc)}"
    rows = parse_table(proc.stdout)
    assert set(rows) == {"badsrv"} and rows["badsrv"][0] == "stdio", describe(proc)
    assert rows["badsrv"][1] != "ok", describe(proc)
    ctx.assert_no_canary(proc.stdout, proc.stderr)
    assert not marker.exists()


def test_check_good_config_lists_names_only(ctx, tmp_path):
    cfg = write_json(tmp_path / "claude.json", envsrv_claude(tmp_path / "shutdown"))
    proc = ok(run(["mcp", "check", "--execution-id", EXEC_ID, "--config", cfg], ctx.home))
    rows = parse_table(proc.stdout)
    assert set(rows) == {"envsrv", "remote"}, describe(proc)
    assert rows["envsrv"][:2] == ["stdio", "ok"], describe(proc)
    assert {"SECRET_TOKEN", "PLAIN_ORG"} <= set(rows["envsrv"][2:]), describe(proc)
    assert rows["remote"][:2] == ["http", "ok"], describe(proc)
    assert {"SECRET_TOKEN", "PLAIN_ORG"} <= set(rows["remote"][2:]), describe(proc)
    ctx.assert_no_canary(proc.stdout, proc.stderr)
    for value in (PLAIN_ORG, str(ctx.workdir)):
        assert value.encode() not in proc.stdout + proc.stderr, f"value {value!r} shown:\n{describe(proc)}"

    one = ok(run(["mcp", "check", "--execution-id", EXEC_ID, "--config", cfg, "--server", "remote"], ctx.home))
    assert set(parse_table(one.stdout)) == {"remote"}, describe(one)


def test_check_shared_claude_example_finds_only_the_bare_dollar_brace(home, examples):
    canary = f"ghp_{secrets.token_hex(16)}".encode()
    key_init(home)
    ok(run(["context", "create", "--execution-id", "ex-1", "--secret", "GITHUB_TOKEN",
            "--env", "SEARCH_API_KEY=sk-plain-search"], home, input=canary + b"\n"))
    proc = run(["mcp", "check", "--execution-id", "ex-1", "--config", examples / "claude-desktop-mcp.json"], home)
    assert proc.returncode == 78, describe(proc)
    err = one_stderr_line(proc)
    assert err.count("column") == 1, f"expected exactly one problem:\n{describe(proc)}"
    assert "github" in err and "env.PRICE_NOTE" in err and "column 20" in err, describe(proc)
    for other in ("GITHUB_PERSONAL_ACCESS_TOKEN", "LOG_LEVEL", "remote-search", "Authorization"):
        assert other not in err, f"{other!r} reported as a problem:\n{describe(proc)}"
    rows = parse_table(proc.stdout)
    assert set(rows) == {"github", "remote-search"}, describe(proc)
    assert rows["github"][0] == "stdio" and rows["remote-search"][:2] == ["http", "ok"], describe(proc)
    assert canary not in proc.stdout + proc.stderr and b"sk-plain-search" not in proc.stdout + proc.stderr


def test_unreachable_http_server_is_one_line_and_a_jsonrpc_error(ctx, tmp_path):
    # `remote` is https://mcp.example.invalid/…: the bridge starts, the host does not
    # resolve; the client's initialize gets an error, stderr one line, no secret anywhere.
    cfg = write_json(tmp_path / "claude.json", envsrv_claude(tmp_path / "shutdown"))
    proc = run(["mcp", "run", "--execution-id", EXEC_ID, "--config", cfg, "--server", "remote"], ctx.home,
               input=initialize_line(7))
    assert proc.returncode == 69, describe(proc)
    answer = json.loads(proc.stdout)
    assert answer["id"] == 7 and "cannot reach" in answer["error"]["message"], describe(proc)
    line = one_stderr_line(proc)
    assert "remote" in line and "cannot reach" in line, describe(proc)
    ctx.assert_no_canary(proc.stdout, proc.stderr)


def test_unknown_server_is_not_found(ctx, tmp_path):
    cfg = write_json(tmp_path / "claude.json", envsrv_claude(tmp_path / "shutdown"))
    proc = run(["mcp", "run", "--execution-id", EXEC_ID, "--config", cfg, "--server", "nosuch"], ctx.home)
    assert proc.returncode == 66, describe(proc)
    assert proc.stdout == b"", describe(proc)
    assert "nosuch" in proc.stderr.decode(), describe(proc)
    ctx.assert_no_canary(proc.stderr)


# --------------------------------------------------------------------------
# 4. docker servers and secrets in argv


FAKE_DOCKER = """\
#!{python}
import json, os, sys
with open({dump!r}, "w") as f:
    json.dump({{"argv": sys.argv[1:], "env": dict(os.environ)}}, f)
"""


def test_docker_server_gets_values_through_env_only(ctx, tmp_path):
    dump = tmp_path / "docker-dump.json"
    cfg, path = docker_agent(tmp_path, FAKE_DOCKER.format(python=PYTHON, dump=str(dump)), "docker-probe", "sandboxed", "${SECRET_TOKEN}")
    proc = run(["mcp", "run", "--execution-id", EXEC_ID, "--config", cfg, "--server", "sandboxed"], ctx.home,
               env_extra={"PATH": path})
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == b"", describe(proc)
    ctx.assert_no_canary(proc.stderr)
    seen = json.loads(dump.read_text())
    argv, env = seen["argv"], seen["env"]
    assert argv[:6] == ["run", "-i", "--rm", "-e", "API_KEY", "ghcr.io/example/tools-mcp:1.2"], argv
    assert not [a for a in argv if ctx.token.decode() in a], f"secret in docker argv: {argv}"
    assert "API_KEY=" + ctx.token.decode() not in argv
    assert env.get("API_KEY") == ctx.token.decode()
    assert "UNUSED_SECRET" not in env and ctx.unused.decode() not in env.values()
    assert not [n for n in env if n.startswith("STIGMER_")], sorted(env)


def test_secret_in_args_warns_without_the_value(ctx, tmp_path):
    out_file = tmp_path / "arg-digest"
    code = f"import hashlib,sys; open({str(out_file)!r},'w').write(hashlib.sha256(sys.argv[1].encode()).hexdigest())"
    cfg = write_json(tmp_path / "args.json", {"mcpServers": {"leaky": {
        "command": PYTHON,
        "args": ["-c", code, "--token=${SECRET_TOKEN}"],
    }}})
    proc = run(["mcp", "run", "--execution-id", EXEC_ID, "--config", cfg, "--server", "leaky"], ctx.home)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == b"", describe(proc)
    warnings = [line for line in proc.stderr.decode().splitlines() if "warning" in line.lower()]
    assert len(warnings) == 1, describe(proc)
    assert "argv" in warnings[0] and "leaky" in warnings[0] and "args[2]" in warnings[0], describe(proc)
    ctx.assert_no_canary(proc.stderr)
    # the server did get the value in its argv, as configured
    assert out_file.read_text() == sha256(b"--token=" + ctx.token)
