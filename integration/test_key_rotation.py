"""Black-box tests of `stigmer-exec key list|rotate|retire` (DESIGN.md §5, rotation).

Every check of what is stored is made from outside: Python's `cryptography` opens every
sealed value in the store with the keys in the key file (the documented v1 format), so
"nothing lost" means every value still opens, to the same plaintext, with the keys on
disk. A rotation is interrupted with SIGKILL at random moments and, through strace's
fault injection, at the first N calls of each system call that writes (the key file's
write, fsync and rename; SQLite's WAL writes and syncs); the disk fills up under it on a
small tmpfs; a tampered store is refused rather than re-tagged; and the same commands run
on PostgreSQL through the companion.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from helpers import (
    KEY_FILE,
    binary_path,
    create_context,
    describe,
    env_manifest,
    key_init,
    ok,
    one_line_error,
    print_env,
    run,
    spawn,
    write,
)

DB = "stigmer.db"


# --------------------------------------------------------------------------
# reading the store from outside


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"stigmer-exec/key-id\0" + key).digest()[:8].hex()


def keys_on_disk(home) -> dict[str, bytes]:
    """The key file's keys by id (base64 lines; `#` comments and blank lines skipped)."""
    keys = {}
    for line in (Path(home) / KEY_FILE).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key = base64.b64decode(line, validate=True)
            assert len(key) == 32
            keys[key_id(key)] = key
    return keys


def key_lines(home) -> list[str]:
    return [l.strip() for l in (Path(home) / KEY_FILE).read_text().splitlines() if l.strip() and not l.startswith("#")]


def sealed_rows(home) -> list[tuple[str, str, str]]:
    """(scope, name, stored text) of every sealed value in the home's store."""
    con = sqlite3.connect(f"file:{Path(home) / DB}?mode=ro", uri=True)
    try:
        rows = [(f"environment:{o}", n, v) for o, n, v in
                con.execute("SELECT owner, name, value FROM resource_values WHERE sealed = 1 AND kind = 'Environment'")]
        rows += [(f"execution:{e}", n, v) for e, n, v in
                 con.execute("SELECT execution_id, name, value FROM context_values WHERE sealed = 1")]
        return rows
    finally:
        con.close()


def tags(home) -> list[str]:
    con = sqlite3.connect(f"file:{Path(home) / DB}?mode=ro", uri=True)
    try:
        return [t for (t,) in con.execute("SELECT tag FROM resources UNION ALL SELECT tag FROM contexts")]
    finally:
        con.close()


def open_all(rows, keys: dict[str, bytes]) -> dict[tuple[str, str], bytes]:
    """Every sealed value opened with `keys`, as Python's cryptography does it."""
    out = {}
    for scope, name, text in rows:
        m = re.fullmatch(r"v1:([0-9a-f]{16}):([A-Za-z0-9+/=]+)", text)
        assert m, f"{name} in {scope} is not v1: {text[:12]}…"
        assert m.group(1) in keys, f"{name} in {scope} is sealed with key {m.group(1)}, which is not on disk"
        blob = base64.b64decode(m.group(2))
        ad = b"stigmer-exec/v1\0" + scope.encode() + b"\0" + name.encode()
        out[(scope, name)] = AESGCM(keys[m.group(1)]).decrypt(blob[:12], blob[12:], ad)
    return out


def stored_plaintexts(home) -> dict[tuple[str, str], bytes]:
    return open_all(sealed_rows(home), keys_on_disk(home))


def integrity_ok(home):
    con = sqlite3.connect(f"file:{Path(home) / DB}?mode=ro", uri=True)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()


def used_key_ids(home) -> set[str]:
    ids = {text.split(":")[1] for _, _, text in sealed_rows(home)}
    return ids | {t.split(":")[1] for t in tags(home)}


# --------------------------------------------------------------------------
# building a store


def populate(home, tmp_path, environments=2, secrets=3, contexts=2, context_secrets=2):
    """`environments` Environments of `secrets` secrets and one plain value, and `contexts`
    contexts that each reference the first Environment and add `context_secrets` secrets."""
    key_init(home)
    files = []
    for e in range(environments):
        data = {f"SECRET_{i}": f"env{e}-secret{i}-{os.urandom(6).hex()}" for i in range(secrets)}
        data["PLAIN"] = f"plain-{e}"
        files += ["-f", write(tmp_path, f"env{e}.yaml", env_manifest(f"env{e}", data, secret=[k for k in data if k != "PLAIN"]))]
    ok(run(["apply", *files], home))
    for c in range(contexts):
        args = ["--env-ref", "env0", "--secret-file", write(tmp_path, f"ctx{c}.env",
                "".join(f"CTX_{i}=ctx{c}-{i}-{os.urandom(6).hex()}\n" for i in range(context_secrets)))]
        ok(create_context(home, f"exec-{c}", *args))


def launch_env(home, exec_id, names):
    proc = ok(run(["run", "--execution-id", exec_id, "--", *print_env(names)], home))
    return json.loads(proc.stdout)


# --------------------------------------------------------------------------
# rotate, list, retire


def test_rotate_reseals_everything_and_cryptography_opens_it(home, tmp_path):
    populate(home, tmp_path)
    ok(create_context(home, "short-lived", "--env", "A=b", "--secret", "S", "--ttl", "1s", secret_stdin=b"gone-soon"))
    before = stored_plaintexts(home)
    [old] = keys_on_disk(home)
    launched = launch_env(home, "exec-1", ["SECRET_0", "CTX_1", "PLAIN"])
    time.sleep(1.1)

    proc = ok(run(["key", "rotate"], home))
    line = proc.stderr.decode().strip()
    assert "\n" not in line and re.search(r"added key [0-9a-f]{16} and re-sealed", line), line
    assert "1 expired contexts swept" in line and old in line, line

    keys = keys_on_disk(home)
    assert len(keys) == 2 and list(keys)[0] == old
    new = list(keys)[1]
    assert used_key_ids(home) == {new}, "a value or tag still names the old key"
    after = stored_plaintexts(home)
    assert after == {k: v for k, v in before.items() if k[0] != "execution:short-lived"}
    assert launch_env(home, "exec-1", ["SECRET_0", "CTX_1", "PLAIN"]) == launched
    integrity_ok(home)

    listing = ok(run(["key", "list"], home)).stdout.decode()
    assert re.search(rf"^{old}\s+older\s+0$", listing, re.M) and re.search(rf"^{new}\s+newest\s+4$", listing, re.M), listing

    # Everything already under the newest: a second rotation adds another key.
    ok(run(["key", "rotate"], home))
    assert len(keys_on_disk(home)) == 3 and stored_plaintexts(home) == after


def test_retire_only_once_nothing_needs_the_key(home, tmp_path):
    populate(home, tmp_path, environments=1, contexts=1)
    [old] = keys_on_disk(home)
    one_line_error(run(["key", "retire", old], home), (64,), "newest", "key rotate")
    one_line_error(run(["key", "retire", "0123456789abcdef"], home), (66,), "not loaded")

    # A key put last by hand (as an operator does for keys shared by servers): rotate
    # adds none, finishing with that one; retire is refused until then.
    added = os.urandom(32)
    with open(Path(home) / KEY_FILE, "a") as f:
        f.write("# added by hand\n" + base64.b64encode(added).decode() + "\n")
    err = one_line_error(run(["key", "retire", old], home), (65,), old, "Environment/env0", "key rotate")
    assert "nothing was changed" in err
    assert len(key_lines(home)) == 2

    proc = ok(run(["key", "rotate"], home))
    assert "added key" not in proc.stderr.decode() and key_id(added) in proc.stderr.decode()
    assert len(key_lines(home)) == 2 and used_key_ids(home) == {key_id(added)}

    ok(run(["key", "retire", old], home))
    text = (Path(home) / KEY_FILE).read_text()
    assert key_lines(home) == [base64.b64encode(added).decode()] and "# added by hand" in text
    assert (Path(home) / KEY_FILE).stat().st_mode & 0o777 == 0o600
    launch_env(home, "exec-0", ["SECRET_1"])


def test_rotation_refuses_a_tampered_store(home, tmp_path):
    """A rotation re-tags everything: one that did not check the old tags first would
    launder a change made by whoever can write the store but holds no key."""
    populate(home, tmp_path, environments=1, contexts=2)
    con = sqlite3.connect(Path(home) / DB)
    con.execute("UPDATE context_values SET value = 'evil' WHERE execution_id = 'exec-1' AND name = 'PLAIN'")
    con.commit()
    con.close()
    before = sorted(sealed_rows(home)), sorted(tags(home))

    err = one_line_error(run(["key", "rotate"], home), (77,), "exec-1", "integrity", "nothing was re-sealed")
    assert (sorted(sealed_rows(home)), sorted(tags(home))) == before, "a refused rotation changed the store"
    one_line_error(run(["run", "--execution-id", "exec-1", "--", "true"], home), (77,), "integrity")
    assert len(key_lines(home)) == 2, err  # the new key was written first, and says so


def test_keys_from_the_environment(home, tmp_path):
    populate(home, tmp_path, environments=1, contexts=1)
    [old_text] = key_lines(home)
    os.unlink(Path(home) / KEY_FILE)
    env = {"STIGMER_ENCRYPTION_KEY": old_text}
    one_line_error(run(["key", "rotate"], home, env_extra=env), (64,), "STIGMER_ENCRYPTION_KEY", "put a new key last")

    new = os.urandom(32)
    env = {"STIGMER_ENCRYPTION_KEY": old_text + "\n" + base64.b64encode(new).decode()}
    ok(run(["key", "rotate"], home, env_extra=env))
    assert used_key_ids(home) == {key_id(new)}
    old = key_id(base64.b64decode(old_text))
    proc = ok(run(["key", "retire", old], home, env_extra=env))
    assert "remove it from STIGMER_ENCRYPTION_KEY yourself" in proc.stderr.decode()
    env = {"STIGMER_ENCRYPTION_KEY": base64.b64encode(new).decode()}
    proc = ok(run(["run", "--execution-id", "exec-0", "--", *print_env(["CTX_0"])], home, env_extra=env))
    assert json.loads(proc.stdout)["CTX_0"].startswith("ctx0-0-")


def test_launches_during_rotations_all_succeed(home, tmp_path):
    """A launch reads the store before the key file: one that sees re-sealed values also
    sees the key that sealed them."""
    populate(home, tmp_path, environments=5, secrets=10, contexts=5, context_secrets=5)
    want = launch_env(home, "exec-3", ["SECRET_9", "CTX_4"])
    stop = threading.Event()
    results = []

    def launch_loop():
        while not stop.is_set():
            proc = run(["run", "--execution-id", "exec-3", "--", *print_env(["SECRET_9", "CTX_4"])], home)
            results.append((proc.returncode, proc.stdout, proc.stderr))

    thread = threading.Thread(target=launch_loop)
    thread.start()
    rotations = 0
    try:
        while rotations < 10 or len(results) < 30:
            ok(run(["key", "rotate"], home))
            rotations += 1
    finally:
        stop.set()
        thread.join()
    failures = [r for r in results if r[0] != 0 or json.loads(r[1]) != want]
    assert not failures, f"{len(failures)} of {len(results)} launches during {rotations} rotations failed: {failures[:1]}"
    for key in list(keys_on_disk(home))[:-1]:
        ok(run(["key", "retire", key], home))
    assert launch_env(home, "exec-3", ["SECRET_9", "CTX_4"]) == want


# --------------------------------------------------------------------------
# interrupted: SIGKILL anywhere loses nothing, and running it again finishes


def check_nothing_lost(home, expected):
    integrity_ok(home)
    assert stored_plaintexts(home) == expected, "a value no longer opens to what was stored"


def finish_and_retire(home, expected):
    ok(run(["key", "rotate"], home))
    newest = list(keys_on_disk(home))[-1]
    for key in list(keys_on_disk(home))[:-1]:
        ok(run(["key", "retire", key], home))
    assert list(keys_on_disk(home)) == [newest]
    check_nothing_lost(home, expected)
    ok(run(["run", "--execution-id", "exec-0", "--", "true"], home))


def test_sigkill_at_random_moments_loses_nothing(home, tmp_path):
    populate(home, tmp_path, environments=20, secrets=20, contexts=30, context_secrets=10)
    expected = stored_plaintexts(home)
    started = time.monotonic()
    ok(run(["key", "rotate"], home))
    took = time.monotonic() - started
    rng = random.Random(1511)
    kills = 0
    for _ in range(30):
        proc = spawn(["key", "rotate"], home)
        time.sleep(rng.uniform(0, took * 1.1))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        check_nothing_lost(home, expected)
    assert kills >= 10, f"only {kills} of 30 rotations were still running when killed (one takes {took:.3f} s)"
    print(f"{kills} of 30 rotations killed (one takes {took:.3f} s)")
    finish_and_retire(home, expected)


WRITING_CALLS = ["openat", "write", "fsync", "rename", "pwrite64", "fdatasync", "ftruncate"]


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_sigkill_at_each_write_loses_nothing(home, tmp_path):
    """strace kills the rotation as it enters the Nth call of each system call that
    writes — the key file's open, write, fsync and rename, SQLite's WAL writes, syncs
    and truncation — at points spread over every such call a rotation makes, so the
    moments a random delay rarely hits are hit too."""
    populate(home, tmp_path, environments=3, secrets=4, contexts=3, context_secrets=3)
    expected = stored_plaintexts(home)
    env = {**os.environ, "STIGMER_HOME": str(home)}
    trace = tmp_path / "trace"
    subprocess.run(["strace", "-f", "-o", str(trace), "-e", "trace=" + ",".join(WRITING_CALLS), str(binary_path()), "key", "rotate"],
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    counts = {call: len(re.findall(rf"^\d+\s+{call}\(", trace.read_text(), re.M)) for call in WRITING_CALLS}
    points = 0
    for call, n in counts.items():
        for nth in sorted({k for k in (1, 2, 3, n // 4, n // 2, 3 * n // 4, n - 2, n - 1, n) if 1 <= k <= n}):
            proc = subprocess.run(
                ["strace", "-f", "-o", "/dev/null", f"--inject={call}:signal=SIGKILL:when={nth}", str(binary_path()), "key", "rotate"],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
            assert proc.returncode in (0, -signal.SIGKILL, 128 + signal.SIGKILL), describe(proc)
            points += proc.returncode != 0
            check_nothing_lost(home, expected)
    assert points >= 25, f"only {points} kill points were reached ({counts})"
    print(f"rotation killed at {points} points: {counts}")
    finish_and_retire(home, expected)


# --------------------------------------------------------------------------
# the disk fills up


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs, unmounted afterwards (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path, leave: int):
    """Fills `mount` until `leave` bytes are free (as statvfs counts them)."""
    filler = mount / "filler"
    with open(filler, "ab") as f:
        while True:
            st = os.statvfs(mount)
            free = st.f_bavail * st.f_frsize
            if free <= leave:
                break
            try:
                f.write(b"\0" * min(free - leave, 1 << 20))
                f.flush()
            except OSError:
                break
    return filler


def test_disk_full_during_rotation(small_disk, tmp_path):
    home = small_disk / "home"
    populate(home, tmp_path, environments=10, secrets=20, contexts=10, context_secrets=10)
    expected = stored_plaintexts(home)
    keys_before = key_lines(home)

    # No room for the new key file: nothing changes at all.
    filler = fill(small_disk, 0)
    err = one_line_error(run(["key", "rotate"], home), (74,), "disk is full", KEY_FILE)
    assert key_lines(home) == keys_before and not (home / (KEY_FILE + ".new")).exists()
    check_nothing_lost(home, expected)

    # Room for the key file but not for the re-sealed store: the store is whole, under the
    # old key; the unused new key is said; the next rotation finishes with it.
    filler.unlink()
    fill(small_disk, 24 << 10)
    err = one_line_error(run(["key", "rotate"], home), (74,), "full", "run `stigmer-exec key rotate` again")
    check_nothing_lost(home, expected)
    assert used_key_ids(home) == {key_id(base64.b64decode(keys_before[0]))}
    (small_disk / "filler").unlink()
    finish_and_retire(home, expected)


# --------------------------------------------------------------------------
# PostgreSQL, through the companion


def pg_sealed(cluster, db) -> list[str]:
    out = cluster.psql(db, "SELECT value FROM resource_values WHERE sealed UNION ALL SELECT value FROM context_values WHERE sealed "
                           "UNION ALL SELECT tag FROM resources UNION ALL SELECT tag FROM contexts")
    return out.splitlines()


def test_rotate_and_retire_on_postgres(pg_db, home, tmp_path):
    cluster, db = pg_db
    url = cluster.url(db)
    key_init(home)
    [old] = keys_on_disk(home)
    manifest = write(tmp_path, "env.yaml", env_manifest("pg-env", {"TOKEN": "pg-secret-1", "PLAIN": "p"}, secret=["TOKEN"]))
    ok(run(["apply", "--store", url, "-f", manifest], home))
    ok(create_context(home, "pg-exec", "--env-ref", "pg-env", "--secret", "RUNTIME", store=url, secret_stdin=b"pg-runtime"))
    assert all(v.split(":")[1] == old for v in pg_sealed(cluster, db))

    one_line_error(run(["key", "retire", old, "--store", url], home), (64,), "newest")
    proc = ok(run(["key", "rotate", "--store", url], home))
    assert "added key" in proc.stderr.decode() and "1 contexts" in proc.stderr.decode(), describe(proc)
    new = list(keys_on_disk(home))[1]
    assert all(v.split(":")[1] == new for v in pg_sealed(cluster, db))
    listing = ok(run(["key", "list", "--store", url], home)).stdout.decode()
    assert re.search(rf"^{new}\s+newest\s+2$", listing, re.M), listing

    ok(run(["key", "retire", old, "--store", url], home))
    proc = ok(run(["run", "--store", url, "--execution-id", "pg-exec", "--", *print_env(["TOKEN", "RUNTIME"])], home))
    assert json.loads(proc.stdout) == {"TOKEN": "pg-secret-1", "RUNTIME": "pg-runtime"}
