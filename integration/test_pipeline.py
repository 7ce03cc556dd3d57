"""Black-box tests of behaviours the launcher pipeline refactor adds or fixes:

a. `--memory-limit` sizes: IEC (`512Mi`) and SI-style (`512M`, `2G`) suffixes and bare
   bytes are accepted, malformed ones (`512iM`, `0`, `-1`, `12X`, `M`) refused with 64.
b. `mcp wrap` prints valid JSON whatever the numbers in the config look like.
c. `mcp wrap` carries where the context lives (home, store, context server) so that the
   wrapped entry works from any working directory and a bare environment, and it never
   carries a secret or the key.
d. Ctrl-C on a terminal reaches a supervised child once (tini's foreground process group).
e. Signal dispositions the launcher inherited as ignored stay ignored in the child.
f. `apply -f DIR` and `apply -f -`.
g. An empty STIGMER_EXECUTION_ID is the same as an unset one, in both executables.
h. stigmer-exec (SQLite) and stigmer-exec-full (PostgreSQL) say the same thing for the
   same mistake.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess

import pytest

from helpers import (
    ADDRESS_SPACE,
    BAD_NAME_ENV,
    BAD_NAME_LINE,
    DB,
    MANIFESTS,
    PLAIN_ORG,
    PRINT_ENV,
    PROBE_TOOLS,
    PYTHON,
    SERVER_SCRIPT,
    McpContext,
    PtyProcess,
    apply_examples,
    companion_path,
    create_context,
    describe,
    env_manifest,
    envsrv_claude,
    free_port,
    key_init,
    limits_of,
    new_canary,
    ok,
    one_line_error,
    one_stderr_line,
    probe,
    run,
    sha256,
    wait_file,
    wait_for,
    write,
    write_json,
)

# The environment a client such as Claude Desktop may start a server with: nothing that
# says where stigmer-exec's home is.
BARE_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}


# --------------------------------------------------------------------------
# a. --memory-limit sizes


def test_memory_limit_iec_suffix_runs_true(home):
    proc = run(["run", "--memory-limit", "512Mi", "--", "/bin/true"], home)
    assert proc.returncode == 0, describe(proc)


@pytest.mark.parametrize("size, expected", [
    ("512Mi", 512 << 20),
    ("512M", 512 << 20),
    ("2G", 2 << 30),
    ("1073741824", 1 << 30),
])
def test_memory_limit_accepted_sizes_set_rlimit_as(home, size, expected):
    proc = run(["run", "--memory-limit", size, "--env", "A=1", "--", "cat", "/proc/self/limits"], home)
    assert proc.returncode == 0, describe(proc)
    assert limits_of(proc)[ADDRESS_SPACE] == (str(expected), str(expected)), describe(proc)


def test_memory_limit_of_one_mebibyte_is_accepted(home):
    """1048576 bytes is a valid limit (far too small for a dynamically linked child, which
    then fails to start: that is the child's failure, not a usage error)."""
    proc = run(["run", "--memory-limit", "1048576", "--env", "A=1", "--", "/bin/true"], home)
    assert proc.returncode != 64, describe(proc)
    assert "--memory-limit" not in proc.stderr.decode(errors="replace"), describe(proc)


@pytest.mark.parametrize("size", ["512iM", "0", "-1", "12X", "M"])
def test_memory_limit_malformed_is_a_usage_error(home, tmp_path, size):
    marker = tmp_path / "started"
    proc = run(["run", "--memory-limit", size, "--env", "A=1", "--", "touch", marker], home)
    one_line_error(proc, 64, "--memory-limit")
    assert not marker.exists(), "the child started despite the malformed limit"


# --------------------------------------------------------------------------
# b. mcp wrap writes valid JSON numbers

# Written by hand: json.dumps would not keep `1e3` as written.
NUMBERS_JSON = """\
{
  "mcpServers": {
    "envsrv": {
      "command": "%(python)s",
      "args": ["%(script)s"],
      "env": {"TOKEN": "${SECRET_TOKEN}"},
      "timeout": 1,
      "retries": -2,
      "ratio": 0.5,
      "budget": 1e3,
      "maxTokens": 10,
      "disabled": false
    },
    "remote": {"type": "http", "url": "https://mcp.example.invalid/x", "timeout": 10, "weight": 0.5}
  },
  "globalShortcutDelay": 1e3,
  "zoom": -2
}
"""

NUMBERS_YAML = """\
apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: numbers
spec:
  description: numbers as YAML writes them
  mcp_servers:
    - name: envsrv
      stdio:
        command: %(python)s
        args:
          - %(script)s
        env_placeholders:
          TOKEN: ${SECRET_TOKEN}
    - name: remote
      http:
        url: https://mcp.example.invalid/x
        timeout_seconds: +1
      limits:
        timeout: +1
      weight: .5
      ratio: 1.
      offset: -2
      budget: 1e3
"""


def assert_json_number(value, expected: float, where: str):
    """A JSON number equal to `expected`, or a string that reads as it."""
    if isinstance(value, str):
        assert float(value) == expected, f"{where}: {value!r} is not {expected}"
    else:
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}: {value!r}"
        assert value == expected, f"{where}: {value!r} is not {expected}"


def wrap_json(proc, ctx: McpContext) -> dict:
    """The JSON `mcp wrap` printed, once it is known to hold no secret and no key."""
    ctx.assert_no_canary(proc.stdout, proc.stderr)
    assert ctx.key.encode() not in proc.stdout + proc.stderr, "the encryption key is in the wrap output"
    ok(proc)
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"mcp wrap printed invalid JSON ({exc}):\n{proc.stdout.decode(errors='replace')}")


def test_wrap_keeps_json_numbers_valid(home, tmp_path):
    ctx = McpContext(home, tmp_path)
    cfg = write(tmp_path, "numbers.json", NUMBERS_JSON % {"python": PYTHON, "script": SERVER_SCRIPT})
    json.loads(cfg.read_text())  # the input itself is valid JSON
    doc = wrap_json(run(["mcp", "wrap", "--execution-id", ctx.exec_id, "--config", cfg], home), ctx)
    envsrv, remote = doc["mcpServers"]["envsrv"], doc["mcpServers"]["remote"]
    for field, expected in (("timeout", 1), ("retries", -2), ("ratio", 0.5), ("budget", 1000), ("maxTokens", 10)):
        assert_json_number(envsrv.get(field), expected, f"mcpServers.envsrv.{field}")
    assert envsrv.get("disabled") is False, envsrv
    assert_json_number(remote.get("timeout"), 10, "mcpServers.remote.timeout")
    assert_json_number(remote.get("weight"), 0.5, "mcpServers.remote.weight")
    assert_json_number(doc.get("globalShortcutDelay"), 1000, "globalShortcutDelay")
    assert_json_number(doc.get("zoom"), -2, "zoom")


def test_wrap_turns_yaml_numbers_into_json_numbers(home, tmp_path):
    ctx = McpContext(home, tmp_path)
    cfg = write(tmp_path, "numbers.yaml", NUMBERS_YAML % {"python": PYTHON, "script": SERVER_SCRIPT})
    proc = run(["mcp", "wrap", "--execution-id", ctx.exec_id, "--config", cfg], home)
    ctx.assert_no_canary(proc.stdout, proc.stderr)
    ok(proc)
    for bare in (rb":\s*\+1\b", rb":\s*\.5\b", rb":\s*1\.\s*[,\n}]"):
        assert not re.search(bare, proc.stdout), f"bare YAML number {bare!r} in the JSON:\n{proc.stdout.decode()}"
    doc = wrap_json(proc, ctx)
    servers = {s["name"]: s for s in doc["spec"]["mcp_servers"]}
    remote = servers["remote"]
    # The http body goes (the entry starts the bridge); a nested number the client keeps.
    assert "http" not in remote and "stdio" in remote, remote
    assert_json_number(remote["limits"]["timeout"], 1, "remote.limits.timeout")
    assert_json_number(remote.get("weight"), 0.5, "remote.weight")
    assert_json_number(remote.get("ratio"), 1.0, "remote.ratio")
    assert_json_number(remote.get("offset"), -2, "remote.offset")
    assert_json_number(remote.get("budget"), 1000, "remote.budget")


# --------------------------------------------------------------------------
# c. mcp wrap carries where the context lives


def wrapped_entry(doc: dict, name: str = "envsrv") -> dict:
    entry = doc["mcpServers"][name]
    assert os.path.isabs(entry["command"]), entry
    assert isinstance(entry["args"], list) and all(isinstance(a, str) for a in entry["args"]), entry
    return entry


def option_values(args: list[str], option: str) -> list[str]:
    """Every value given to `option` in args (`--opt V` or `--opt=V`)."""
    values = []
    for i, arg in enumerate(args):
        if arg == option and i + 1 < len(args):
            values.append(args[i + 1])
        elif arg.startswith(option + "="):
            values.append(arg[len(option) + 1:])
    return values


def assert_carries_nothing_secret(entry: dict, ctx: McpContext):
    text = json.dumps(entry).encode()
    ctx.assert_no_canary(text)
    assert ctx.key.encode() not in text, "the encryption key is in the wrapped entry"
    env = entry.get("env") or {}
    for name in ("STIGMER_ENCRYPTION_KEY", "STIGMER_TOKEN"):
        assert name not in env, f"the wrapped entry's env carries {name}"
    assert not option_values(entry["args"], "--key-fd"), entry


def launch_wrapped(entry: dict, cwd, errlog) -> dict:
    """Start the wrapped entry as a client would: its command, args and env only, over a
    bare environment, from `cwd`; talk MCP to it. (The SDK client adds LOGNAME, SHELL,
    TERM and USER from this process when set: none says where a home is.)"""
    env = {**BARE_ENV, **(entry.get("env") or {})}
    try:
        return probe(entry["command"], entry["args"], env, errlog, cwd=cwd)
    except Exception as exc:
        raise AssertionError(f"the wrapped entry does not start a working MCP server from {cwd} with "
                             f"{sorted(env)} ({exc!r}); its stderr: {errlog.read_text()!r}") from exc


def check_session(out: dict, ctx: McpContext, marker, errlog):
    assert out["server_name"] == "stigmer-env-probe", out["server_name"]
    assert PROBE_TOOLS <= out["tools"], out["tools"]
    assert out["digest"] == sha256(ctx.token), "the server did not get SECRET_TOKEN's value as TOKEN"
    assert out["ORG"] == PLAIN_ORG
    assert wait_file(marker) == "clean-exit"
    ctx.assert_no_canary(errlog.read_bytes())


@pytest.mark.parametrize("how", ["home-flag-relative", "home-env-relative", "home-env-absolute"])
def test_wrapped_entry_works_from_elsewhere_with_a_bare_environment(home, tmp_path, how):
    ctx = McpContext(home, tmp_path)
    marker = tmp_path / "shutdown"
    cfg = write_json(tmp_path / "claude.json", envsrv_claude(marker))
    # The caller's working directory is the home's parent, where the home is "home".
    assert home.name == "home"
    args = ["mcp", "wrap", "--execution-id", ctx.exec_id, "--config", str(cfg)]
    if how == "home-flag-relative":
        args += ["--home", "home"]
        env_extra = {"STIGMER_HOME": None}
    elif how == "home-env-relative":
        env_extra = {"STIGMER_HOME": "home"}
    else:
        env_extra = {"STIGMER_HOME": str(home)}
    proc = run(args, home, env_extra=env_extra, cwd=home.parent)
    entry = wrapped_entry(wrap_json(proc, ctx))
    assert_carries_nothing_secret(entry, ctx)

    homes = option_values(entry["args"], "--home")
    env_home = (entry.get("env") or {}).get("STIGMER_HOME")
    if env_home is not None:
        homes.append(env_home)
    assert homes, f"the wrapped entry does not say where the context lives (no --home, no STIGMER_HOME): {entry}"
    for value in homes:
        assert os.path.isabs(value), f"the wrapped entry names the home relatively: {value!r} in {entry}"
        assert os.path.realpath(value) == os.path.realpath(home), (value, str(home))

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    errlog = tmp_path / "client-stderr"
    out = launch_wrapped(entry, elsewhere, errlog)
    check_session(out, ctx, marker, errlog)


def test_wrap_store_is_carried_as_an_absolute_path(home, tmp_path):
    key = key_init(home)
    token = new_canary("tok")
    # Beside the home, not in tmp_path: the child (which writes into tmp_path) is kept out
    # of the store's directory except for what exists there already.
    stores = home.parent / "stores"
    stores.mkdir()
    store = stores / "contexts.db"
    ok(create_context(home, "wrap-store-1", "--env", f"PLAIN_ORG={PLAIN_ORG}", "--secret", "SECRET_TOKEN",
                      secret_stdin=token, store=store))
    marker = tmp_path / "shutdown"
    write_json(tmp_path / "claude.json", envsrv_claude(marker))

    proc = run(["mcp", "wrap", "--execution-id", "wrap-store-1", "--config", str(tmp_path / "claude.json"),
                "--home", str(home), "--store", "stores/contexts.db"], home, cwd=home.parent)
    assert token not in proc.stdout + proc.stderr and key.encode() not in proc.stdout + proc.stderr, \
        "a secret or the key in the wrap output"
    ok(proc)
    entry = wrapped_entry(json.loads(proc.stdout))
    values = option_values(entry["args"], "--store")
    assert len(values) == 1, f"--store not carried exactly once: {entry['args']}"
    assert os.path.isabs(values[0]), f"--store carried relatively: {values[0]!r}"
    assert os.path.realpath(values[0]) == os.path.realpath(store), values

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    errlog = tmp_path / "client-stderr"
    out = launch_wrapped(entry, elsewhere, errlog)
    assert out["digest"] == sha256(token), "the server did not get the stored SECRET_TOKEN"
    assert out["ORG"] == PLAIN_ORG
    assert wait_file(marker) == "clean-exit"


def test_wrap_carries_the_context_server(home, tmp_path):
    url = f"grpc://127.0.0.1:{free_port()}"
    cfg = write_json(tmp_path / "claude.json", envsrv_claude(tmp_path / "shutdown"))
    proc = run(["mcp", "wrap", "--execution-id", "wrap-remote-1", "--config", cfg, "--context-server", url], home)
    ok(proc)
    entry = wrapped_entry(json.loads(proc.stdout))
    assert option_values(entry["args"], "--context-server") == [url], entry["args"]
    assert "STIGMER_TOKEN" not in (entry.get("env") or {}), "a token in the wrapped entry"


# --------------------------------------------------------------------------
# d. Ctrl-C on a terminal reaches a supervised child once

SIGINT_CHILD = r"""
import os, signal, time
count = 0
def on_int(signum, frame):
    global count
    count += 1
signal.signal(signal.SIGINT, on_int)
print("READY", os.getpid(), os.getpgrp(), flush=True)
# Busy, not asleep: each SIGINT is handled as soon as it arrives, so a second one
# sent a few microseconds after the first is not merged with it while still pending.
deadline = time.monotonic() + 8
while count == 0 and time.monotonic() < deadline:
    pass
# A grace period in which a second (forwarded) SIGINT would arrive.
grace = time.monotonic() + 0.5
while time.monotonic() < grace:
    pass
print(f"SIGINT_COUNT={count}", flush=True)
"""


# Every way a process can send a signal to another.
SIGNAL_SENDS = "kill,tkill,tgkill,rt_sigqueueinfo,rt_tgsigqueueinfo,pidfd_send_signal"


def sigint_sends(log) -> list[str]:
    """The traced syscalls that sent a SIGINT (strace -f log)."""
    return [line for line in log.read_text(errors="replace").splitlines()
            if re.search(r"\b(" + SIGNAL_SENDS.replace(",", "|") + r")\(.*SIGINT", line)]


@pytest.mark.parametrize("flags", [[], ["--init"], ["--mask-output"], ["--init", "--mask-output"]],
                         ids=["exec", "init", "mask-output", "init-mask-output"])
def test_ctrl_c_on_a_terminal_reaches_the_child_once(home, tmp_path, flags):
    """Counting in the child alone cannot tell one SIGINT from two that arrive microseconds
    apart (a standard signal still pending absorbs the next), so the launcher and child run
    under strace -f as well: no process of theirs may send a SIGINT of its own."""
    strace = shutil.which("strace")
    assert strace, "strace is needed (apt-get install strace)"
    log = tmp_path / "signals.log"
    prefix = [strace, "-f", "-qq", "-e", f"trace={SIGNAL_SENDS}", "-e", "signal=none", "-o", log]
    with PtyProcess(["run", "--env", "A=1", *flags, "--", PYTHON, "-c", SIGINT_CHILD], home, prefix=prefix) as term:
        ready = term.expect(rb"READY (\d+) (\d+)\r?\n", 10, "the child to install its SIGINT handler")
        child_group = int(ready.group(2))
        # Ctrl-C goes to the terminal's foreground group: wait until that is the child's.
        wait_for(lambda: term.foreground_group() == child_group, 5,
                 lambda: f"the child's group {child_group} to be the terminal's foreground group "
                         f"(it is {term.foreground_group()})")
        assert term.interrupt_char() == b"\x03"
        term.write(b"\x03")
        m = term.expect(rb"SIGINT_COUNT=(\d+)", 10, "the child to report the SIGINTs it received")
        count = int(m.group(1))
        code = term.wait(10)
    sent = sigint_sends(log)
    assert not sent, f"one Ctrl-C, and the launcher sent the child another SIGINT: {sent}"
    assert count == 1, f"one Ctrl-C, the child received {count} SIGINTs; the terminal showed {term.output!r}"
    assert code == 0, f"exit {code}; the terminal showed {term.output!r}"


# --------------------------------------------------------------------------
# e. inherited ignored signal dispositions are kept

# Prints SIG_IGN or SIG_DFL (str() of signal.Handlers is its number since Python 3.11).
PRINT_SIGHUP = ("import signal; h = signal.getsignal(signal.SIGHUP); "
                "print({signal.SIG_IGN: 'SIG_IGN', signal.SIG_DFL: 'SIG_DFL'}.get(h, repr(h)))")


def _sighup(disposition):
    def preexec():
        signal.signal(signal.SIGHUP, disposition)
    return preexec


@pytest.mark.parametrize("flags", [[], ["--init"]], ids=["exec", "init"])
@pytest.mark.parametrize("disposition, expected", [
    (signal.SIG_IGN, "SIG_IGN"),
    (signal.SIG_DFL, "SIG_DFL"),
], ids=["nohup", "control"])
def test_inherited_sighup_disposition_reaches_the_child(home, flags, disposition, expected):
    proc = run(["run", "--env", "A=1", *flags, "--", PYTHON, "-c", PRINT_SIGHUP], home,
               preexec_fn=_sighup(disposition))
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.decode().strip() == expected, describe(proc)


@pytest.mark.parametrize("flags", [[], ["--init"], ["--seccomp", "strict"]], ids=["exec", "init", "strict"])
def test_the_child_ignores_exactly_what_was_inherited_ignored(home, flags):
    """The exec path reads no disposition (execve keeps ignores and resets handlers): that
    is right only while the launcher ignores no signal of its own on the way. The child's
    whole SigIgn is exactly the inherited set, and its mask is empty."""
    def preexec():
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    grep = ["/bin/grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"]
    proc = run(["run", "--env", "A=1", *flags, "--", *grep], home, preexec_fn=preexec)
    assert proc.returncode == 0, describe(proc)
    fields = dict(line.split(":\t") for line in proc.stdout.decode().splitlines())
    # What the launcher inherited: the same command started the same way without it (the
    # test run may itself inherit ignores, e.g. glibc's signal 32 under make).
    control = subprocess.run(grep, preexec_fn=preexec, capture_output=True, check=True)
    inherited = dict(line.split(":\t") for line in control.stdout.decode().splitlines())
    hup_usr2 = (1 << (signal.SIGHUP - 1)) | (1 << (signal.SIGUSR2 - 1))
    assert int(inherited["SigIgn"], 16) & hup_usr2 == hup_usr2, control.stdout
    assert fields["SigIgn"] == inherited["SigIgn"], describe(proc)
    assert int(fields["SigBlk"], 16) == 0, describe(proc)


# --------------------------------------------------------------------------
# f. apply -f DIR and apply -f -

EXTRA_ENV_JSON = {
    "apiVersion": "agentic.stigmer.ai/v1",
    "kind": "Environment",
    "metadata": {"name": "extra"},
    "spec": {"data": {"EXTRA": {"value": "x"}}},
}
# Two documents in one stream.
STDIN_ENVS = (env_manifest("from-stdin-a", {"A": "a"}) + "---\n"
              + env_manifest("from-stdin-b", {"B": "b"}, secret={"B"}))
EXAMPLE_APPLIED = {
    "Agent/github-reviewer applied",
    "AgentInstance/github-reviewer-prod applied",
    "Environment/base applied",
    "Environment/github-prod applied",
}


def env_names(home) -> set[str]:
    proc = ok(run(["env", "list"], home))
    lines = [line for line in proc.stdout.decode().splitlines() if line.strip()]
    assert lines and lines[0].split()[0] == "NAME", describe(proc)
    return {line.split()[0] for line in lines[1:]}


def test_apply_directory_applies_every_manifest(home, examples, tmp_path):
    key_init(home)
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    for name in MANIFESTS:
        target = "environment-base.yml" if name == "environment-base.yaml" else name
        shutil.copy(examples / name, manifests / target)
    write_json(manifests / "environment-extra.json", EXTRA_ENV_JSON)
    write(manifests, "README.txt", "not a manifest: apply -f DIR reads .yaml, .yml and .json only\n")

    proc = ok(run(["apply", "-f", manifests], home))
    assert set(proc.stdout.decode().splitlines()) == EXAMPLE_APPLIED | {"Environment/extra applied"}, describe(proc)
    assert env_names(home) == {"base", "github-prod", "extra"}
    # What was applied is usable: the instance resolves through the applied environments.
    proc = run(["run", "--instance", "github-reviewer-prod", "--secret", "SLACK_WEBHOOK", "--",
                "python3", "-c", PRINT_ENV, "GITHUB_ORG", "TIMEOUT"], home, input=new_canary() + b"\n")
    assert json.loads(ok(proc).stdout) == {"GITHUB_ORG": "my-org", "TIMEOUT": "30s"}, describe(proc)


def test_apply_stdin_reads_a_multi_document_manifest(home):
    key_init(home)
    proc = ok(run(["apply", "-f", "-"], home, input=STDIN_ENVS.encode()))
    assert set(proc.stdout.decode().splitlines()) == {"Environment/from-stdin-a applied",
                                                      "Environment/from-stdin-b applied"}, describe(proc)
    assert env_names(home) == {"from-stdin-a", "from-stdin-b"}


@pytest.mark.parametrize("content", [{}, {"README.txt": "nothing to apply\n"}], ids=["empty", "no-manifest-files"])
def test_apply_directory_without_manifests_is_an_error(home, tmp_path, content):
    key_init(home)
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    for name, text in content.items():
        write(manifests, name, text)
    proc = run(["apply", "-f", manifests], home)
    one_line_error(proc, (65, 66))
    assert not (home / DB).exists() or env_names(home) == set()


# --------------------------------------------------------------------------
# g. an empty STIGMER_EXECUTION_ID is unset


@pytest.mark.parametrize("executable", ["stigmer-exec", "stigmer-exec-full", "stigmer-exec --store postgres"])
def test_empty_execution_id_is_missing_for_context_create(home, executable, pg_url_if_given):
    key_init(home)
    args = ["context", "create", "--env", "A=1"]
    binary = None
    if executable == "stigmer-exec-full":
        binary = companion_path()
    elif executable.endswith("postgres"):
        if pg_url_if_given is None:
            pytest.skip("STIGMER_TEST_POSTGRES_URL is unset")
        args += ["--store", pg_url_if_given]
    proc = run(args, home, env_extra={"STIGMER_EXECUTION_ID": ""}, binary=binary)
    err = one_line_error(proc, 64, "--execution-id")
    assert "invalid" not in err.lower(), f"an empty STIGMER_EXECUTION_ID is reported as an invalid id: {err!r}"


def test_empty_execution_id_runs_ephemerally(home):
    proc = run(["run", "--env", "A=1", "--", "python3", "-c", PRINT_ENV, "A"], home,
               env_extra={"STIGMER_EXECUTION_ID": ""})
    assert proc.returncode == 0, describe(proc)
    assert json.loads(proc.stdout) == {"A": "1"}, describe(proc)


# --------------------------------------------------------------------------
# h. both executables say the same thing

def _normalise(err: str, home, url: str | None) -> str:
    """The message with the store's location taken out."""
    out = err
    if url:
        out = out.replace(url, "<STORE>")
    for location in (str(home / DB), str(home)):
        out = out.replace(location, "<STORE>")
    return out


def _case(name, home, tmp_path):
    """(args, checks) for one mistake; `checks(proc)` asserts the expected error."""
    if name == "apply-bad-manifest":
        path = write(tmp_path, "env-bad-name.yaml", BAD_NAME_ENV)

        def check(proc):
            one_line_error(proc, 65, f"env-bad-name.yaml:{BAD_NAME_LINE}", "BAD-NAME")
        return ["apply", "-f", path], check
    if name == "apply-missing-file":
        path = tmp_path / "no-such-manifest.yaml"

        def check(proc):
            assert proc.returncode not in (0, 64), describe(proc)
            assert proc.stdout == b"", describe(proc)
            assert "no-such-manifest.yaml" in one_stderr_line(proc), describe(proc)
        return ["apply", "-f", path], check
    if name == "create-missing-required":
        def check(proc):
            err = one_line_error(proc, 78, "SLACK_WEBHOOK")
            assert "GITHUB_TOKEN" not in err and "GITHUB_ORG" not in err, err
        return ["context", "create", "--execution-id", "agree-1", "--instance", "github-reviewer-prod"], check
    if name == "get-missing":
        return ["context", "get", "no-such-id"], lambda proc: one_line_error(proc, 66, "no-such-id")
    if name == "delete-missing":
        return ["context", "delete", "no-such-id"], lambda proc: one_line_error(proc, 66, "no-such-id")
    raise ValueError(name)


@pytest.mark.parametrize("case", ["apply-bad-manifest", "apply-missing-file", "create-missing-required",
                                  "get-missing", "delete-missing"])
def test_sqlite_and_postgres_agree(home, examples, tmp_path, case, pg_url_if_given):
    key_init(home)
    apply_examples(home, examples)
    args, check = _case(case, home, tmp_path)

    sqlite = run([*args, "--home", home], home)
    check(sqlite)
    if pg_url_if_given is None:
        pytest.skip("STIGMER_TEST_POSTGRES_URL is unset: the PostgreSQL half is skipped")
    url = pg_url_if_given
    apply_examples(home, examples, store=url)
    postgres = run([*args, "--store", url], home)
    check(postgres)
    assert postgres.returncode == sqlite.returncode, f"sqlite:\n{describe(sqlite)}\npostgres:\n{describe(postgres)}"
    assert _normalise(postgres.stderr.decode(), home, url) == _normalise(sqlite.stderr.decode(), home, url), \
        f"the two stores word the same mistake differently:\nsqlite:   {sqlite.stderr!r}\npostgres: {postgres.stderr!r}"
