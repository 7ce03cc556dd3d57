"""Helpers for the remote-context and PostgreSQL black-box tests.

- `Server`: a `stigmer-exec serve` process (handed over to stigmer-exec-full), its
  stderr collected by a thread, its port parsed from the "serving on" line.
- `PgCluster`: a throwaway PostgreSQL cluster (Debian's postgresql, run as user
  `postgres` since the tests run as root), or an external one from
  STIGMER_TEST_POSTGRES_URL; each test gets its own database.
- gRPC stubs generated from the .proto with grpcio-tools into a temporary directory.
- RFC 9180 HPKE (base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
  ChaCha20-Poly1305) opening with `cryptography` primitives, for checking what the
  server delivers.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import importlib
import importlib.resources
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from conftest import REPO, TIMEOUT_S, binary_path, describe, run

MANIFESTS = [
    "agent-github-reviewer.yaml",
    "agentinstance-github-reviewer-prod.yaml",
    "environment-base.yaml",
    "environment-github-prod.yaml",
]
EXAMPLE_TOKEN = b"ghp_example0000000000000000000000000000"
PROTO = REPO / "Protos" / "stigmer" / "exec" / "v1" / "execution_context.proto"
OPERATOR_TOKEN = "op-" + secrets.token_hex(20)
TOKEN_RE = re.compile(rb"stx_[A-Za-z0-9_\-]+")
SERVING_RE = re.compile(rb"stigmer-exec: serving on (grpcs?)://127\.0\.0\.1:(\d+)")
PRINT_ENV = "import json,os,sys; print(json.dumps({k: os.environ.get(k) for k in sys.argv[1:]}))"
HIDDEN_MSG = "permission denied, or no such context for this token"


# --------------------------------------------------------------------------
# generic


def new_canary(tag: str = "canary") -> bytes:
    return f"{tag}-{secrets.token_hex(12)}".encode()


def ok(proc):
    assert proc.returncode == 0, describe(proc)
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll `predicate` until it returns something truthy; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def _retry_busy(fn):
    """Run fn(), retrying while the binary is being relinked ("Text file busy")."""
    for attempt in range(40):
        try:
            return fn()
        except OSError as e:
            if e.errno != errno.ETXTBSY or attempt == 39:
                raise
            time.sleep(0.5)


def xrun(args, home, **kwargs):
    """conftest.run, retried on ETXTBSY."""
    return _retry_busy(lambda: run(args, home, **kwargs))


def base_env(home, env_extra=None) -> dict:
    """The environment conftest.run() gives the binary."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(Path(home).parent),
        "STIGMER_HOME": str(home),
    }
    if env_extra:
        env.update({k: str(v) for k, v in env_extra.items()})
    return env


def spawn(args, home, env_extra=None, **kwargs):
    """Start the binary without waiting; stdout/stderr are pipes, stdin /dev/null."""
    return _retry_busy(
        lambda: subprocess.Popen(
            [str(binary_path()), *[str(a) for a in args]],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=base_env(home, env_extra),
            **kwargs,
        )
    )


def one_line_error(proc, codes, *needles, secrets_=()) -> str:
    """Exit code in `codes`, empty stdout, exactly one stderr line holding every needle."""
    codes = (codes,) if isinstance(codes, int) else tuple(codes)
    assert proc.returncode in codes, f"expected exit {codes}:\n{describe(proc)}"
    assert proc.stdout == b"", describe(proc)
    err = proc.stderr.decode("utf-8", errors="replace")
    assert len(err.splitlines()) == 1, f"expected exactly one stderr line:\n{describe(proc)}"
    assert "Traceback" not in err and "Fatal error" not in err, describe(proc)
    for needle in needles:
        assert needle in err, f"{needle!r} not in stderr:\n{describe(proc)}"
    for secret in secrets_:
        assert secret not in proc.stderr, describe(proc)
    return err


def key_init(home) -> str:
    ok(xrun(["key", "init"], home))
    return (Path(home) / "encryption.key").read_text().strip()


def apply_examples(home, examples, *extra, store=None):
    args = ["apply"]
    if store:
        args += ["--store", store]
    for name in MANIFESTS:
        args += ["-f", examples / name]
    for path in extra:
        args += ["-f", path]
    return ok(xrun(args, home))


def env_lines(stdout: bytes) -> dict[str, str]:
    """`env` output (no multi-line values expected) as a dict."""
    out = {}
    for line in stdout.decode().splitlines():
        if "=" in line:
            k, _, v = line.partition("=")
            out[k] = v
    return out


def files_containing(root: Path, needle: bytes) -> list[str]:
    if not root.exists():
        return []
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


# --------------------------------------------------------------------------
# the example story: `context create STORY_ARGS` with the secret SLACK_WEBHOOK on stdin

STORY_ARGS = ["--instance", "github-reviewer-prod", "--env", "LOG_LEVEL=trace", "--secret", "SLACK_WEBHOOK"]
STORY_NAMES = ["LOG_LEVEL", "TIMEOUT", "GITHUB_TOKEN", "GITHUB_ORG", "SLACK_WEBHOOK"]


def story_values(canary: bytes) -> dict[str, str]:
    """What `--instance github-reviewer-prod --env LOG_LEVEL=trace --secret SLACK_WEBHOOK` gives."""
    return {
        "LOG_LEVEL": "trace",
        "TIMEOUT": "30s",
        "GITHUB_TOKEN": EXAMPLE_TOKEN.decode(),
        "GITHUB_ORG": "my-org",
        "SLACK_WEBHOOK": canary.decode(),
    }


STORY_LAYERS = {
    "LOG_LEVEL": ("no", "runtime"),
    "TIMEOUT": ("no", "environment:base"),
    "GITHUB_TOKEN": ("yes", "environment:github-prod"),
    "GITHUB_ORG": ("no", "environment:github-prod"),
    "SLACK_WEBHOOK": ("yes", "runtime"),
}


def table_rows(stdout: bytes) -> dict[str, tuple[str, str]]:
    """The NAME SECRET LAYER table of `context get`."""
    lines = stdout.decode().splitlines()
    start = next(i for i, l in enumerate(lines) if l.split()[:3] == ["NAME", "SECRET", "LAYER"])
    rows = {}
    for line in lines[start + 1:]:
        if line.strip():
            name, secret, layer = line.split()
            rows[name] = (secret, layer)
    return rows


# --------------------------------------------------------------------------
# the server


class Server:
    """`stigmer-exec serve` on 127.0.0.1; stderr is collected in the background."""

    def __init__(self, home, tmp_path, *, store=None, port=0, tls=None, sweep="60s", log_level="info",
                 ttl=None, token=OPERATOR_TOKEN, env_extra=None):
        self.home = Path(home)
        self.token_file = Path(tmp_path) / f"operator-token-{secrets.token_hex(4)}"
        self.token_file.write_text(token + "\n")
        self.token_file.chmod(0o600)
        self.args = ["serve", "--listen", f"127.0.0.1:{port}", "--operator-token-file", self.token_file,
                     "--log-level", log_level, "--sweep-interval", sweep]
        if store:
            self.args += ["--store", store]
        if tls:
            self.args += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        if ttl:
            self.args += ["--ttl", ttl]
        self.env_extra = env_extra
        self.proc = None
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._reader = None
        self.scheme = self.port = self.url = None

    def start(self, timeout: float = 15.0) -> "Server":
        self.proc = spawn(self.args, self.home, self.env_extra)
        self.proc.stdout.close()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

        def bound():
            m = SERVING_RE.search(self.stderr)
            if m:
                return m
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode} before binding:\n{self.stderr!r}")
            return None

        m = wait_for(bound, timeout, "the 'serving on' line")
        self.scheme = m.group(1).decode()
        self.port = int(m.group(2))
        self.url = f"{self.scheme}://127.0.0.1:{self.port}"
        return self

    def _drain(self):
        fd = self.proc.stderr.fileno()
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            with self._lock:
                self._buf += chunk

    @property
    def stderr(self) -> bytes:
        with self._lock:
            return bytes(self._buf)

    def stop(self, sig=signal.SIGTERM, timeout: float = 10.0) -> int:
        """Signal the server, wait for it, return its exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT_S)
            raise AssertionError(f"serve did not exit within {timeout} s of {sig!r}:\n{self.stderr!r}")
        finally:
            if self._reader:
                self._reader.join(timeout=5)
            self.proc.stderr.close()
        return code

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT_S)
        if self._reader:
            self._reader.join(timeout=5)


def remote_create(home, server_url, exec_id, *args, secret_stdin: bytes | None = None, token=OPERATOR_TOKEN,
                  env_extra=None):
    """`context create --server URL --execution-id ID ARGS` with `token` in STIGMER_TOKEN."""
    env = {"STIGMER_TOKEN": token} if token is not None else {}
    env.update(env_extra or {})
    return xrun(["context", "create", "--server", server_url, "--execution-id", exec_id, *args], home,
                input=None if secret_stdin is None else secret_stdin + b"\n", env_extra=env)


def created_token(proc) -> str:
    """The execution token of a successful `context create --server`: stdout is that one line."""
    ok(proc)
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, f"stdout must be exactly the token line:\n{describe(proc)}"
    assert TOKEN_RE.fullmatch(lines[0]), describe(proc)
    assert lines[0] not in proc.stderr, "the token also went to stderr"
    return lines[0].decode()


def remote_cli(home, server_url, *args, token=OPERATOR_TOKEN):
    """`context ARGS --server URL` with `token` in STIGMER_TOKEN."""
    env = {"STIGMER_TOKEN": token} if token is not None else {}
    return xrun(["context", *args, "--server", server_url], home, env_extra=env)


def remote_run(home, server_url, exec_id, cmd, *, token=None, extra=(), env_extra=None):
    env = {} if token is None else {"STIGMER_TOKEN": token}
    env.update(env_extra or {})
    return xrun(["run", "--server", server_url, "--execution-id", exec_id, *extra, "--", *cmd], home, env_extra=env)


# --------------------------------------------------------------------------
# PostgreSQL


def pg_bin() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name)
                        if p.parent.name.isdigit() else 0)
    if not candidates:
        raise RuntimeError("PostgreSQL is not installed (/usr/lib/postgresql/*/bin)")
    return candidates[-1]


def _as_postgres(cmd) -> list[str]:
    return (["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []) + [str(c) for c in cmd]


class PgCluster:
    """A PostgreSQL cluster on 127.0.0.1, owned (started here) or external."""

    def __init__(self, host: str, port: int, user: str = "stigmer", base: Path | None = None):
        self.host, self.port, self.user = host, port, user
        self.base = base  # None: external, never started, stopped or restarted here

    @property
    def owned(self) -> bool:
        return self.base is not None

    @classmethod
    def external(cls, url: str) -> "PgCluster":
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 5432, parts.username or "stigmer")

    @classmethod
    def create(cls) -> "PgCluster":
        # Not under pytest's tmp dir: /tmp/pytest-of-root is 0700, and postgres is not root.
        base = Path(tempfile.mkdtemp(prefix="stigmer-pg-"))
        if os.geteuid() == 0:
            shutil.chown(base, user="postgres")
        cluster = cls("127.0.0.1", free_port(), base=base)
        proc = subprocess.run(_as_postgres([pg_bin() / "initdb", "-D", base / "data", "-A", "trust", "-U", "stigmer"]),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        if proc.returncode != 0:
            shutil.rmtree(base, ignore_errors=True)
            raise RuntimeError(f"initdb failed: {proc.stderr.decode(errors='replace')}")
        cluster.start()
        return cluster

    def _ctl(self, *args, check=True):
        proc = subprocess.run(_as_postgres([pg_bin() / "pg_ctl", "-D", self.base / "data", *args]),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        if check and proc.returncode != 0:
            log = (self.base / "log").read_text(errors="replace") if (self.base / "log").exists() else ""
            raise RuntimeError(f"pg_ctl {args} failed: {proc.stderr.decode(errors='replace')}\n{log[-2000:]}")
        return proc

    def _opts(self) -> str:
        return (f"-k {self.base} -p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off "
                f"-c max_connections=200")

    def start(self):
        assert self.owned
        self._ctl("-o", self._opts(), "-l", self.base / "log", "-w", "start")

    def stop(self, mode: str = "fast"):
        assert self.owned
        self._ctl("-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast"):
        assert self.owned
        self._ctl("-m", mode, "-o", self._opts(), "-l", self.base / "log", "-w", "restart")

    def destroy(self):
        if not self.owned:
            return
        self._ctl("-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.base, ignore_errors=True)

    def url(self, db: str) -> str:
        return f"postgres://{self.user}@{self.host}:{self.port}/{db}"

    def psql(self, db: str, sql: str) -> str:
        """Run SQL as the cluster's user; return unaligned, tuples-only output."""
        proc = subprocess.run(
            ["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h", self.host, "-p", str(self.port),
             "-U", self.user, "-d", db, "-c", sql],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60,
            env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
        )
        if proc.returncode != 0:
            raise AssertionError(f"psql {sql!r} failed: {proc.stderr.decode(errors='replace')}")
        return proc.stdout.decode().strip()

    def create_db(self, prefix: str = "t") -> str:
        name = f"{prefix}_{secrets.token_hex(6)}"
        self.psql("postgres", f"CREATE DATABASE {name}")
        return name

    def drop_db(self, name: str):
        try:
            self.psql("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        except AssertionError:
            pass


# --------------------------------------------------------------------------
# a recording stand-in for stigmer-exec-full (via $STIGMER_EXEC_FULL)

RECORDER = r'''#!{python}
import json, os, subprocess, sys
out = subprocess.run([{real!r}, *sys.argv[1:]], stdout=subprocess.PIPE)
n = len(os.listdir({logdir!r}))
with open(os.path.join({logdir!r}, "call-%03d.json" % n), "w") as f:
    json.dump({{"argv": sys.argv[1:], "env": sorted(os.environ), "stdout": out.stdout.hex(),
               "code": out.returncode}}, f)
sys.stdout.buffer.write(out.stdout)
sys.stdout.flush()
sys.exit(out.returncode)
'''


def recording_companion(tmp_path) -> tuple[Path, Path]:
    """(script, log dir): a stand-in companion that runs the real one and records each call's
    argv, environment names and stdout."""
    logdir = Path(tmp_path) / "helper-calls"
    logdir.mkdir()
    script = Path(tmp_path) / "recording-companion"
    real = binary_path().parent / "stigmer-exec-full"
    script.write_text(RECORDER.format(python=sys.executable, real=str(real), logdir=str(logdir)))
    script.chmod(0o755)
    return script, logdir


def recorded_calls(logdir: Path) -> list[dict]:
    calls = []
    for path in sorted(logdir.glob("call-*.json")):
        call = json.loads(path.read_text())
        call["stdout"] = bytes.fromhex(call["stdout"])
        calls.append(call)
    return calls


# --------------------------------------------------------------------------
# gRPC stubs and HPKE


def generate_stubs(out_dir: Path):
    """Generate execution_context_pb2{,_grpc} from the .proto into out_dir; import them."""
    from grpc_tools import protoc  # grpcio-tools

    out_dir.mkdir(parents=True, exist_ok=True)
    include = importlib.resources.files("grpc_tools") / "_proto"
    rc = protoc.main([
        "grpc_tools.protoc",
        f"-I{PROTO.parent}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(PROTO),
    ])
    if rc != 0:
        raise RuntimeError(f"protoc failed with {rc}")
    sys.path.insert(0, str(out_dir))
    try:
        pb2 = importlib.import_module("execution_context_pb2")
        pb2_grpc = importlib.import_module("execution_context_pb2_grpc")
    finally:
        sys.path.remove(str(out_dir))
    return pb2, pb2_grpc


HPKE_INFO = b"stigmer-exec/v1 context"
KEM_ID, KDF_ID, AEAD_ID = 0x0020, 0x0001, 0x0003


def _labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt or bytes(32), b"HPKE-v1" + suite_id + label + ikm, hashlib.sha256).digest()


def _labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled_info = length.to_bytes(2, "big") + b"HPKE-v1" + suite_id + label + info
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + labeled_info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def hpke_open_all(private_key, enc: bytes, ciphertexts: list[bytes], aads: list[bytes],
                  info: bytes = HPKE_INFO) -> list[bytes]:
    """RFC 9180 base mode, one context, messages opened in order (sequence 0, 1, …)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    pk_rm = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    dh = private_key.exchange(X25519PublicKey.from_public_bytes(enc))
    kem_suite = b"KEM" + KEM_ID.to_bytes(2, "big")
    eae_prk = _labeled_extract(kem_suite, b"", b"eae_prk", dh)
    shared_secret = _labeled_expand(kem_suite, eae_prk, b"shared_secret", enc + pk_rm, 32)

    suite = b"HPKE" + KEM_ID.to_bytes(2, "big") + KDF_ID.to_bytes(2, "big") + AEAD_ID.to_bytes(2, "big")
    psk_id_hash = _labeled_extract(suite, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(suite, b"", b"info_hash", info)
    ks_context = b"\x00" + psk_id_hash + info_hash
    secret = _labeled_extract(suite, shared_secret, b"secret", b"")
    key = _labeled_expand(suite, secret, b"key", ks_context, 32)
    base_nonce = _labeled_expand(suite, secret, b"base_nonce", ks_context, 12)
    aead = ChaCha20Poly1305(key)
    out = []
    for seq, (ct, aad) in enumerate(zip(ciphertexts, aads)):
        nonce = bytes(a ^ b for a, b in zip(base_nonce, seq.to_bytes(12, "big")))
        out.append(aead.decrypt(nonce, ct, aad))
    return out


def value_aad(execution_id: str, name: str) -> bytes:
    return b"stigmer-exec/v1\x00" + execution_id.encode() + b"\x00" + name.encode()
