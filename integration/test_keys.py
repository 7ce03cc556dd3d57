"""Black-box tests of `stigmer-exec key init|seal|open`.

Interoperability is checked against Python's `cryptography` AES-GCM, using
the documented v1 format:

    v1:<key-id>:<base64(nonce(12) || ciphertext || tag(16))>
    AD     = b"stigmer-exec/v1\\0" + scope + b"\\0" + name
    key-id = hex(SHA-256(b"stigmer-exec/key-id\\0" + key)[:8])

and the legacy format: bare base64(nonce || ciphertext || tag), no AD.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import sqlite3
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from helpers import KEY_FILE, describe, key_init, mode_of, new_canary, ok, one_line_error, run

SCOPE = "environment:github-prod"
NAME = "GITHUB_TOKEN"

V1_RE = re.compile(rb"\Av1:([0-9a-f]{16}):([A-Za-z0-9+/]+={0,2})\n\Z")


# --------------------------------------------------------------------------
# helpers


def associated_data(scope: str, name: str) -> bytes:
    return b"stigmer-exec/v1" + b"\0" + scope.encode() + b"\0" + name.encode()


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"stigmer-exec/key-id" + b"\0" + key).digest()[:8].hex()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def new_key() -> bytes:
    return os.urandom(32)


def py_seal_v1(key: bytes, scope: str, name: str, plaintext: bytes) -> bytes:
    nonce = os.urandom(12)
    sealed = nonce + AESGCM(key).encrypt(nonce, plaintext, associated_data(scope, name))
    return f"v1:{key_id(key)}:{b64(sealed)}".encode()


def py_seal_legacy(key: bytes, plaintext: bytes) -> bytes:
    nonce = os.urandom(12)
    return b64(nonce + AESGCM(key).encrypt(nonce, plaintext, None)).encode()


def py_open(key: bytes, payload: bytes, ad: bytes | None) -> bytes:
    return AESGCM(key).decrypt(payload[:12], payload[12:], ad)


def parse_v1(stdout: bytes) -> tuple[str, bytes]:
    """(key-id, decoded payload) of one `key seal` output line."""
    m = V1_RE.match(stdout)
    assert m, f"not v1:<16 hex>:<base64>\\n: {stdout!r}"
    payload = base64.b64decode(m.group(2), validate=True)
    assert len(payload) >= 12 + 16, f"payload too short for nonce+tag: {len(payload)}"
    return m.group(1).decode(), payload


def init_raw_key(home) -> bytes:
    """`key init` in `home`; return the raw 32-byte key."""
    key = base64.b64decode(key_init(home), validate=True)
    assert len(key) == 32, len(key)
    return key


def write_key_file(home, key: bytes, mode: int) -> None:
    home.mkdir(mode=0o700, exist_ok=True)
    os.chmod(home, 0o700)
    path = home / KEY_FILE
    path.write_bytes((b64(key) + "\n").encode())
    os.chmod(path, mode)


def seal(home, plaintext: bytes, scope=SCOPE, name=NAME, env_extra=None, extra_args=(), fd_map=None):
    return run(
        ["key", "seal", *extra_args, "--scope", scope, "--name", name],
        home,
        input=plaintext,
        env_extra=env_extra,
        fd_map=fd_map,
    )


def open_(home, sealed: bytes, scope=SCOPE, name=NAME, env_extra=None):
    return run(["key", "open", "--scope", scope, "--name", name], home, input=sealed, env_extra=env_extra)


def seal_ok(home, plaintext: bytes, **kw) -> bytes:
    proc = seal(home, plaintext, **kw)
    assert proc.returncode == 0, describe(proc)
    return proc.stdout


# --------------------------------------------------------------------------
# key init


def test_init_creates_private_key_file(home):
    proc = run(["key", "init"], home)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == b"", describe(proc)

    path = home / KEY_FILE
    assert path.is_file()
    assert mode_of(home) == 0o700, oct(mode_of(home))
    assert mode_of(path) == 0o600, oct(mode_of(path))

    text = path.read_bytes()
    assert len(text) == 45 and text.endswith(b"\n"), text
    assert re.fullmatch(rb"[A-Za-z0-9+/]{43}=\n", text), text
    assert len(base64.b64decode(text[:44], validate=True)) == 32


def test_init_twice_refuses_to_overwrite(home):
    init_raw_key(home)
    path = home / KEY_FILE
    before = path.read_bytes()
    before_stat = os.stat(path)

    proc = run(["key", "init"], home)
    one_line_error(proc, 77, "already exists")
    assert path.read_bytes() == before
    after_stat = os.stat(path)
    assert (after_stat.st_ino, after_stat.st_mtime_ns) == (before_stat.st_ino, before_stat.st_mtime_ns)
    assert mode_of(path) == 0o600


def test_init_keys_are_random(tmp_path, bin_path):
    assert init_raw_key(tmp_path / "a") != init_raw_key(tmp_path / "b")


# --------------------------------------------------------------------------
# seal / open round trips


@pytest.mark.parametrize(
    "stdin, expected",
    [
        (b"plain", b"plain"),
        (b"plain\n", b"plain"),  # one trailing newline is dropped
        (b"plain\n\n", b"plain\n"),  # ... only one
        ("multi\nline \u00e9\u2603 \U0001f511".encode(), "multi\nline \u00e9\u2603 \U0001f511".encode()),
        (b"", b""),
    ],
    ids=["no-newline", "one-newline", "two-newlines", "utf8-multiline", "empty"],
)
def test_seal_then_open_round_trips(home, stdin, expected):
    key = init_raw_key(home)
    out = seal_ok(home, stdin)
    kid, _ = parse_v1(out)
    assert kid == key_id(key)

    proc = open_(home, out)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == expected  # exact bytes, no newline added


def test_seal_uses_a_fresh_nonce_each_time(home):
    init_raw_key(home)
    a = seal_ok(home, b"same")
    b = seal_ok(home, b"same")
    assert a != b
    assert parse_v1(a)[1][:12] != parse_v1(b)[1][:12]


def test_open_accepts_value_without_trailing_newline(home):
    init_raw_key(home)
    out = seal_ok(home, b"value")
    proc = open_(home, out.rstrip(b"\n"))
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == b"value"


# --------------------------------------------------------------------------
# interop with Python cryptography: v1


def test_binary_seal_opens_in_python(home):
    key = init_raw_key(home)
    secret = "t\u00f6k\u00e9n-\u2603-".encode() + new_canary()
    out = seal_ok(home, secret + b"\n")

    kid, payload = parse_v1(out)
    assert kid == key_id(key)
    assert py_open(key, payload, associated_data(SCOPE, NAME)) == secret


def test_binary_seal_binds_scope_and_name_in_python(home):
    key = init_raw_key(home)
    scope, name = "execution:0f8e-42", "SLACK_WEBHOOK"
    secret = new_canary()
    _, payload = parse_v1(seal_ok(home, secret, scope=scope, name=name))
    assert py_open(key, payload, associated_data(scope, name)) == secret
    for wrong in (associated_data(SCOPE, name), associated_data(scope, NAME)):
        with pytest.raises(InvalidTag):
            py_open(key, payload, wrong)


def test_python_seal_opens_with_binary(home):
    key = init_raw_key(home)
    secret = "gr\u00fc\u00dfe \u65e5\u672c \U0001f510 ".encode() + new_canary()
    sealed = py_seal_v1(key, SCOPE, NAME, secret)

    proc = open_(home, sealed + b"\n")
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == secret


# --------------------------------------------------------------------------
# legacy (no AD, no prefix)


@pytest.mark.parametrize(
    "scope, name",
    [(SCOPE, NAME), ("execution:abc-123", "OTHER_NAME")],
)
def test_python_legacy_value_opens_with_binary(home, scope, name):
    key = init_raw_key(home)
    secret = "l\u00e9gacy-".encode() + new_canary()
    sealed = py_seal_legacy(key, secret)

    proc = open_(home, sealed + b"\n", scope=scope, name=name)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == secret


def test_v1_payload_is_not_openable_as_legacy(home):
    key = init_raw_key(home)
    out = seal_ok(home, new_canary())
    prefix = f"v1:{key_id(key)}:".encode()
    assert out.startswith(prefix)
    payload = base64.b64decode(out[len(prefix):].strip(), validate=True)
    with pytest.raises(InvalidTag):
        py_open(key, payload, None)


def test_v1_payload_stripped_of_prefix_does_not_open_with_binary(home):
    """The binary must not fall back to no-AD decryption of a bound value."""
    key = init_raw_key(home)
    secret = new_canary()
    out = seal_ok(home, secret)
    bare = out.split(b":", 2)[2]
    proc = open_(home, bare)
    assert proc.returncode != 0, describe(proc)
    assert secret not in proc.stdout and secret not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1, describe(proc)


# --------------------------------------------------------------------------
# errors


@pytest.mark.parametrize(
    "scope, name",
    [("environment:github-staging", NAME), (SCOPE, "GITHUB_TOKEN2"), ("execution:github-prod", NAME)],
    ids=["wrong-scope", "wrong-name", "wrong-scope-kind"],
)
def test_open_with_wrong_scope_or_name_fails_authentication(home, scope, name):
    init_raw_key(home)
    secret = new_canary()
    out = seal_ok(home, secret)
    proc = open_(home, out, scope=scope, name=name)
    one_line_error(proc, 77, "failed authentication", secrets_=(secret,))


@pytest.mark.parametrize("where", ["nonce", "ciphertext", "tag"])
def test_open_tampered_value_fails_authentication(home, where):
    init_raw_key(home)
    secret = new_canary()
    out = seal_ok(home, secret)
    kid, payload = parse_v1(out)
    index = {"nonce": 3, "ciphertext": 12 + len(secret) // 2, "tag": len(payload) - 1}[where]
    tampered = bytearray(payload)
    tampered[index] ^= 0x01
    value = f"v1:{kid}:{b64(bytes(tampered))}\n".encode()

    proc = open_(home, value)
    one_line_error(proc, 77, "failed authentication", secrets_=(secret,))


def test_open_tampered_legacy_value_fails_authentication(home):
    key = init_raw_key(home)
    secret = new_canary()
    payload = bytearray(base64.b64decode(py_seal_legacy(key, secret)))
    payload[-3] ^= 0x80
    proc = open_(home, b64(bytes(payload)).encode())
    # A legacy value carries no key-id, so the binary cannot tell a wrong key
    # from tampering; it must still refuse, in one line, without the plaintext.
    one_line_error(proc, 77, "tampered", secrets_=(secret,))


def test_open_with_wrong_key_says_key_not_loaded(tmp_path, bin_path):
    first, second = tmp_path / "first", tmp_path / "second"
    init_raw_key(first)
    init_raw_key(second)
    secret = new_canary()
    out = seal_ok(first, secret)

    proc = open_(second, out)
    one_line_error(proc, 77, "not loaded", secrets_=(secret,))


def _sealed_elsewhere(secret: bytes) -> bytes:
    return py_seal_v1(new_key(), SCOPE, NAME, secret) + b"\n"


@pytest.mark.parametrize("command", ["seal", "open"])
@pytest.mark.parametrize(
    "env_key, needle",
    [
        ("not-base64!!", "not valid base64"),
        (b64(os.urandom(16)), "16 bytes"),
    ],
    ids=["not-base64", "16-bytes"],
)
def test_bad_env_key_is_rejected(home, command, env_key, needle):
    secret = new_canary()
    env = {"STIGMER_ENCRYPTION_KEY": env_key}
    if command == "seal":
        proc = seal(home, secret, env_extra=env)
    else:
        proc = open_(home, _sealed_elsewhere(secret), env_extra=env)
    err = one_line_error(proc, 77, needle, secrets_=(secret,))
    assert env_key not in err or env_key == "not-base64!!"


@pytest.mark.parametrize("command", ["seal", "open"])
def test_group_readable_key_file_is_rejected(home, command):
    write_key_file(home, new_key(), 0o644)
    secret = new_canary()
    if command == "seal":
        proc = seal(home, secret)
    else:
        proc = open_(home, _sealed_elsewhere(secret))
    one_line_error(proc, 77, "0644", "chmod 600", secrets_=(secret,))


@pytest.mark.parametrize("command", ["seal", "open"])
def test_missing_key_points_to_key_init(home, command):
    secret = new_canary()
    if command == "seal":
        proc = seal(home, secret)
    else:
        proc = open_(home, _sealed_elsewhere(secret))
    one_line_error(proc, 77, "key init", secrets_=(secret,))
    assert not (home / KEY_FILE).exists()


@pytest.mark.parametrize(
    "value",
    [b"v1:abc:%%%\n", b"v1:abc:%%%", b"v1:{kid}:%%%\n", b"v2:{kid}:QUJD\n"],
    ids=["spec-example", "spec-example-no-newline", "bad-base64", "unknown-version"],
)
def test_malformed_sealed_value_is_a_data_error(home, value):
    key = init_raw_key(home)
    # {kid} is the loaded key's id, so only the malformation can be reported.
    proc = open_(home, value.replace(b"{kid}", key_id(key).encode()))
    one_line_error(proc, 65)


def test_truncated_sealed_value_is_refused(home):
    """Too short for nonce+tag: the spec leaves 65 (malformed) or 77 (tampered) open."""
    key = init_raw_key(home)
    proc = open_(home, f"v1:{key_id(key)}:QUJD\n".encode())
    assert proc.returncode in (65, 77), describe(proc)
    assert proc.stdout == b"" and len(proc.stderr.splitlines()) == 1, describe(proc)


# --------------------------------------------------------------------------
# key sources and precedence: --key-fd > STIGMER_ENCRYPTION_KEY > key file


def _assert_sealed_with(out: bytes, key: bytes, secret: bytes):
    kid, payload = parse_v1(out)
    assert kid == key_id(key)
    assert py_open(key, payload, associated_data(SCOPE, NAME)) == secret


def _seal_with_key_fd(home, secret: bytes, fd_key: bytes, via: str, tmp_path, env_extra=None):
    text = (b64(fd_key) + "\n").encode()
    if via == "pipe":
        r, w = os.pipe()
        try:
            os.write(w, text)
            os.close(w)
            w = -1
            return seal(home, secret, env_extra=env_extra, extra_args=["--key-fd", "3"], fd_map={3: r})
        finally:
            os.close(r)
            if w != -1:
                os.close(w)
    path = tmp_path / "fd-key.txt"
    path.write_bytes(text)
    os.chmod(path, 0o600)
    with open(path, "rb") as f:
        return seal(home, secret, env_extra=env_extra, extra_args=["--key-fd", "3"], fd_map={3: f.fileno()})


def test_key_file_is_used_by_default(home):
    file_key = init_raw_key(home)
    secret = new_canary()
    _assert_sealed_with(seal_ok(home, secret), file_key, secret)


def test_env_key_wins_over_key_file(home):
    file_key = init_raw_key(home)
    env_key = new_key()
    secret = new_canary()
    out = seal_ok(home, secret, env_extra={"STIGMER_ENCRYPTION_KEY": b64(env_key)})
    _assert_sealed_with(out, env_key, secret)
    assert key_id(env_key) != key_id(file_key)


@pytest.mark.parametrize("via", ["pipe", "file"])
def test_key_fd_wins_over_env_and_key_file(home, tmp_path, via):
    init_raw_key(home)
    env_key, fd_key = new_key(), new_key()
    secret = new_canary()
    proc = _seal_with_key_fd(home, secret, fd_key, via, tmp_path, env_extra={"STIGMER_ENCRYPTION_KEY": b64(env_key)})
    assert proc.returncode == 0, describe(proc)
    _assert_sealed_with(proc.stdout, fd_key, secret)


def test_key_fd_works_without_any_other_key(home, tmp_path):
    fd_key = new_key()
    secret = new_canary()
    proc = _seal_with_key_fd(home, secret, fd_key, "pipe", tmp_path)
    assert proc.returncode == 0, describe(proc)
    _assert_sealed_with(proc.stdout, fd_key, secret)


def test_env_key_opens_python_sealed_value(home):
    env_key = new_key()
    secret = new_canary()
    proc = open_(home, py_seal_v1(env_key, SCOPE, NAME, secret), env_extra={"STIGMER_ENCRYPTION_KEY": b64(env_key)})
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == secret


def test_read_only_key_file_is_accepted(home):
    key = new_key()
    write_key_file(home, key, 0o400)
    secret = new_canary()
    out = seal_ok(home, secret)
    _assert_sealed_with(out, key, secret)
    proc = open_(home, out)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == secret


def test_apply_reseals_a_legacy_value_to_v1(home, tmp_path):
    """Stigmer's unbound legacy form could be moved anywhere: `apply` stores it re-sealed as
    v1, bound to its environment and name, and the value still reaches the child."""
    key = init_raw_key(home)
    secret = new_canary()
    legacy = py_seal_legacy(key, secret).decode()
    manifest = tmp_path / "legacy.yaml"
    manifest.write_text(f"""apiVersion: agentic.stigmer.ai/v1
kind: Environment
metadata:
  name: legacy-env
spec:
  data:
    OLD_TOKEN:
      encrypted_value: "{legacy}"
""")
    ok(run(["apply", "-f", manifest], home))
    db = sqlite3.connect(Path(home) / "stigmer.db")
    [(stored,)] = db.execute("SELECT value FROM resource_values WHERE owner = 'legacy-env' AND name = 'OLD_TOKEN'").fetchall()
    db.close()
    assert V1_RE.match(stored.encode() + b"\n") and legacy not in stored, stored
    kid, payload = parse_v1(stored.encode() + b"\n")
    assert py_open(key, payload, associated_data("environment:legacy-env", "OLD_TOKEN")) == secret
    proc = ok(run(["run", "--env-ref", "legacy-env", "--", "printenv", "OLD_TOKEN"], home))
    assert proc.stdout == secret + b"\n"
