"""Black-box tests of "Secrets as files": `run --file-var NAME` and `${file:NAME}` in MCP configs.

Everything is observed from outside the launcher. The child is sandbox_probe.py (stdlib
only), which reports per action one JSON line — reads only as sha256 digests, never the
bytes — or, for `mcp run`, a tiny stdio "server" script that writes what it saw into a
result file and exits. What is checked:

* the child gets NAME_FILE=/dev/fd/N (N >= 3) and no NAME variable at all (neither the
  context's nor one inherited from the launcher's environment); the file holds the value
  exactly, can be read again and again, and by a grandchild;
* the descriptor is a sealed memfd (/memfd:stigmer:NAME): open O_RDWR works but write,
  shrink, grow and adding seals fail with EPERM; F_GET_SEALS & 15 == 15;
* errors: a NAME not in the context (78, one line), a bad name (64), a context that also
  has NAME_FILE (64);
* ephemeral runs, --init, --mask-output, a remote context (`serve`) and a PostgreSQL store;
* strace: the launcher makes a memfd_create, and opens or creates no file for the value;
* MCP: `${file:NAME}` in a stdio server's args and env (same path for the same NAME, the
  value not in the server's environment), and the refusals (command, cwd, http url and
  headers, docker, `${file:NAME:-x}`, a NAME not in the context) by `mcp run` and
  `mcp check`.

No assertion message shows a secret value: outputs are checked for the canaries, and
only digests are compared.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from helpers import (
    docker_agent,
    probe_cmd,
    probe_records,
    INTEGRATION_DIR,
    MCP_EXEC_ID,
    PYTHON,
    McpContext,
    Server,
    create_context,
    created_token,
    describe,
    key_init,
    new_canary,
    ok,
    one_line_error,
    one_stderr_line,
    remote_create,
    remote_run,
    run,
    sha256,
    simple_context,
    strace_calls,
    write,
    write_json,
)

EXEC_ID = "fv-1"
NAME = "CTX_SECRET"
FILE_NAME = f"{NAME}_FILE"
FD_PATH_RE = re.compile(r"/dev/fd/(\d+)")

# F_SEAL_SEAL 1 | F_SEAL_SHRINK 2 | F_SEAL_GROW 4 | F_SEAL_WRITE 8; F_SEAL_EXEC 0x20.
SEALS = 15
F_SEAL_EXEC = 0x20


# --------------------------------------------------------------------------
# helpers of these tests


def launch(args, home, input=None, env_extra=None, **kwargs):
    """`stigmer-exec ARGS` to completion without a controlling terminal."""
    return run(args, home, input=input, env_extra=env_extra, new_session=True, **kwargs)


def assert_no_canary(canary: bytes, *blobs: bytes):
    for blob in blobs:
        assert canary not in blob, "the secret value leaked into the output (value not shown)"


def kernel_has_noexec_seal() -> bool:
    """MFD_NOEXEC_SEAL / F_SEAL_EXEC came with Linux 6.3."""
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= (6, 3)


# The actions every --file-var launch is asked to do, in this order.
FILE_ACTIONS = [
    "showenv", FILE_NAME,                   # 0: the path
    "env", NAME,                            # 1: NAME must be absent
    "readfile", f"env:{FILE_NAME}",         # 2: the value
    "readfile", f"env:{FILE_NAME}",         # 3: read again, from offset 0
    "fdinfo", f"env:{FILE_NAME}",           # 4: the memfd
    "envscan", f"env:{FILE_NAME}",          # 5: the value nowhere in the environment
    "env", "CTX_PLAIN",                     # 6: the other variables are still there
]


def check_file_var(proc, canary: bytes, *, plain: bytes | None = b"plain") -> list[dict]:
    """The assertions every successful `--file-var CTX_SECRET` launch of FILE_ACTIONS must pass."""
    assert_no_canary(canary, proc.stdout, proc.stderr)
    records = probe_records(proc)
    assert len(records) == 7 and all(r["depth"] == 0 for r in records), describe(proc)

    path = records[0]["value"]
    m = FD_PATH_RE.fullmatch(path or "")
    assert m, f"{FILE_NAME} is not /dev/fd/N: {path!r}"
    fd = int(m.group(1))
    assert fd >= 3, f"{FILE_NAME} names a standard descriptor: {path!r}"

    assert records[1]["result"] == "ok" and records[1]["set"] is False, \
        f"{NAME} is in the child's environment: {records[1]}"
    for read in records[2:4]:
        assert read["result"] == "ok", f"cannot read {path}: {read}"
        assert read["size"] == len(canary), f"the file holds {read['size']} bytes, the value {len(canary)}"
        assert read["sha256"] == sha256(canary), "the file does not hold the value exactly"

    info = records[4]
    assert info["result"] == "ok" and info["fd"] == fd, info
    assert isinstance(info["seals"], int) and info["seals"] & SEALS == SEALS, f"not sealed: {info}"
    assert info["link"].startswith("/memfd:"), f"not a memfd: {info}"
    assert info["link"] == f"/memfd:stigmer:{NAME} (deleted)", info
    assert info["size"] == len(canary), info

    assert records[5]["result"] == "ok" and records[5]["found"] is False, \
        f"the value is somewhere in the child's environment: {records[5]}"
    if plain is not None:
        assert records[6]["set"] is True and records[6]["sha256"] == sha256(plain), \
            f"the other variables did not reach the child: {records[6]}"
    return records


@pytest.fixture
def canary() -> bytes:
    return new_canary("filevar")


@pytest.fixture
def ctx_home(home, canary) -> Path:
    """A home with a key and the context fv-1: CTX_PLAIN=plain, the secret CTX_SECRET=canary."""
    key_init(home)
    simple_context(home, EXEC_ID, canary)
    return home


# --------------------------------------------------------------------------
# 1. run --file-var


def test_file_var_gives_a_path_and_no_variable(ctx_home, canary):
    proc = launch(["run", "--execution-id", EXEC_ID, "--file-var", NAME, "--", *probe_cmd(*FILE_ACTIONS)], ctx_home)
    check_file_var(proc, canary)


def test_file_var_drops_a_variable_inherited_by_the_launcher(ctx_home, canary):
    proc = launch(["run", "--execution-id", EXEC_ID, "--file-var", NAME, "--", *probe_cmd(*FILE_ACTIONS)], ctx_home,
                  env_extra={NAME: "inherited-from-the-launcher", "KEEP_ME": "1"})
    check_file_var(proc, canary)
    # the rest of the inherited environment still reaches the child
    keep = probe_records(launch(["run", "--execution-id", EXEC_ID, "--file-var", NAME, "--",
                                 *probe_cmd("env", "KEEP_ME", "env", NAME)], ctx_home,
                                env_extra={NAME: "inherited-from-the-launcher", "KEEP_ME": "1"}))
    assert keep[0]["set"] is True and keep[1]["set"] is False, keep


def test_two_file_vars(home):
    key_init(home)
    first, second = new_canary("first"), new_canary("second")
    ok(create_context(home, "fv-2", "--secret", "ONE", "--secret", "TWO", secret_stdin=first + b"\n" + second))
    proc = launch(["run", "--execution-id", "fv-2", "--file-var", "ONE", "--file-var", "TWO", "--",
                   *probe_cmd("showenv", "ONE_FILE", "showenv", "TWO_FILE", "readfile", "env:ONE_FILE",
                              "readfile", "env:TWO_FILE", "env", "ONE", "env", "TWO")], home)
    assert_no_canary(first, proc.stdout, proc.stderr)
    assert_no_canary(second, proc.stdout, proc.stderr)
    rec = probe_records(proc)
    paths = [rec[0]["value"], rec[1]["value"]]
    assert all(FD_PATH_RE.fullmatch(p or "") for p in paths) and paths[0] != paths[1], paths
    assert rec[2]["sha256"] == sha256(first) and rec[3]["sha256"] == sha256(second), "wrong file contents"
    assert rec[4]["set"] is False and rec[5]["set"] is False, rec


def test_the_memfd_is_sealed_and_reaches_a_grandchild(ctx_home, canary):
    actions = [
        "fdinfo", f"env:{FILE_NAME}",       # 0
        "tryw", f"env:{FILE_NAME}",         # 1: open O_RDWR, write, shrink, grow
        "addseal", f"env:{FILE_NAME}",      # 2
        "readfile", f"env:{FILE_NAME}",     # 3: unchanged after all that
        "spawn-grandchild", "readfile", f"env:{FILE_NAME}", "fdinfo", f"env:{FILE_NAME}", "env", NAME,
    ]
    proc = launch(["run", "--execution-id", EXEC_ID, "--file-var", NAME, "--", *probe_cmd(*actions)], ctx_home)
    assert_no_canary(canary, proc.stdout, proc.stderr)
    rec = probe_records(proc)
    assert len(rec) == 8, describe(proc)

    info = rec[0]
    assert info["result"] == "ok", info
    assert info["seals"] & SEALS == SEALS, f"F_GET_SEALS & 15 != 15: {info}"
    assert info["link"].startswith("/memfd:"), info
    assert not info["cloexec"], info
    if kernel_has_noexec_seal():
        # MFD_NOEXEC_SEAL: not executable, and F_SEAL_EXEC set by the kernel.
        assert info["seals"] & F_SEAL_EXEC, f"no F_SEAL_EXEC on a kernel with MFD_NOEXEC_SEAL: {info}"
        assert info["mode"] & 0o111 == 0, f"the memfd is executable: mode {oct(info['mode'])}"

    tryw = rec[1]
    assert tryw["result"] == "ok", f"opening /dev/fd/N O_RDWR should succeed: {tryw}"
    assert tryw["write"] == "EPERM", f"write on the memfd: {tryw}"
    assert tryw["ftruncate"] == "EPERM", f"ftruncate (shrink) on the memfd: {tryw}"
    assert tryw["grow"] == "EPERM", f"ftruncate (grow) on the memfd: {tryw}"
    assert rec[2]["result"] == "EPERM", f"F_ADD_SEALS: {rec[2]}"
    assert rec[3]["result"] == "ok" and rec[3]["sha256"] == sha256(canary), "the value changed or is unreadable"

    grand = [r for r in rec if r["depth"] == 1]
    assert [r["action"] for r in grand] == ["readfile", "fdinfo", "env"], rec
    assert grand[0]["result"] == "ok" and grand[0]["sha256"] == sha256(canary), f"grandchild read: {grand[0]}"
    assert grand[1]["link"].startswith("/memfd:") and grand[1]["seals"] & SEALS == SEALS, grand[1]
    assert grand[2]["set"] is False, grand[2]
    assert rec[-1]["action"] == "spawn-grandchild" and rec[-1]["rc"] == 0, rec[-1]


@pytest.mark.parametrize("inherited", [False, True], ids=["unset", "inherited-by-launcher"])
def test_file_var_not_in_context_is_78(ctx_home, canary, tmp_path, inherited):
    marker = tmp_path / "started"
    env = {"NOT_IN_CONTEXT": "from-the-launcher"} if inherited else None
    proc = launch(["run", "--execution-id", EXEC_ID, "--file-var", "NOT_IN_CONTEXT", "--",
                   *probe_cmd("write", marker)], ctx_home, env_extra=env)
    one_line_error(proc, 78, "NOT_IN_CONTEXT", secrets_=(canary,))
    assert not marker.exists(), "the child ran despite the missing variable"


@pytest.mark.parametrize("bad", ["1X", "A-B", "", "A=B"])
def test_bad_file_var_name_is_64(ctx_home, canary, tmp_path, bad):
    marker = tmp_path / "started"
    proc = launch(["run", "--execution-id", EXEC_ID, "--file-var", bad, "--", *probe_cmd("write", marker)], ctx_home)
    assert proc.returncode == 64, describe(proc)
    assert proc.stdout == b"", describe(proc)
    if bad:
        assert bad in proc.stderr.decode(errors="replace"), f"the bad name is not named:\n{describe(proc)}"
    assert_no_canary(canary, proc.stderr)
    assert not marker.exists(), "the child ran despite the bad name"


def test_context_with_name_file_too_is_64(home, canary, tmp_path):
    key_init(home)
    ok(create_context(home, "fv-3", "--env", f"{FILE_NAME}=/some/where", "--secret", NAME, secret_stdin=canary))
    marker = tmp_path / "started"
    proc = launch(["run", "--execution-id", "fv-3", "--file-var", NAME, "--", *probe_cmd("write", marker)], home)
    assert proc.returncode == 64, describe(proc)
    assert proc.stdout == b"", describe(proc)
    assert FILE_NAME in proc.stderr.decode(errors="replace"), describe(proc)
    assert_no_canary(canary, proc.stderr)
    assert not marker.exists(), "the child ran despite the NAME_FILE collision"


# --------------------------------------------------------------------------
# 2. with the other launch modes and stores


def test_file_var_in_an_ephemeral_run(home, canary):
    # No key, no store: --secret read from stdin, merged in memory.
    proc = launch(["run", "--env", "CTX_PLAIN=plain", "--secret", NAME, "--file-var", NAME, "--",
                   *probe_cmd(*FILE_ACTIONS)], home, input=canary + b"\n")
    check_file_var(proc, canary)
    assert not home.exists(), "an ephemeral run created the home"


def test_file_var_with_init(ctx_home, canary):
    proc = launch(["run", "--execution-id", EXEC_ID, "--init", "--file-var", NAME, "--",
                   *probe_cmd(*FILE_ACTIONS)], ctx_home)
    check_file_var(proc, canary)


def test_file_var_with_mask_output(ctx_home, canary):
    proc = launch(["run", "--execution-id", EXEC_ID, "--mask-output", "--file-var", NAME, "--",
                   *probe_cmd(*FILE_ACTIONS)], ctx_home)
    check_file_var(proc, canary)
    # A child that prints the file's content: --mask-output conceals it.
    shown = launch(["run", "--execution-id", EXEC_ID, "--mask-output", "--file-var", NAME, "--",
                    "sh", "-c", f'cat "${FILE_NAME}"; echo; cat "${FILE_NAME}" >&2; echo >&2'], ctx_home)
    assert shown.returncode == 0, "exit %d" % shown.returncode
    assert_no_canary(canary, shown.stdout, shown.stderr)
    assert shown.stdout == b"<concealed>\n", describe(shown)
    assert shown.stderr == b"<concealed>\n", describe(shown)


def test_file_var_from_a_remote_context(tmp_path, canary):
    server_home, client_home, operator_home = tmp_path / "server", tmp_path / "client", tmp_path / "operator"
    key_init(server_home)
    server = Server(server_home, tmp_path).start()
    try:
        token = created_token(remote_create(operator_home, server.url, "fv-rem", "--env", "CTX_PLAIN=plain",
                                            "--secret", NAME, secret_stdin=canary))
        proc = remote_run(client_home, server.url, "fv-rem", probe_cmd(*FILE_ACTIONS), token=token,
                          extra=["--file-var", NAME])
        check_file_var(proc, canary)
        assert token.encode() not in proc.stdout, "the execution token reached the child's output"
    finally:
        server.kill()


def test_file_var_from_a_postgres_store(pg_db, home, canary):
    cluster, db = pg_db
    url = cluster.url(db)
    key_init(home)
    ok(create_context(home, "fv-pg", "--env", "CTX_PLAIN=plain", "--secret", NAME, secret_stdin=canary, store=url))
    proc = launch(["run", "--store", url, "--execution-id", "fv-pg", "--file-var", NAME, "--",
                   *probe_cmd(*FILE_ACTIONS)], home)
    check_file_var(proc, canary)


# --------------------------------------------------------------------------
# 3. strace: a memfd, and no file for the value

STRACE_SET = "openat,open,creat,memfd_create,write,pwrite64,writev,execve"
WRITE_CALLS = {"write", "pwrite64", "writev"}
WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC")


def _fd_path(args: str) -> str | None:
    """The path strace -y shows for a call's first (fd) argument (`5</memfd:x>(deleted), …`)."""
    m = re.match(r"^-?\d+<(.*?)>(?:\(deleted\))?, ", args)
    return m.group(1) if m else None


def _returned_path(call: dict) -> str | None:
    """The path strace -y shows for a returned descriptor (`= 5</path>`)."""
    m = re.match(r"^<(.*?)>", call["rest"].strip())
    return m.group(1) if m else None


def test_strace_shows_a_memfd_and_no_file_for_the_value(ctx_home, canary, tmp_path):
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    log = tmp_path / "run.log"
    proc = launch(["run", "--execution-id", EXEC_ID, "--file-var", NAME, "--", "sh", "-c", f'cat "${FILE_NAME}"'],
                  ctx_home, timeout=60,
                  prefix=["strace", "-f", "-y", "-qq", "-s", "65536", "-e", f"trace={STRACE_SET}", "-o", str(log)])
    assert proc.returncode == 0, f"exit {proc.returncode}, stderr={proc.stderr[-2000:]!r}"
    assert proc.stdout == canary, "the child did not print the value from the file (value not shown)"
    calls = strace_calls(log)
    text = canary.decode()

    # Not blind: the child's write of the value to its stdout is in the trace.
    assert any(c["name"] in WRITE_CALLS and text in c["args"] and (_fd_path(c["args"]) or "").startswith("pipe:")
               for c in calls), "the child's write of the value is not in the trace: the check would be blind"

    memfds = [c for c in calls if c["name"] == "memfd_create" and c["ret"] not in ("?",) and int(c["ret"]) >= 0]
    ours = [c for c in memfds if f"stigmer:{NAME}" in c["args"]]
    assert ours, f"no memfd_create(\"stigmer:{NAME}\", …) in the trace: {[c['line'][:200] for c in memfds]}"
    flags = ours[0]["args"]
    assert "MFD_CLOEXEC" in flags and "MFD_ALLOW_SEALING" in flags, ours[0]["line"][:300]
    if kernel_has_noexec_seal():
        # strace 6.1 does not know the name yet and shows 0x8.
        assert "MFD_NOEXEC_SEAL" in flags or re.search(r"\|0x8\b", flags), ours[0]["line"][:300]

    # No write of the value to anything but a memfd or a pipe/socket.
    to_files = []
    for c in calls:
        if c["name"] in WRITE_CALLS and text in c["args"]:
            path = _fd_path(c["args"]) or "?"
            if not (path.startswith("/memfd:") or path.startswith("pipe:") or path.startswith("socket:")):
                to_files.append(c["line"][:300])
    assert not to_files, f"the value was written to a file: {to_files}"

    # The launcher's part (before the child's execve): no file created, none opened for
    # writing except the store in the home and devices.
    execs = [i for i, c in enumerate(calls) if c["name"] == "execve" and c["ret"] == "0"]
    assert len(execs) >= 2, f"expected the launcher's and the child's execve: {[calls[i]['line'] for i in execs]}"
    launcher = calls[: execs[1]]
    assert ours[0] in launcher, "the memfd was not created by the launcher before the child started"
    home_real = os.path.realpath(ctx_home)
    suspicious = []
    for c in launcher:
        if c["ret"] == "?" or int(c["ret"]) < 0:
            continue
        if c["name"] == "creat":
            suspicious.append(c["line"][:300])
        elif c["name"] in ("open", "openat") and any(flag in c["args"] for flag in WRITE_FLAGS):
            path = _returned_path(c) or "?"
            if path.startswith("/dev/") or path.startswith("/proc/") or path.startswith(home_real + "/"):
                continue
            suspicious.append(c["line"][:300])
    assert not suspicious, f"the launcher opened files for writing: {suspicious}"
    assert text not in "".join(c["args"] for c in launcher if c["name"] in ("open", "openat", "creat")), \
        "the value appears in an open() path"


# --------------------------------------------------------------------------
# 4. MCP: ${file:NAME} in a stdio server's args and env

# A stand-in "server": writes what it saw (digests, paths, names; never the value) and exits.
FILE_SERVER = r'''
import hashlib, json, os, sys
args = sys.argv[1:]
out = args[args.index("--out") + 1]
arg_path = args[args.index("--token-file") + 1]
env_path = os.environ.get("TOKEN_PATH")

def digest(path):
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except (OSError, TypeError) as e:
        return "error: %s" % type(e).__name__

def link(path):
    try:
        n = int(path.rsplit("/", 1)[1])
        return os.readlink("/proc/self/fd/%d" % n)
    except Exception as e:
        return "error: %s" % type(e).__name__

try:
    with open(arg_path, "rb") as f:
        value = f.read()
except OSError:
    value = b""
in_environ = bool(value) and any(value in k + b"=" + v for k, v in os.environb.items())
with open("/proc/self/environ", "rb") as f:
    in_environ = in_environ or (bool(value) and value in f.read())
with open(out, "w") as f:
    json.dump({"arg_path": arg_path, "env_path": env_path, "arg_digest": digest(arg_path),
               "arg_digest_again": digest(arg_path), "env_digest": digest(env_path),
               "in_environ": in_environ, "env_names": sorted(os.environ), "link": link(arg_path)}, f)
'''


@pytest.fixture
def mcp(home, tmp_path) -> McpContext:
    """A home, key and context: PLAIN_ORG, WORKDIR, the secrets SECRET_TOKEN and UNUSED_SECRET."""
    return McpContext(home, tmp_path)


def file_server_config(tmp_path: Path, result: Path, env: dict | None = None) -> Path:
    script = write(tmp_path, "file_server.py", FILE_SERVER)
    entry = {
        "command": PYTHON,
        "args": [str(script), "--token-file", "${file:SECRET_TOKEN}", "--out", str(result)],
        "env": env if env is not None else {"TOKEN_PATH": "${file:SECRET_TOKEN}"},
    }
    return write_json(tmp_path / "claude.json", {"mcpServers": {"filesrv": entry}})


def mcp_run(mcp: McpContext, cfg: Path, server: str, *extra):
    return launch(["mcp", "run", "--execution-id", MCP_EXEC_ID, "--config", cfg, "--server", server, *extra],
                  mcp.home)


def check_refuses(mcp, cfg, *needles):
    """`mcp check` on `cfg`: 78, one stderr line naming each of `needles`, no canary anywhere."""
    checked = launch(["mcp", "check", "--execution-id", MCP_EXEC_ID, "--config", cfg], mcp.home)
    assert checked.returncode == 78, describe(checked)
    err = one_stderr_line(checked)
    for needle in needles:
        assert needle in err, f"{needle!r} not in mcp check's stderr:\n{describe(checked)}"
    mcp.assert_no_canary(checked.stdout, checked.stderr)


def test_mcp_file_placeholder_in_args_and_env(mcp, tmp_path):
    result = tmp_path / "seen.json"
    cfg = file_server_config(tmp_path, result)
    proc = mcp_run(mcp, cfg, "filesrv")
    assert proc.returncode == 0, describe(proc)
    mcp.assert_no_canary(proc.stdout, proc.stderr)
    assert result.exists(), f"the server did not run:\n{describe(proc)}"
    seen = json.loads(result.read_text())

    m = FD_PATH_RE.fullmatch(seen["arg_path"])
    assert m and int(m.group(1)) >= 3, f"args entry is not /dev/fd/N (N >= 3): {seen['arg_path']!r}"
    assert seen["env_path"] == seen["arg_path"], "the same NAME got two different descriptors"
    assert seen["arg_digest"] == sha256(mcp.token), "the file at the args path does not hold the value"
    assert seen["arg_digest_again"] == sha256(mcp.token), "a second read of the file differs"
    assert seen["env_digest"] == sha256(mcp.token), "the file at the env path does not hold the value"
    assert seen["link"] == "/memfd:stigmer:SECRET_TOKEN (deleted)", seen["link"]
    assert seen["in_environ"] is False, "the value is in the server's environment"
    assert "SECRET_TOKEN" not in seen["env_names"] and "UNUSED_SECRET" not in seen["env_names"], seen["env_names"]
    assert "TOKEN_PATH" in seen["env_names"], seen["env_names"]

    # `mcp check` accepts it and lists the name, never the value or the path.
    checked = ok(launch(["mcp", "check", "--execution-id", MCP_EXEC_ID, "--config", cfg], mcp.home))
    assert "SECRET_TOKEN" in checked.stdout.decode(), describe(checked)
    mcp.assert_no_canary(checked.stdout, checked.stderr)


def test_mcp_file_placeholder_with_plain_placeholder_puts_value_in_env(mcp, tmp_path):
    result = tmp_path / "seen.json"
    cfg = file_server_config(tmp_path, result, env={"TOKEN_PATH": "${file:SECRET_TOKEN}", "TOKEN": "${SECRET_TOKEN}"})
    proc = mcp_run(mcp, cfg, "filesrv")
    assert proc.returncode == 0, describe(proc)
    seen = json.loads(result.read_text())
    assert seen["arg_digest"] == sha256(mcp.token) and seen["env_digest"] == sha256(mcp.token)
    assert seen["in_environ"] is True, "`${SECRET_TOKEN}` in env should put the value in the environment"
    assert "SECRET_TOKEN" not in seen["env_names"], seen["env_names"]


def test_mcp_file_placeholder_with_init(mcp, tmp_path):
    result = tmp_path / "seen.json"
    cfg = file_server_config(tmp_path, result)
    proc = mcp_run(mcp, cfg, "filesrv", "--init")
    assert proc.returncode == 0, describe(proc)
    seen = json.loads(result.read_text())
    assert seen["arg_digest"] == sha256(mcp.token) and seen["env_path"] == seen["arg_path"], seen
    assert seen["in_environ"] is False


# Configs where ${file:…} is refused: (server, config doc, field named in the error).
def _refusals(marker: Path) -> list:
    touch = {"command": "/usr/bin/touch", "args": [str(marker)]}
    return [
        ("cmdsrv", {"mcpServers": {"cmdsrv": {"command": "${file:SECRET_TOKEN}", "args": [str(marker)]}}}, "command"),
        ("cwdsrv", {"mcpServers": {"cwdsrv": {**touch, "cwd": "${file:SECRET_TOKEN}"}}}, "cwd"),
        ("hdrsrv", {"mcpServers": {"hdrsrv": {"type": "http", "url": "https://mcp.example.invalid/x",
                                              "headers": {"Authorization": "Bearer ${file:SECRET_TOKEN}"}}}},
         "headers.Authorization"),
        ("urlsrv", {"mcpServers": {"urlsrv": {"type": "http",
                                              "url": "https://mcp.example.invalid/x?t=${file:SECRET_TOKEN}"}}},
         "url"),
    ]


REFUSED_IDS = ["command", "cwd", "http-header", "http-url"]


@pytest.mark.parametrize("which", range(len(REFUSED_IDS)), ids=REFUSED_IDS)
def test_mcp_file_placeholder_refused_outside_stdio_args_and_env(mcp, tmp_path, which):
    marker = tmp_path / "started"
    server, doc, field = _refusals(marker)[which]
    cfg = write_json(tmp_path / "refused.json", doc)
    proc = mcp_run(mcp, cfg, server)
    err = one_line_error(proc, 78, server, field, "column", "${file:", "stdio", secrets_=mcp.canaries)
    assert "args" in err and "env" in err, f"the message should say ${{file:…}} is for args and env:\n{err}"
    time.sleep(0.1)
    assert not marker.exists(), "the server was started despite the refused placeholder"

    check_refuses(mcp, cfg, server, field, "${file:")


def test_mcp_file_placeholder_refused_for_a_docker_server(mcp, tmp_path):
    marker = tmp_path / "docker-ran"
    cfg, path = docker_agent(tmp_path, f"#!/bin/sh\ntouch {marker}\n", "docker-file", "boxed", "${file:SECRET_TOKEN}")
    proc = launch(["mcp", "run", "--execution-id", MCP_EXEC_ID, "--config", cfg, "--server", "boxed"], mcp.home,
                  env_extra={"PATH": path})
    one_line_error(proc, 78, "boxed", "API_KEY", "column", "${file:", "stdio", secrets_=mcp.canaries)
    assert not marker.exists(), "docker was started despite the refused placeholder"

    checked = launch(["mcp", "check", "--execution-id", MCP_EXEC_ID, "--config", cfg], mcp.home,
                     env_extra={"PATH": path})
    assert checked.returncode == 78, describe(checked)
    assert "boxed" in checked.stderr.decode() and "${file:" in checked.stderr.decode(), describe(checked)
    mcp.assert_no_canary(checked.stdout, checked.stderr)


def test_mcp_file_placeholder_for_a_missing_name_is_78(mcp, tmp_path):
    marker = tmp_path / "started"
    cfg = write_json(tmp_path / "missing.json", {"mcpServers": {"misssrv": {
        "command": "/usr/bin/touch",
        "args": [str(marker), "--token-file", "${file:NOT_IN_CONTEXT}"],
    }}})
    proc = mcp_run(mcp, cfg, "misssrv")
    one_line_error(proc, 78, "misssrv", "args[2]", "NOT_IN_CONTEXT", secrets_=mcp.canaries)
    assert not marker.exists(), "the server was started despite the missing name"

    check_refuses(mcp, cfg, "misssrv", "NOT_IN_CONTEXT")
    assert not marker.exists()


def test_mcp_file_placeholder_with_a_default_is_unsupported(mcp, tmp_path):
    marker = tmp_path / "started"
    cfg = write_json(tmp_path / "default.json", {"mcpServers": {"defsrv": {
        "command": "/usr/bin/touch",
        "args": [str(marker)],
        "env": {"TOKEN_PATH": "${file:SECRET_TOKEN:-/dev/null}"},
    }}})
    proc = mcp_run(mcp, cfg, "defsrv")
    one_line_error(proc, 78, "defsrv", "env.TOKEN_PATH", "unsupported", secrets_=mcp.canaries)
    assert not marker.exists(), "the server was started despite the unsupported placeholder"

    check_refuses(mcp, cfg, "defsrv", "unsupported")
