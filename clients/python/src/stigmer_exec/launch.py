"""Starting the launcher: `run`/`run_async` (`stigmer-exec run`) and `mcp_run`/`mcp_run_async`
(`stigmer-exec mcp run`).

The execution token goes to the launcher through a pipe (`--token-fd`): written, the write
end closed, never in argv or the environment. A failure of the launcher itself comes back
as one JSON line on another pipe (`--error-fd`), closed when the command starts, so a
missing line means the exit status is the command's. The launcher starts a session (and
process group) of its own; on cancellation, a timeout or Ctrl-C every process of that
session gets SIGTERM, then SIGKILL after `grace_period`, and when a call returns or raises
nothing of it is left. (The session, not only the group: with --init the command gets a
group of its own, and a command may start groups; only a process that calls setsid leaves.)
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Callable, List, Mapping, Optional, Sequence, TypedDict, Union

from .errors import ChildFailed, from_record

if TYPE_CHECKING:
    from typing_extensions import Unpack

PIPE, DEVNULL = subprocess.PIPE, subprocess.DEVNULL
#: PIPE (capture, the default for stdout and stderr), None (inherit: pass through),
#: DEVNULL (the default for stdin), or an open descriptor or file.
Stream = Union[int, IO[Any], None]


@dataclass(frozen=True)
class Completed:
    """A command that ran to its end. `returncode` is its status (128+N when killed by
    signal N); `stdout` and `stderr` are what was captured (None when not captured)."""

    returncode: int
    stdout: Optional[bytes]
    stderr: Optional[bytes]


class LaunchOptions(TypedDict, total=False):
    """The keyword options of every launch (all optional)."""

    binary: Union[str, os.PathLike[str], None]  # default: $STIGMER_EXEC_BIN, else PATH
    server: Optional[str]  # grpc[s]://HOST:PORT; default: the launcher's $STIGMER_SERVER
    server_key: Optional[str]  # pin the server key (base64); default: the token's
    tls_ca: Union[str, os.PathLike[str], None]  # a CA (PEM) for grpcs://
    fetch_timeout: Optional[float]  # seconds to retry an unavailable server (launcher: 30)
    allow_plaintext: bool  # grpc:// to a host other than loopback
    init: bool  # --init: the launcher stays as the command's minimal init
    seccomp: Optional[str]  # default, strict, none, or a profile's path
    mask_output: bool  # --mask-output: secret values in the output become <concealed>
    extra_args: Sequence[str]  # more launcher flags (before the command's `--`)
    cwd: Union[str, os.PathLike[str], None]
    env: Optional[Mapping[str, str]]  # the launcher's environment (never a secret); default: ours
    stdin: Stream
    input: Optional[bytes]  # written to the command's stdin, then closed
    stdout: Stream
    stderr: Stream
    check: bool  # raise ChildFailed when the command fails (default True)
    timeout: Optional[float]  # seconds; then stopped as on cancellation, TimeoutError
    grace_period: float  # seconds between SIGTERM and SIGKILL (default 10)
    heartbeat: Optional[Callable[[], object]]  # called every heartbeat_interval while running
    heartbeat_interval: float  # seconds (default 5)


def run(execution_id: str, argv: Sequence[str], *, token: Optional[str] = None, file_vars: Sequence[str] = (),
        **options: Unpack[LaunchOptions]) -> Completed:
    """`stigmer-exec run --execution-id ID -- ARGV`, to its end; see `run_async` (this
    runs it in `asyncio.run`: not from a running event loop). Ctrl-C (KeyboardInterrupt)
    stops the launcher's session as a cancellation does."""
    return asyncio.run(run_async(execution_id, argv, token=token, file_vars=file_vars, **options))


async def run_async(execution_id: str, argv: Sequence[str], *, token: Optional[str] = None,
                    file_vars: Sequence[str] = (), **options: Unpack[LaunchOptions]) -> Completed:
    """Run `argv` with the execution's variables in its environment; return its `Completed`.

    `token` is the execution token (None: the launcher finds its own, e.g. a local store);
    `file_vars` names variables handed over as files (`--file-var`). Raises
    `MissingVariables`, `NotPermitted`, `Unavailable`, `NotFound` or `StigmerExecError` when
    the launcher fails (the command did not start), `ChildFailed` when the command fails
    (unless `check=False`), `TimeoutError` after `timeout`.
    """
    flags = [arg for name in file_vars for arg in ("--file-var", name)]
    return await _launch(["run", "--execution-id", execution_id, *flags], "--server", ["--", *argv], token, options)


def mcp_run(execution_id: str, config: Union[str, os.PathLike[str]], name: str, *, token: Optional[str] = None,
            **options: Unpack[LaunchOptions]) -> Completed:
    """`stigmer-exec mcp run`, to its end; see `mcp_run_async`."""
    return asyncio.run(mcp_run_async(execution_id, config, name, token=token, **options))


async def mcp_run_async(execution_id: str, config: Union[str, os.PathLike[str]], name: str, *,
                        token: Optional[str] = None, **options: Unpack[LaunchOptions]) -> Completed:
    """Start the MCP server `name` of `config` with its placeholders resolved from the
    execution's context (`server` is the context server: `--context-server`). stdin and
    stdout are the MCP channel: pass descriptors (or `input=`) to talk to it. Same options,
    results and exceptions as `run_async`."""
    args = ["mcp", "run", "--execution-id", execution_id, "--config", os.fspath(config), "--server", name]
    return await _launch(args, "--context-server", [], token, options)


def find_binary(binary: Union[str, os.PathLike[str], None] = None) -> str:
    """The launcher: `binary`, else $STIGMER_EXEC_BIN, else `stigmer-exec` on PATH."""
    path = binary or os.environ.get("STIGMER_EXEC_BIN") or shutil.which("stigmer-exec")
    if not path:
        raise FileNotFoundError("stigmer-exec not found: pass binary=, set STIGMER_EXEC_BIN, or put it on PATH")
    return os.fspath(path)


def _flags(o: LaunchOptions, server_flag: str) -> List[str]:
    out: List[str] = []
    for flag, value in ((server_flag, o.get("server")), ("--server-key", o.get("server_key")),
                        ("--tls-ca", o.get("tls_ca")), ("--seccomp", o.get("seccomp"))):
        if value is not None:
            out += [flag, os.fspath(value)]
    fetch_timeout = o.get("fetch_timeout")
    if fetch_timeout is not None:
        out += ["--fetch-timeout", f"{max(1, math.ceil(fetch_timeout))}s"]
    out += [flag for flag, key in (("--init", "init"), ("--mask-output", "mask_output"),
                                   ("--allow-plaintext", "allow_plaintext")) if o.get(key)]
    return out + list(o.get("extra_args", ()))


async def _launch(args: List[str], server_flag: str, tail: List[str], token: Optional[str],
                  o: LaunchOptions) -> Completed:
    stdin, data = o.get("stdin", DEVNULL), o.get("input")
    if data is not None:
        if "stdin" in o:
            raise ValueError("pass stdin= or input=, not both")
        stdin = PIPE
    binary = find_binary(o.get("binary"))
    err_r, err_w = os.pipe()
    os.set_blocking(err_r, False)
    passed = [err_w]
    try:
        argv = [binary, *args, "--error-fd", str(err_w)]
        if token is not None:
            token_r, token_w = os.pipe()
            passed.append(token_r)
            with open(token_w, "wb") as pipe:  # 91 bytes: fits in the pipe, the write end closed
                pipe.write(token.encode())
            argv += ["--token-fd", str(token_r)]
        argv += [*_flags(o, server_flag), *tail]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=stdin, stdout=o.get("stdout", PIPE), stderr=o.get("stderr", PIPE), cwd=o.get("cwd"),
            env=o.get("env"), start_new_session=True, pass_fds=passed)
    except BaseException:
        os.close(err_r)
        raise
    finally:
        for fd in passed:
            os.close(fd)

    out, err = bytearray(), bytearray()
    tasks = [asyncio.ensure_future(_collect(stream, sink)) for stream, sink in ((proc.stdout, out), (proc.stderr, err))
             if stream is not None]
    if data is not None and proc.stdin is not None:
        tasks.append(asyncio.ensure_future(_feed(proc.stdin, data)))
    waiter = asyncio.ensure_future(proc.wait())
    try:
        try:
            returncode = await _wait(waiter, o.get("timeout"), o.get("heartbeat"), o.get("heartbeat_interval", 5.0))
        except BaseException:  # cancelled, timed out, interrupted, or the heartbeat raised
            await _stop(proc.pid, waiter, o.get("grace_period", 10.0))
            raise
        finally:
            await _kill_rest(proc.pid)  # what the command left behind
        await asyncio.wait(tasks, timeout=5)  # a process that left the session may hold a pipe
        record = _read_available(err_r)
    finally:
        for task in tasks:
            task.cancel()
        transport = getattr(proc, "_transport", None)  # its pipes, before the loop may close
        if transport is not None:
            transport.close()
        os.close(err_r)

    supervised = bool(o.get("init") or o.get("mask_output")
                      or {"--init", "--mask-output", "--delete-on-exit"} & set(o.get("extra_args", ())))
    status = 128 - returncode if returncode < 0 else returncode
    sig = -returncode if returncode < 0 else (status - 128 if supervised and 128 < status < 192 else None)
    result = Completed(status, bytes(out) if proc.stdout else None, bytes(err) if proc.stderr else None)
    if record.strip():
        raise from_record(record.splitlines()[0], status, result.stderr)
    if status != 0 and o.get("check", True):
        raise ChildFailed(status, sig, result)
    return result


async def _wait(waiter: asyncio.Future[int], timeout: Optional[float], heartbeat: Optional[Callable[[], object]],
                interval: float) -> int:
    """The launcher's exit status; calls `heartbeat` every `interval` s meanwhile."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    while True:
        step = interval if heartbeat else None
        if deadline is not None:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"the command did not finish within {timeout} s")
            step = left if step is None else min(step, left)
        done, _ = await asyncio.wait([waiter], timeout=step)
        if done:
            return waiter.result()
        if heartbeat is not None and (deadline is None or loop.time() < deadline):
            heartbeat()


async def _stop(sid: int, waiter: asyncio.Future[int], grace: float) -> None:
    """SIGTERM to the launcher's session; SIGKILL once `grace` s have passed with any of
    it left (at once if cancelled again meanwhile)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    _signal_session(sid, signal.SIGTERM)
    with contextlib.suppress(asyncio.CancelledError):
        while _signal_session(sid, 0) and loop.time() < deadline:
            await asyncio.sleep(0.05)
    await _kill_rest(sid)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(waiter), 5)


async def _kill_rest(sid: int) -> None:
    """SIGKILL whatever of the session is left, until nothing is (or 1 s has passed)."""
    for _ in range(50):
        if not _signal_session(sid, signal.SIGKILL):
            return
        await asyncio.sleep(0.02)


def _signal_session(sid: int, sig: int) -> bool:
    """Send `sig` to every live process of session `sid`; False when there is none. The
    id is not reused while one of them runs. Without /proc: its process group only."""
    alive = False
    try:
        entries = os.listdir("/proc")
    except OSError:
        entries = []
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(sid, sig)
            alive = True
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                state, _, _, session = stat.read().rsplit(b")", 1)[1].split()[:4]
        except (OSError, ValueError):
            continue  # gone meanwhile
        if int(session) == sid and state not in (b"Z", b"X"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(name), sig)
                alive = True
    return alive


async def _collect(stream: asyncio.StreamReader, sink: bytearray) -> None:
    while chunk := await stream.read(65536):
        sink += chunk


async def _feed(writer: asyncio.StreamWriter, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        writer.write(data)
        await writer.drain()
    writer.close()


def _read_available(fd: int) -> bytes:
    data = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 65536):
            data += chunk
    return data
