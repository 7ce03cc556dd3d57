"""Real parts on loopback for the tests of the image-config webhook: a private CA, an OCI
distribution registry over HTTPS, images pushed into it, and a stand-in Kubernetes API that
serves pull secrets. Nothing here reaches beyond 127.0.0.1.

- TLS: `make_ca` and `make_cert` (cryptography; P-256, SANs 127.0.0.1 and localhost).
- `Registry`: `docker-registry serve` (CNCF distribution 2.8) on 127.0.0.1 with TLS from a
  private CA, filesystem storage in a temp dir, and optional htpasswd basic auth (bcrypt
  from the system's libcrypt, no pip package) or token (Bearer) auth against a
  `TokenServer`. Its access log counts requests per path (`requests`); `request` talks to
  its API directly.
- `TokenServer`: the Docker registry token protocol (distribution's "Token Authentication
  Specification") over HTTPS: GET /token?service=…&scope=… with Basic credentials or none,
  answered with a JWT (ES256 or RS256, `x5c` or `kid` header) the registry verifies against
  the signing certificate; grants per repository and user; records every request.
- `RegistryTap`: an HTTPS pass-through in front of a registry that records the
  Authorization header of every request (which the registry's access log does not show).
- Images: `push_image` builds an OCI layout with umoci (config through `umoci config`, files
  as one layer through `umoci raw add-layer`) and pushes it with skopeo, as OCI or as Docker
  schema 2; `push_index` PUTs an OCI image index or a Docker manifest list over the API.
- `FakeKubeAPI`: HTTPS, GET /api/v1/namespaces/{ns}/secrets/{name} with the bodies the real
  API server gives (a v1 Secret, or a v1 Status for 401/403/404); records every request.
  `dockerconfigjson` and `pull_secret` make the secret's content.
"""

from __future__ import annotations

import base64
import ctypes
import datetime
import hashlib
import http.client
import http.server
import ipaddress
import io
import json
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tarfile
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Self

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
# What a client that reads image configs sends (as containerd and go-containerregistry do).
ACCEPT_ALL = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST])

BUSYBOX = Path("/bin/busybox")  # busybox-static: rootfs_files={"bin/busybox": BUSYBOX.read_bytes()}
TIMEOUT_S = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd, what: str, timeout: float = TIMEOUT_S) -> str:
    proc = subprocess.run([str(c) for c in cmd], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{what} failed (exit {proc.returncode}): {' '.join(map(str, cmd))}\n"
                             f"{proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode()


# --------------------------------------------------------------------------
# TLS: a private CA and certificates it signs


def make_ca(dir, name: str = "ca") -> tuple[Path, Path]:
    """A throwaway CA: (dir/<name>.pem, dir/<name>.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    d = Path(dir)
    d.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"stigmer-test-{name}-{secrets.token_hex(3)}")])
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _write_pair(d, name, cert, key)


def make_cert(dir, ca: tuple[Path, Path], hosts=("127.0.0.1", "localhost"),
              name: str | None = None) -> tuple[Path, Path]:
    """A server certificate signed by `ca` (make_ca's pair) for `hosts` (IP addresses become
    IP SANs, the rest DNS SANs): (dir/<name>.pem, dir/<name>.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    d = Path(dir)
    d.mkdir(parents=True, exist_ok=True)
    ca_cert = x509.load_pem_x509_certificate(Path(ca[0]).read_bytes())
    ca_key = serialization.load_pem_private_key(Path(ca[1]).read_bytes(), password=None)
    sans = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(hosts[0]))]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return _write_pair(d, name or f"server-{secrets.token_hex(4)}", cert, key)


def _write_pair(d: Path, name: str, cert, key) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization

    cert_path, key_path = d / f"{name}.pem", d / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def client_context(ca) -> ssl.SSLContext:
    """A TLS client context that trusts only `ca` (a PEM path)."""
    return ssl.create_default_context(cafile=str(ca))


def _https_server(cert, key, handler) -> http.server.ThreadingHTTPServer:
    """A ThreadingHTTPServer on 127.0.0.1:<free port> speaking TLS with `cert`/`key`
    (HTTP/1.1 by ALPN), each connection's handshake in its own thread; not yet serving."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def finish_request(self, request, client_address):
            # The TLS handshake happens here, in the connection's thread, not in accept().
            try:
                tls_sock = ctx.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError):
                return
            try:
                self.RequestHandlerClass(tls_sock, client_address, self)
            except (OSError, ssl.SSLError):
                pass
            finally:
                tls_sock.close()

    return Server(("127.0.0.1", 0), handler)


def _serve_in_thread(server) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return thread


class _QuietHandler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1 (keep-alive), no Python version in the Server header, no access log on stderr."""

    protocol_version = "HTTP/1.1"
    sys_version = ""

    def log_message(self, *args):
        pass


class _Service:
    """The lifecycle every stand-in here shares: a working dir `base` (given, or a temp dir
    of its own that `close` removes), `close` (stop, then that removal) and use as a context
    manager (start on entry, close on exit). Subclasses define `start` and `stop`."""

    _owns_base = False

    def _use_base(self, base, prefix: str):
        self._owns_base = base is None
        self.base = Path(tempfile.mkdtemp(prefix=prefix)) if base is None else Path(base)
        self.base.mkdir(parents=True, exist_ok=True)

    def close(self):
        self.stop()
        if self._owns_base:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc):
        self.close()


class _ThreadedHTTPS(_Service):
    """A _Service that is an HTTPS server (`cert`, `key`) on 127.0.0.1:<free port> serving
    in a thread: `start` builds its handler and calls `_serve`; `stop` shuts it down."""

    _server = None
    _thread = None

    def _serve(self, handler) -> int:
        """Serve `handler` over TLS in a thread; sets and returns `port`."""
        self._server = _https_server(self.cert, self.key, handler)
        self.port = self._server.server_address[1]
        self._thread = _serve_in_thread(self._server)
        return self.port

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
            self._server = None


# --------------------------------------------------------------------------
# htpasswd with bcrypt, from libcrypt (libxcrypt: $2y$ is supported; Python 3.11's `crypt`
# module is deprecated and gone in 3.13, so call the library directly)

_libcrypt = None
_libcrypt_lock = threading.Lock()


def bcrypt_hash(password: str, cost: int = 5) -> str:
    """A $2y$ bcrypt hash of `password` (what distribution's htpasswd auth compares with)."""
    global _libcrypt
    with _libcrypt_lock:
        if _libcrypt is None:
            lib = ctypes.CDLL("libcrypt.so.1", use_errno=True)
            lib.crypt_gensalt.restype = ctypes.c_char_p
            lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
            lib.crypt.restype = ctypes.c_char_p
            lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
            _libcrypt = lib
        salt = _libcrypt.crypt_gensalt(b"$2y$", cost, None, 0)
        if not salt:
            raise RuntimeError(f"crypt_gensalt($2y$) failed: errno {ctypes.get_errno()}")
        hashed = _libcrypt.crypt(password.encode(), salt)
    if not hashed or not hashed.startswith(b"$2y$"):
        raise RuntimeError(f"crypt() gave no bcrypt hash: {hashed!r}")
    return hashed.decode()


# --------------------------------------------------------------------------
# the registry

# One access-log line (Combined Log Format, on the registry's stdout).
_ACCESS_RE = re.compile(r'^\S+ \S+ \S+ \[[^\]]*\] "(?P<method>[A-Z]+) (?P<path>\S+) [^"]*" (?P<status>\d{3}) ')


class Registry(_Service):
    """`docker-registry serve` on 127.0.0.1:<free port> over HTTPS, a cert from a private CA,
    storage in a temp dir; with `auth=True` (the default, or "htpasswd") htpasswd basic auth
    for one user; with `auth="token"` token (Bearer) auth against `token_server` (a started
    TokenServer), whose CA it then shares unless `ca` is given.

        with Registry() as reg:
            digest = push_image(reg, "app", "v1", entrypoint=["/bin/app"])
            reg.requests("/v2/app/manifests/") ...

        with TokenServer(users={"alice": "pw"}, readers={"app": {"alice"}}) as ts, \
                Registry(auth="token", token_server=ts) as reg:
            push_image(reg, "app", "v1", ...)  # as ts.admin, with a push token from ts

    Attributes: host ("127.0.0.1:PORT"), ca (the CA's PEM; the registry's cert chains to it),
    cert_dir (a dir holding only ca.crt, for skopeo's --*cert-dir), username and password
    (None without auth; with token auth the token server's admin, who may push), auth_mode
    ("htpasswd", "token" or None), log (its stderr: the application log), access_log (its
    stdout: one Combined Log Format line per request), base (the temp dir)."""

    def __init__(self, base=None, *, auth: bool | str = True, username: str = "puller",
                 password: str | None = None, ca: tuple[Path, Path] | None = None, log_level: str = "info",
                 token_server: "TokenServer | None" = None):
        self._use_base(base, "stigmer-registry-")
        tls = self.base / "tls"
        self.auth_mode = {True: "htpasswd", "htpasswd": "htpasswd", False: None, None: None, "token": "token"}[auth]
        self.token_server = token_server
        if self.auth_mode == "token":
            if token_server is None or token_server.url is None:
                raise ValueError('auth="token" needs a started token_server')
            ca = ca or token_server.ca_pair
            username, password = token_server.admin, token_server.admin_password
        self.ca_pair = ca or make_ca(tls)
        self.ca = Path(self.ca_pair[0])
        self.cert, self.key = make_cert(tls, self.ca_pair, name="registry")
        self.cert_dir = self.base / "certs.d"
        self.cert_dir.mkdir(exist_ok=True)
        shutil.copyfile(self.ca, self.cert_dir / "ca.crt")
        self.username = username if self.auth_mode else None
        self.password = (password or "pw-" + secrets.token_hex(8)) if self.auth_mode else None
        self.log_level = log_level
        self.log = self.base / "registry.log"
        self.access_log = self.base / "access.log"
        self.config = self.base / "config.yml"
        self.proc = None
        self.port = None
        self.host = None
        self.startup_s = None

    # -- lifecycle

    def start(self, timeout: float = 20.0) -> "Registry":
        t0 = time.monotonic()
        last_error = None
        for _ in range(3):  # a free port may be taken before the registry binds it
            self.port = _free_port()
            self.host = f"127.0.0.1:{self.port}"
            self._write_config()
            with open(self.access_log, "ab") as out, open(self.log, "ab") as err:
                self.proc = subprocess.Popen(["docker-registry", "serve", str(self.config)], stdin=subprocess.DEVNULL,
                                             stdout=out, stderr=err, start_new_session=True)
            try:
                self._wait_ready(timeout)
                self.startup_s = time.monotonic() - t0
                return self
            except AssertionError as e:
                last_error = e
                self.stop()
                if "address already in use" not in self.log.read_text(errors="replace"):
                    raise
        raise last_error

    def _write_config(self):
        storage = self.base / "storage"
        storage.mkdir(exist_ok=True)
        auth = ""
        if self.auth_mode == "htpasswd":
            htpasswd = self.base / "htpasswd"
            htpasswd.write_text(f"{self.username}:{bcrypt_hash(self.password)}\n")
            auth = f"auth:\n  htpasswd:\n    realm: stigmer-test-registry\n    path: {json.dumps(str(htpasswd))}\n"
        elif self.auth_mode == "token":
            # distribution 2.8 verifies a token's x5c chain against rootcertbundle (or looks
            # its kid up among the bundle's keys), then iss, aud (== service), exp and nbf.
            ts = self.token_server
            auth = ("auth:\n  token:\n"
                    f"    realm: {json.dumps(ts.realm)}\n    service: {json.dumps(ts.service)}\n"
                    f"    issuer: {json.dumps(ts.issuer)}\n    rootcertbundle: {json.dumps(str(ts.signing_cert))}\n"
                    "    autoredirect: false\n")
        # JSON strings are valid YAML scalars, which quotes paths safely.
        self.config.write_text(
            "version: 0.1\n"
            f"log:\n  level: {self.log_level}\n  formatter: text\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {json.dumps(str(storage))}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n  secret: {secrets.token_hex(16)}\n"
            f"  tls:\n    certificate: {json.dumps(str(self.cert))}\n    key: {json.dumps(str(self.key))}\n"
            + auth
        )

    def _wait_ready(self, timeout: float):
        expected = 401 if self.auth_mode else 200
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"docker-registry exited {self.proc.returncode} before answering:\n"
                                     f"{self.log.read_text(errors='replace')[-3000:]}")
            try:
                status, _, _ = self.request("GET", "/v2/", auth=False, timeout=2)
                if status == expected:
                    return
                last = f"status {status}"
            except (OSError, http.client.HTTPException) as e:
                last = repr(e)
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout} s waiting for GET https://{self.host}/v2/ to answer "
                             f"{expected} (last: {last}):\n{self.log.read_text(errors='replace')[-3000:]}")

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the registry (SIGKILL after `timeout` s); its files stay (see close)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=TIMEOUT_S)
        return self.proc.returncode

    # -- talking to it

    @property
    def creds(self) -> str | None:
        """"user:password" (skopeo's --creds), None without auth."""
        return None if self.username is None else f"{self.username}:{self.password}"

    def basic_auth(self, username: str | None = None, password: str | None = None) -> str:
        return "Basic " + base64.b64encode(
            f"{username or self.username}:{password or self.password}".encode()).decode()

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None, *,
                auth: bool = True, timeout: float = 15) -> tuple[int, dict, bytes]:
        """One request to the registry's API: (status, headers with lower-case names, body).
        With `auth` (and a registry with auth) it sends basic credentials, or with token auth
        a token the token server mints in-process (not over HTTP: its request log holds only
        what others asked) for the admin, with pull, push and delete on the path's repository."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=client_context(self.ca), timeout=timeout)
        try:
            hdrs = dict(headers or {})
            if auth and self.auth_mode == "token":
                m = re.match(r"^/v2/(.+)/(manifests|blobs|tags)/", path)
                access = [{"type": "repository", "name": m[1], "actions": ["pull", "push", "delete"]}] if m else []
                hdrs.setdefault("Authorization", "Bearer " + self.token_server.mint(self.username, access))
            elif auth and self.username is not None:
                hdrs.setdefault("Authorization", self.basic_auth())
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def manifest(self, repo: str, ref: str, accept: str = ACCEPT_ALL) -> tuple[str, bytes]:
        """(media type, raw bytes) of the manifest or index `repo`:`ref` (a tag or a digest)."""
        status, headers, body = self.request("GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": accept})
        if status != 200:
            raise AssertionError(f"GET manifest {repo}:{ref} gave {status}: {body[:500]!r}")
        return headers.get("content-type", ""), body

    def describe(self, repo: str, ref: str) -> tuple[str, str, int]:
        """(media type, digest, size) of `repo`:`ref`, from a HEAD."""
        status, headers, _ = self.request("HEAD", f"/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT_ALL})
        if status != 200:
            raise AssertionError(f"HEAD manifest {repo}:{ref} gave {status}")
        return headers["content-type"], headers["docker-content-digest"], int(headers["content-length"])

    def delete(self, repo: str, digest: str) -> int:
        """DELETE a manifest by digest (untags every tag naming it); the status."""
        status, _, _ = self.request("DELETE", f"/v2/{repo}/manifests/{digest}")
        return status

    # -- what it was asked

    def access_entries(self) -> list[dict]:
        """Every request in the access log so far: {method, path, status}. A line is written
        when the response is done, so a client may see the answer a moment before its line."""
        entries = []
        try:
            text = self.access_log.read_text(errors="replace")
        except FileNotFoundError:
            return entries
        for line in text.splitlines():
            m = _ACCESS_RE.match(line)
            if m:
                entries.append({"method": m["method"], "path": m["path"], "status": int(m["status"])})
        return entries

    def requests(self, path_substring: str = "", method: str | None = None) -> int:
        """How many requests (any status, 401s included) had `path_substring` in their path,
        optionally only with `method`."""
        return sum(1 for e in self.access_entries()
                   if path_substring in e["path"] and (method is None or e["method"] == method))


# --------------------------------------------------------------------------
# token (Bearer) auth: a token server, and a tap that shows what the registry is sent


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_key_id(public_key) -> str:
    """The key ID docker/libtrust gives a public key, which distribution 2.8 matches a
    token's `kid` against: SHA-256 of its DER SubjectPublicKeyInfo, first 240 bits, base32
    without padding, in groups of 4 joined by ':'."""
    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i:i + 4] for i in range(0, len(b32), 4))


def parse_scope(scope: str) -> tuple[str, str, list[str]] | None:
    """("repository", name, actions) of "repository:NAME:pull,push" (a name may hold a ':'
    of a host:port, so the type is the first field and the actions the last); None when it
    has fewer than three fields."""
    parts = scope.split(":")
    if len(parts) < 3:
        return None
    return parts[0], ":".join(parts[1:-1]), [a for a in parts[-1].split(",") if a]


def decode_jwt(token: str) -> tuple[dict, dict]:
    """(header, claims) of a compact JWT, unverified (the registry verifies)."""
    def part(text: str) -> dict:
        return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))

    header, claims, _ = token.split(".")
    return part(header), part(claims)


class TokenServer(_ThreadedHTTPS):
    """A Docker registry token server (distribution's "Token Authentication Specification")
    on HTTPS 127.0.0.1:<free port>, a cert from the private CA (its own, or `ca`), in a thread:

        GET /token?service=SERVICE&scope=repository:NAME:ACTIONS[&scope=…][&account=…]

    - Authorization: Basic USER:PASSWORD must match `users` (or `admin`), else 401 (a
      wrong password, an unknown user, another scheme); none is anonymous.
    - `service` must be `service` (400 otherwise, as a misdirected client deserves).
    - Grants, per scope, the actions asked for that the caller may have: `admin` pull, push
      and delete everywhere (the fixture pushes as it); a user in `readers[NAME]` pull;
      anyone, anonymous included, pull on a repository in `public`. Less than asked is not
      an error (the spec): the token's `access` just lacks it, and the registry answers 401
      insufficient_scope. An anonymous caller that gets nothing is answered per
      `anonymous_refusal`: "empty" (200 with a token granting nothing: distribution's and
      Docker Hub's way) or "401". Both attributes, `users`, `readers` and `public` may be
      changed while it runs.
    - The answer: {"token", "access_token", "expires_in", "issued_at"}; `token_field`
      "token" or "access_token" leaves the other out (both are in the wild).
    - The token: a JWT, `alg` ES256 (P-256, signature r||s) or RS256, header with `x5c` (the
      signing certificate, base64 DER) or, with header_key="kid", the libtrust key ID;
      claims iss, sub (the user, "" when anonymous), aud (the service, a string: 2.8 takes no
      list), exp (+`ttl_s`), nbf, iat, jti, access. The signing certificate is self-signed
      (`signing_cert`, the registry's rootcertbundle).

    Attributes: url, realm (url + "/token"), service, issuer, ca / ca_pair, signing_cert,
    admin and admin_password, requests (one dict per request: method, path, query (name →
    [values]), scopes, service, authorization (a header was sent), scheme ("basic",
    "bearer", … or None), user (the Basic user name, right or wrong), authenticated, status,
    granted (the access list), token), issued ({token: claims} of every token minted, over
    HTTP or by `mint`)."""

    def __init__(self, base=None, *, users: dict[str, str] | None = None, readers: dict | None = None,
                 public=(), ca: tuple[Path, Path] | None = None, admin: str = "pusher",
                 service: str = "stigmer-test-registry", issuer: str = "stigmer-test-issuer",
                 alg: str = "ES256", header_key: str = "x5c", token_field: str = "both",
                 anonymous_refusal: str = "empty", ttl_s: int = 300):
        assert alg in ("ES256", "RS256") and header_key in ("x5c", "kid")
        assert token_field in ("both", "token", "access_token") and anonymous_refusal in ("empty", "401")
        self._use_base(base, "stigmer-tokens-")
        tls = self.base / "token-tls"
        self.ca_pair = ca or make_ca(tls)
        self.ca = Path(self.ca_pair[0])
        self.cert, self.key = make_cert(tls, self.ca_pair, name="token-server")
        self.service, self.issuer = service, issuer
        self.admin, self.admin_password = admin, "admin-" + secrets.token_hex(8)
        self.users = dict(users or {})
        self.readers = {repo: set(names) for repo, names in (readers or {}).items()}
        self.public = set(public)
        self.alg, self.header_key, self.token_field = alg, header_key, token_field
        self.anonymous_refusal = anonymous_refusal
        self.ttl_s = ttl_s
        self.requests: list[dict] = []
        self.issued: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._signing_key, self.signing_cert = self._make_signing_pair(tls)
        self.url = None
        self.realm = None
        self.port = None

    def _make_signing_pair(self, d: Path):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1()) if self.alg == "ES256" else \
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.datetime.now(datetime.timezone.utc)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"stigmer-test-token-signer-{secrets.token_hex(3)}")])
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256())
        )
        self._signing_der = cert.public_bytes(serialization.Encoding.DER)
        cert_path, _ = _write_pair(d, "token-signer", cert, key)
        return key, cert_path

    # -- tokens

    def mint(self, subject: str, access: list[dict]) -> str:
        """A signed token for `subject` ("" for anonymous) granting `access`
        ([{"type": "repository", "name": …, "actions": […]}])."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, padding
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        header = {"typ": "JWT", "alg": self.alg}
        if self.header_key == "x5c":
            header["x5c"] = [base64.b64encode(self._signing_der).decode()]
        else:
            header["kid"] = libtrust_key_id(self._signing_key.public_key())
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "exp": now + self.ttl_s,
                  "nbf": now - 1, "iat": now, "jti": secrets.token_hex(16), "access": access}
        signing_input = (_b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                         _b64url(json.dumps(claims, separators=(",", ":")).encode())).encode()
        if self.alg == "ES256":
            r, s = decode_dss_signature(self._signing_key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")  # JWS: raw r||s, not DER
        else:
            signature = self._signing_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        token = signing_input.decode() + "." + _b64url(signature)
        with self._lock:
            self.issued[token] = claims
        return token

    def allowed(self, user: str | None, name: str) -> set[str]:
        """The actions `user` (None: anonymous) may have on repository `name`."""
        if user is not None and user == self.admin:
            return {"pull", "push", "delete"}
        if name in self.public or (user is not None and user in self.readers.get(name, ())):
            return {"pull"}
        return set()

    def _answer(self, method: str, raw_path: str, authorization: str | None) -> tuple[int, dict, dict]:
        """(status, extra headers, JSON body) for one request, recorded."""
        from urllib.parse import parse_qs, urlsplit

        target = urlsplit(raw_path)
        query = parse_qs(target.query, keep_blank_values=True)
        scopes = [part for value in query.get("scope", []) for part in value.split(" ") if part]
        record = {"method": method, "path": raw_path, "query": query, "scopes": scopes,
                  "service": (query.get("service") or [None])[0], "authorization": authorization is not None,
                  "scheme": None, "user": None, "authenticated": False, "status": None, "granted": None, "token": None}
        with self._lock:
            self.requests.append(record)

        def done(status, body, headers=None):
            record["status"] = status
            return status, headers or {}, body

        def unauthorized(detail):
            return done(401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required",
                                          "detail": detail}]},
                        {"WWW-Authenticate": 'Basic realm="stigmer-test-token-server"'})

        if target.path != "/token":
            return done(404, {"errors": [{"code": "NOT_FOUND", "message": "not found"}]})
        if method != "GET":
            return done(405, {"errors": [{"code": "UNSUPPORTED", "message": "GET only"}]})
        user = None
        if authorization is not None:
            scheme, _, credentials = authorization.partition(" ")
            record["scheme"] = scheme.lower()
            if scheme.lower() != "basic":
                return unauthorized(f"unsupported scheme {scheme}")
            try:
                name, sep, password = base64.b64decode(credentials, validate=True).decode().partition(":")
            except ValueError:
                return unauthorized("malformed basic credentials")
            record["user"] = name
            known = dict(self.users, **{self.admin: self.admin_password})
            if not sep or name not in known or not secrets.compare_digest(known[name], password):
                return unauthorized("incorrect username or password")
            record["authenticated"] = True
            user = name
        if record["service"] != self.service:
            return done(400, {"errors": [{"code": "DENIED", "message": f"unknown service {record['service']!r}"}]})
        granted = []
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None or parsed[0] != "repository":
                continue
            _, name, actions = parsed
            have = self.allowed(user, name)
            give = [a for a in actions if a in have] if "*" not in actions else sorted(have)
            if give:
                granted.append({"type": "repository", "name": name, "actions": give})
        record["granted"] = granted
        if user is None and scopes and not granted and self.anonymous_refusal == "401":
            return unauthorized("anonymous access is not allowed")
        token = self.mint(user or "", granted)
        record["token"] = token
        body = {"expires_in": self.ttl_s,
                "issued_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        if self.token_field in ("both", "token"):
            body["token"] = token
        if self.token_field in ("both", "access_token"):
            body["access_token"] = token
        return done(200, body)

    # -- lifecycle

    def start(self) -> "TokenServer":
        ts = self

        class Handler(_QuietHandler):
            server_version = "stigmer-test-token-server"

            def do_GET(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                status, headers, doc = ts._answer(self.command, self.path, self.headers.get("Authorization"))
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

        self.url = f"https://127.0.0.1:{self._serve(Handler)}"
        self.realm = self.url + "/token"
        return self


_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
               "proxy-authenticate", "content-length", "host"}


class RegistryTap(_ThreadedHTTPS):
    """HTTPS on 127.0.0.1:<free port> (a cert from the registry's CA) passing every request
    on to `registry` and its answer back, recording each: {method, path, authorization
    (the header as sent, or None), status}. Point a client at `host` to see which
    credentials reach the registry itself; pushes go to the registry directly."""

    def __init__(self, registry: Registry):
        self.registry = registry
        self.cert, self.key = make_cert(registry.base / "tls", registry.ca_pair, name=f"tap-{secrets.token_hex(3)}")
        self.requests: list[dict] = []
        self.host = None
        self.port = None

    def start(self) -> "RegistryTap":
        tap = self

        class Handler(_QuietHandler):

            def do_GET(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                record = {"method": self.command, "path": self.path, "authorization": self.headers.get("Authorization"),
                          "status": None}
                tap.requests.append(record)
                reg = tap.registry
                conn = http.client.HTTPSConnection("127.0.0.1", reg.port, context=client_context(reg.ca), timeout=30)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    record["status"] = resp.status
                    self.send_response(resp.status)
                    for k, v in resp.getheaders():
                        if k.lower() not in _HOP_BY_HOP:
                            self.send_header(k, v)
                    self.send_header("Content-Length", resp.getheader("Content-Length") or str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        self.host = f"127.0.0.1:{self._serve(Handler)}"
        return self


# --------------------------------------------------------------------------
# images


def _layer_tar(files: dict[str, bytes]) -> bytes:
    """An uncompressed tar of `files` (paths relative to /) with their parent directories;
    a file is executable when it starts like an ELF binary or a script."""
    buf = io.BytesIO()
    dirs = set()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            rel = name.strip("/")
            parts = rel.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d + "/")
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
                    tar.addfile(info)
            data = files[name]
            info = tarfile.TarInfo(rel)
            info.size, info.mtime = len(data), 0
            info.mode = 0o755 if data[:4] == b"\x7fELF" or data[:2] == b"#!" else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _layout_entry(layout: Path, tag: str) -> dict:
    index = json.loads((layout / "index.json").read_text())
    for m in index["manifests"]:
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return m
    raise AssertionError(f"tag {tag} not in {layout}/index.json")


def _blob(layout: Path, digest: str) -> Path:
    algo, hex_ = digest.split(":", 1)
    return layout / "blobs" / algo / hex_


def _put_blob(layout: Path, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _blob(layout, digest).write_bytes(data)
    return digest


def _patch_config(layout: Path, tag: str, inner: dict, top: dict | None = None):
    """Set keys of the image config's "config" object (`inner`) and of the config itself
    (`top`, e.g. "variant") verbatim, a None value as JSON null: for what umoci cannot
    write, e.g. "Entrypoint": [] or null. The manifest and index.json follow."""
    entry = _layout_entry(layout, tag)
    manifest = json.loads(_blob(layout, entry["digest"]).read_text())
    config = json.loads(_blob(layout, manifest["config"]["digest"]).read_text())
    config.setdefault("config", {}).update(inner)
    config.update(top or {})
    config_bytes = json.dumps(config, separators=(",", ":")).encode()
    manifest["config"]["digest"] = _put_blob(layout, config_bytes)
    manifest["config"]["size"] = len(config_bytes)
    manifest_bytes = json.dumps(manifest, separators=(",", ":")).encode()
    index = json.loads((layout / "index.json").read_text())
    for m in index["manifests"]:
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            m["digest"], m["size"] = _put_blob(layout, manifest_bytes), len(manifest_bytes)
    (layout / "index.json").write_text(json.dumps(index, separators=(",", ":")))


def build_layout(layout, tag: str, *, entrypoint=None, cmd=None, env=(), workdir=None,
                 rootfs_files: dict[str, bytes] | None = None, arch: str = "amd64", os_: str = "linux",
                 variant: str | None = None, user: str | None = None, labels: dict | None = None,
                 config_patch: dict | None = None) -> Path:
    """An OCI image layout at `layout` (created if missing) with `tag`, built by umoci.
    entrypoint/cmd: None leaves the key out of the config; a non-empty list sets it; [] writes
    an explicitly empty list (umoci has no way to, so the config is patched afterwards).
    config_patch sets further keys of the config's "config" object verbatim (None → null).
    One layer: `rootfs_files`, or by default a single small file (/etc/stigmer-test-image);
    rootfs_files={} gives no layer at all. The layer's tar is written here and added with
    `umoci raw add-layer`: umoci 0.4.7's `insert` writes layers whose tar stream lacks its
    end (GNU tar: "Unexpected EOF in archive"; umoci issue #436)."""
    layout = Path(layout)
    if not (layout / "index.json").exists():
        _run(["umoci", "init", "--layout", layout], "umoci init")
    image = f"{layout}:{tag}"
    _run(["umoci", "new", "--image", image], "umoci new")

    files = rootfs_files if rootfs_files is not None else {"etc/stigmer-test-image": f"{tag} {arch}\n".encode()}
    if files:
        tar_path = layout.parent / f".layer-{secrets.token_hex(4)}.tar"
        tar_path.write_bytes(_layer_tar(files))
        try:
            _run(["umoci", "raw", "add-layer", "--image", image, tar_path], "umoci raw add-layer")
        finally:
            tar_path.unlink()

    args = ["umoci", "config", "--image", image, "--architecture", arch, "--os", os_]
    for item in entrypoint or ():
        args += ["--config.entrypoint", item]
    for item in cmd or ():
        args += ["--config.cmd", item]
    for item in env:
        args += ["--config.env", item]
    if workdir is not None:
        args += ["--config.workingdir", workdir]
    if user is not None:
        args += ["--config.user", user]
    for k, v in (labels or {}).items():
        args += ["--config.label", f"{k}={v}"]
    _run(args, "umoci config")

    patch = dict(config_patch or {})
    if entrypoint is not None and len(entrypoint) == 0:
        patch.setdefault("Entrypoint", [])
    if cmd is not None and len(cmd) == 0:
        patch.setdefault("Cmd", [])
    if patch or variant is not None:
        _patch_config(layout, tag, patch, {"variant": variant} if variant is not None else None)
    return layout


def skopeo_creds(registry: Registry, side: str) -> list[str]:
    """skopeo flags for `registry` on `side` ("src", "dest", or "" for inspect)."""
    prefix = f"--{side}-" if side else "--"
    flags = [f"{prefix}cert-dir", str(registry.cert_dir), f"{prefix}tls-verify=true"]
    flags += [f"{prefix}creds", registry.creds] if registry.creds else [f"{prefix}no-creds"]
    return flags


def push_image(registry: Registry, repo: str, tag: str, *, entrypoint=None, cmd=None, env=(), workdir=None,
               rootfs_files: dict[str, bytes] | None = None, arch: str = "amd64", format: str = "oci",
               **config) -> str:
    """Build an image (see build_layout; `config` passes on os_, variant, user, labels,
    config_patch) and push it to `registry` as `repo`:`tag` with skopeo, as an OCI manifest
    (format="oci") or a Docker schema 2 one (format="v2s2"). Returns the manifest digest
    ("sha256:…")."""
    with tempfile.TemporaryDirectory(prefix="stigmer-image-") as tmp:
        layout = Path(tmp) / "layout"
        build_layout(layout, tag, entrypoint=entrypoint, cmd=cmd, env=env, workdir=workdir,
                     rootfs_files=rootfs_files, arch=arch, **config)
        digestfile = Path(tmp) / "digest"
        _run(["skopeo", "--insecure-policy", "copy", "--quiet", "--format", format, "--digestfile", digestfile,
              *skopeo_creds(registry, "dest"), f"oci:{layout}:{tag}", f"docker://{registry.host}/{repo}:{tag}"],
             f"skopeo copy to {registry.host}/{repo}:{tag}", timeout=120)
        return digestfile.read_text().strip()


def push_index(registry: Registry, repo: str, tag: str, manifests, *, media_type: str = OCI_INDEX,
               annotations: dict | None = None) -> str:
    """PUT an image index (OCI_INDEX) or a Docker manifest list (DOCKER_LIST) as `repo`:`tag`.
    `manifests`: (digest, size, arch, os) or (digest, size, arch, os, variant) per entry, each
    already pushed to `repo` (the registry checks); a size of None is looked up, and so is
    every entry's media type. Returns the index's digest."""
    entries = []
    for item in manifests:
        digest, size, arch, os_ = item[:4]
        variant = item[4] if len(item) > 4 else None
        child_type, child_digest, child_size = registry.describe(repo, digest)
        assert child_digest == digest, (child_digest, digest)
        platform = {"architecture": arch, "os": os_}
        if variant:
            platform["variant"] = variant
        entries.append({"mediaType": child_type, "digest": digest, "size": child_size if size is None else size,
                        "platform": platform})
    doc = {"schemaVersion": 2, "mediaType": media_type, "manifests": entries}
    if annotations:
        doc["annotations"] = annotations
    body = json.dumps(doc, indent=3).encode()
    status, headers, resp = registry.request("PUT", f"/v2/{repo}/manifests/{tag}", body=body,
                                             headers={"Content-Type": media_type})
    if status != 201:
        raise AssertionError(f"PUT index {repo}:{tag} gave {status}: {resp[:1000]!r}")
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    assert headers.get("docker-content-digest") == digest, (headers.get("docker-content-digest"), digest)
    return digest


def image_config(registry: Registry, repo: str, ref: str) -> dict:
    """The image config `repo`:`ref` names, through skopeo (an index resolves to linux/amd64)."""
    out = _run(["skopeo", "--override-arch", "amd64", "--override-os", "linux", "inspect", "--config",
                *skopeo_creds(registry, ""), f"docker://{registry.host}/{repo}{'@' if ':' in ref else ':'}{ref}"],
               "skopeo inspect --config")
    return json.loads(out)


# --------------------------------------------------------------------------
# a stand-in Kubernetes API server for pull secrets


def dockerconfigjson(host: str, username: str, password: str) -> dict:
    """The content of a kubernetes.io/dockerconfigjson secret's .dockerconfigjson for one
    registry (as `kubectl create secret docker-registry` writes it)."""
    return {"auths": {host: {"username": username, "password": password,
                             "auth": base64.b64encode(f"{username}:{password}".encode()).decode()}}}


def pull_secret(config: dict, *, legacy: bool = False) -> dict:
    """A FakeKubeAPI secret value holding `config` (dockerconfigjson's shape): type
    kubernetes.io/dockerconfigjson, or with `legacy` kubernetes.io/dockercfg (whose
    .dockercfg is the bare host map, without "auths")."""
    if legacy:
        content = config.get("auths", config)
        return {"type": "kubernetes.io/dockercfg",
                "data": {".dockercfg": base64.b64encode(json.dumps(content).encode()).decode()}}
    return {"type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()}}


def _status(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    doc = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
           "reason": reason}
    if details is not None:
        doc["details"] = details
    doc["code"] = code
    return doc


_SECRET_PATH = re.compile(r"^/api/v1/namespaces/(?P<ns>[a-z0-9]([-a-z0-9]*[a-z0-9])?)/secrets/(?P<name>[^/?]+)$")


class FakeKubeAPI(_ThreadedHTTPS):
    """HTTPS on 127.0.0.1:<free port> with a cert from its own CA (or `ca`), serving
    GET /api/v1/namespaces/{ns}/secrets/{name} from `secrets`:
    {(ns, name): {"type": ..., "data": {key: base64}}} (see pull_secret).

    - the answer is a v1 Secret as the API server writes it (kind, apiVersion, metadata with
      name, namespace, uid, resourceVersion, creationTimestamp and managedFields, data, type);
    - 401 Status unless "Authorization: Bearer <token>" carries `token`;
    - 403 Status for a namespace in `forbidden` (as RBAC denies a service account);
    - 404 Status NotFound for a secret not in `secrets`, and for any other path.
    `secrets` and `forbidden` may be changed while it runs. Attributes: url, ca, token,
    token_file (the token, as a projected service-account token file holds it), requests
    (one {method, path, authorization (header present), authorized (right token)} per request)."""

    def __init__(self, base=None, secrets_: dict | None = None, *, token: str | None = None,
                 forbidden=(), ca: tuple[Path, Path] | None = None, service_account: str = "system:serviceaccount:stigmer:webhook"):
        self._use_base(base, "stigmer-kubeapi-")
        tls = self.base / "kube-tls"
        self.ca_pair = ca or make_ca(tls, name="kube-ca")
        self.ca = Path(self.ca_pair[0])
        self.cert, self.key = make_cert(tls, self.ca_pair, name="kube-apiserver")
        self.secrets = dict(secrets_ or {})
        self.forbidden = set(forbidden)
        self.token = token or "eyJhbGciOiJSUzI1NiJ9.fake-sa-token." + secrets.token_urlsafe(24)
        self.token_file = self.base / "token"
        self.token_file.write_text(self.token)  # projected tokens have no trailing newline
        self.service_account = service_account
        self.requests: list[dict] = []
        self._created = {}
        self.url = None
        self.port = None

    def start(self) -> "FakeKubeAPI":
        api = self

        class Handler(_QuietHandler):
            server_version = "fake-kube-apiserver"

            def _send(self, code: int, doc: dict):
                body = json.dumps(doc, separators=(",", ":")).encode() + b"\n"  # as the API server writes it
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Audit-Id", str(uuid.uuid4()))
                self.send_header("Cache-Control", "no-cache, private")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_GET(self):
                code, doc = api._answer(self.command, self.path, self.headers.get("Authorization"))
                self._send(code, doc)

            do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

        self.url = f"https://127.0.0.1:{self._serve(Handler)}"
        return self

    def _answer(self, method: str, raw_path: str, authorization: str | None) -> tuple[int, dict]:
        path = raw_path.split("?", 1)[0]
        authorized = authorization == f"Bearer {self.token}"
        self.requests.append({"method": method, "path": raw_path, "authorization": authorization is not None,
                              "authorized": authorized})
        if not authorized:
            return 401, _status(401, "Unauthorized", "Unauthorized")
        m = _SECRET_PATH.match(path)
        if method != "GET" or not m:
            if m:
                return 405, _status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource",
                                    {"name": m["name"], "kind": "secrets"})
            return 404, _status(404, "NotFound", "the server could not find the requested resource",
                                {"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]})
        ns, name = m["ns"], m["name"]
        if ns in self.forbidden:
            return 403, _status(403, "Forbidden",
                                f'secrets "{name}" is forbidden: User "{self.service_account}" cannot get resource '
                                f'"secrets" in API group "" in the namespace "{ns}"',
                                {"name": name, "kind": "secrets"})
        secret = self.secrets.get((ns, name))
        if secret is None:
            return 404, _status(404, "NotFound", f'secrets "{name}" not found', {"name": name, "kind": "secrets"})
        return 200, self._secret_doc(ns, name, secret)

    def _secret_doc(self, ns: str, name: str, secret: dict) -> dict:
        uid, version, created = self._created.setdefault(
            (ns, name), (str(uuid.uuid4()), str(100000 + len(self._created) * 7 + secrets.randbelow(7)),
                         datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")))
        data = secret.get("data", {})
        return {
            "kind": "Secret",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "namespace": ns,
                "uid": uid,
                "resourceVersion": version,
                "creationTimestamp": created,
                "managedFields": [{
                    "manager": "kubectl-create",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": created,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:data": {f"f:{k}": {} for k in data}, "f:type": {}},
                }],
            },
            "data": data,
            "type": secret.get("type", "Opaque"),
        }
