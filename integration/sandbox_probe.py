"""A small probe the launcher starts as its child (stdlib only).

Usage: sandbox_probe.py ACTION [ARGS…] [ACTION [ARGS…] …]

Each action is attempted in order and reported as one JSON object on its own stdout line:
{"action": NAME, "args": [...], "result": "ok" | ERRNO_NAME, "depth": D, …}. A failing
action never stops the ones after it. Secret bytes are never printed: a read reports
the sha256 hex of what it read and its length.

An argument written `env:VAR` is replaced by the value of the environment variable VAR
(e.g. `readfile env:TOKEN_FILE`); an unset VAR gives the result "unset".

Actions (fixed number of arguments):
  read PATH / readfile PATH   open O_RDONLY and read to EOF: sha256, size
  stat PATH                   os.stat (follows symlinks): mode, size
  write PATH                  open O_WRONLY|O_CREAT|O_TRUNC and write b"x"
  remove PATH                 unlink
  rename SRC DST              rename
  mkdir PATH                  mkdir
  list DIR                    os.listdir: count
  exec PATH                   run PATH (no arguments) and wait: rc
  connect HOST PORT           TCP connect (5 s timeout)
  bind PORT                   TCP bind to 127.0.0.1:PORT
  listen-and-connect          bind 127.0.0.1:0, listen, connect to it, accept
  socket                      create a TCP socket
  fdinfo N|/dev/fd/N          fstat, F_GET_SEALS, readlink /proc/self/fd/N, fd flags
  tryw PATH                   open O_RDWR; then write and ftruncate on it
  addseal N|/dev/fd/N         fcntl(F_ADD_SEALS, F_SEAL_FUTURE_WRITE)
  env NAME                    is NAME set: set, sha256 of its value
  showenv NAME                the value of a NON-secret variable (None when unset)
  envscan PATH                read PATH; is its content anywhere in the environment
                              (names and values, and /proc/self/environ): found
  spawn-grandchild ACTION…    run this probe again (same interpreter) with the rest of
                              the arguments as its actions, passing every open
                              descriptor >= 3; its lines are printed with depth + 1,
                              then one line for spawn-grandchild itself (rc)
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import socket
import subprocess
import sys

F_ADD_SEALS = 1033
F_GET_SEALS = 1034
F_SEAL_FUTURE_WRITE = 0x10
DEPTH = int(os.environ.get("SANDBOX_PROBE_DEPTH", "0"))

ARITY = {
    "read": 1, "readfile": 1, "stat": 1, "write": 1, "remove": 1, "rename": 2, "mkdir": 1,
    "list": 1, "exec": 1, "connect": 2, "bind": 1, "listen-and-connect": 0, "socket": 0,
    "unix-connect": 1, "socketpair": 0, "abstract-connect": 1, "kill": 1, "setns": 1, "socket-proto": 1,
    "socket-type": 1, "io-uring-setup": 0,
    "fdinfo": 1, "tryw": 1, "addseal": 1, "env": 1, "showenv": 1, "envscan": 1,
}


class Unset(Exception):
    pass


def errname(exc: OSError) -> str:
    if isinstance(exc, socket.timeout):
        return "ETIMEDOUT"
    if exc.errno is None:
        return type(exc).__name__
    return errno.errorcode.get(exc.errno, str(exc.errno))


def expand(arg: str) -> str:
    if arg.startswith("env:"):
        value = os.environ.get(arg[4:])
        if value is None:
            raise Unset(arg[4:])
        return value
    return arg


def fd_number(arg: str) -> int:
    if arg.startswith("/dev/fd/"):
        return int(arg[len("/dev/fd/"):])
    if arg.startswith("/proc/self/fd/"):
        return int(arg[len("/proc/self/fd/"):])
    return int(arg)


def read_all(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def do_read(path):
    data = read_all(path)
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def do_stat(path):
    st = os.stat(path)
    return {"mode": st.st_mode, "size": st.st_size}


def do_write(path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, b"x")
    finally:
        os.close(fd)
    return {}


def do_remove(path):
    os.unlink(path)
    return {}


def do_rename(src, dst):
    os.rename(src, dst)
    return {}


def do_mkdir(path):
    os.mkdir(path)
    return {}


def do_list(path):
    return {"count": len(os.listdir(path))}


def do_exec(path):
    proc = subprocess.run([path], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=30)
    return {"rc": proc.returncode}


def do_connect(host, port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect((host, int(port)))
    return {}


def do_bind(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(port)))
        return {"port": s.getsockname()[1]}


def do_listen_and_connect():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client:
            client.settimeout(5)
            client.connect(("127.0.0.1", port))
            server.settimeout(5)
            conn, _ = server.accept()
            conn.close()
    return {"port": port}


def do_socket():
    socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
    return {}


def do_unix_connect(path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
    return {}


def do_socketpair():
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"x")
        assert b.recv(1) == b"x"
    return {}


def do_abstract_connect(name):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect("\0" + name)
    return {}


def do_kill(pid):
    os.kill(int(pid), 0)  # signal 0: only whether a signal may be sent
    return {}


def do_setns(path):
    import ctypes  # os.setns is Python 3.12's
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)
    return {}


def do_socket_proto(proto):
    """socket(AF_INET, SOCK_STREAM, PROTO): creation only (MPTCP 262, SCTP 132)."""
    socket.socket(socket.AF_INET, socket.SOCK_STREAM, int(proto)).close()
    return {}


def do_socket_type(kind):
    """socket(AF_INET, TYPE, 0): creation only (SOCK_SEQPACKET 5 is SCTP where it is loaded)."""
    socket.socket(socket.AF_INET, int(kind), 0).close()
    return {}


def do_io_uring_setup():
    """io_uring_setup(0, NULL): EINVAL (or EFAULT) where io_uring is there, ENOSYS where refused."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(425, 0, None) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return {}


def do_fdinfo(arg):
    fd = fd_number(arg)
    out = {"fd": fd}
    st = os.fstat(fd)
    out["mode"] = st.st_mode
    out["size"] = st.st_size
    out["cloexec"] = bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
    out["access"] = {os.O_RDONLY: "r", os.O_WRONLY: "w", os.O_RDWR: "rw"}.get(
        fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE, "?")
    try:
        out["seals"] = fcntl.fcntl(fd, F_GET_SEALS)
    except OSError as exc:
        out["seals"] = errname(exc)
    try:
        out["link"] = os.readlink(f"/proc/self/fd/{fd}")
    except OSError as exc:
        out["link"] = errname(exc)
    return out


def do_tryw(path):
    fd = os.open(path, os.O_RDWR)
    out = {}
    try:
        try:
            n = os.write(fd, b"overwritten")
            out["write"] = "ok"
            out["written"] = n
        except OSError as exc:
            out["write"] = errname(exc)
        try:
            os.ftruncate(fd, 0)
            out["ftruncate"] = "ok"
        except OSError as exc:
            out["ftruncate"] = errname(exc)
        try:
            os.ftruncate(fd, 1 << 20)
            out["grow"] = "ok"
        except OSError as exc:
            out["grow"] = errname(exc)
    finally:
        os.close(fd)
    return out


def do_addseal(arg):
    fcntl.fcntl(fd_number(arg), F_ADD_SEALS, F_SEAL_FUTURE_WRITE)
    return {}


def do_env(name):
    value = os.environb.get(os.fsencode(name))
    if value is None:
        return {"set": False}
    return {"set": True, "sha256": hashlib.sha256(value).hexdigest()}


def do_showenv(name):
    return {"value": os.environ.get(name)}


def do_envscan(path):
    needle = read_all(path)
    if not needle:
        return {"found": None, "size": 0}
    found = any(needle in k + b"=" + v for k, v in os.environb.items())
    try:
        found = found or needle in read_all("/proc/self/environ")
    except OSError:
        pass
    return {"found": found, "size": len(needle)}


ACTIONS = {
    "read": do_read, "readfile": do_read, "stat": do_stat, "write": do_write, "remove": do_remove,
    "rename": do_rename, "mkdir": do_mkdir, "list": do_list, "exec": do_exec, "connect": do_connect,
    "bind": do_bind, "listen-and-connect": do_listen_and_connect, "socket": do_socket,
    "fdinfo": do_fdinfo, "tryw": do_tryw, "addseal": do_addseal, "env": do_env, "showenv": do_showenv,
    "envscan": do_envscan, "unix-connect": do_unix_connect, "socketpair": do_socketpair,
    "abstract-connect": do_abstract_connect, "kill": do_kill, "setns": do_setns, "socket-proto": do_socket_proto,
    "socket-type": do_socket_type, "io-uring-setup": do_io_uring_setup,
}


def emit(record: dict):
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def spawn_grandchild(rest: list[str]):
    fds = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd >= 3:
            try:
                os.fstat(fd)
            except OSError:
                continue  # the directory listing's own descriptor, now closed
            fds.append(fd)
    env = dict(os.environ)
    env["SANDBOX_PROBE_DEPTH"] = str(DEPTH + 1)
    record = {"action": "spawn-grandchild", "args": rest, "depth": DEPTH}
    try:
        proc = subprocess.run([sys.executable, "-I", "-S", os.path.abspath(__file__), *rest],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env, pass_fds=fds,
                              timeout=60)
    except OSError as exc:
        record["result"] = errname(exc)
    else:
        sys.stdout.write(proc.stdout.decode(errors="replace"))
        record["result"] = "ok"
        record["rc"] = proc.returncode
        record["fds"] = fds
    emit(record)


def main(argv: list[str]) -> int:
    i = 0
    while i < len(argv):
        action = argv[i]
        if action == "spawn-grandchild":
            spawn_grandchild(argv[i + 1:])
            return 0
        if action not in ACTIONS:
            emit({"action": action, "result": "usage", "error": f"unknown action {action!r}", "depth": DEPTH})
            return 2
        n = ARITY[action]
        raw = argv[i + 1:i + 1 + n]
        i += 1 + n
        record = {"action": action, "args": raw, "depth": DEPTH}
        if len(raw) != n:
            record.update(result="usage", error=f"{action} takes {n} arguments")
            emit(record)
            return 2
        try:
            args = [expand(a) for a in raw]
            record.update(ACTIONS[action](*args))
            record["result"] = "ok"
        except Unset as exc:
            record["result"] = "unset"
            record["variable"] = str(exc)
        except OSError as exc:
            record["result"] = errname(exc)
        except (ValueError, subprocess.SubprocessError) as exc:
            record["result"] = type(exc).__name__
        emit(record)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
