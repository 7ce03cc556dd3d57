"""Faults, nothing lost: what the store and the key do when the machine misbehaves.

- The disk fills up during `apply` and `context create` (a small tmpfs, filled to several
  levels so the failure lands at different points: the store's creation, WAL growth, the
  commit, the checkpoint): exit 74 and one line that says so, where, and what to do; the
  previous state is whole afterwards and the failed write left nothing.
- SIGKILL at random points of `apply` and `context create` (looped, delays spread over a
  measured run): every resource is wholly the old or wholly the new version.
- A corrupted or truncated `stigmer.db` (and a corrupted WAL) is reported as what it is and
  never yields a launch (the child writes a marker file; it must not exist).
- A key file that is a FIFO, a directory, a 1 GB file, a device or a socket is refused at
  once (no hang); `--key-fd` on a pipe or FIFO still works, and is bounded.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from helpers import (
    DB,
    KEY_FILE,
    PYTHON,
    apply_examples,
    describe,
    disk_full_error,
    env_manifest,
    integrity_check,
    key_init,
    new_canary,
    ok,
    one_line_error,
    run,
    simple_context,
    spawn,
    store_state,
    table_rows,
)

# A child that leaves a marker file: if it exists, something was launched.
MARKER_CHILD = "import sys; open(sys.argv[1], 'w').write('launched')"
# A child that prints every variable whose name starts with argv[1], as JSON.
PRINT_PREFIXED = "import json,os,sys; print(json.dumps({k: v for k, v in os.environ.items() if k.startswith(sys.argv[1])}))"

EXAMPLE_ENVS = ("base", "github-prod")
SEED = int(os.environ.get("STIGMER_FAULTS_SEED", "0")) or random.randrange(1 << 30)


def rng(salt: str) -> random.Random:
    return random.Random(f"{SEED}-{salt}")


def seeded(message: str) -> str:
    return f"{message} (STIGMER_FAULTS_SEED={SEED} repeats this run)"


def big_environment(path: Path, name: str, count: int, canary: bytes, tag: str = "v") -> Path:
    """An Environment of `count` variables of ~200 bytes, every tenth secret (holding the
    canary)."""
    data, secret = {}, []
    for i in range(count):
        if i % 10 == 0:
            data[f"S{i}"] = f"{canary.decode()}-{i}"
            secret.append(f"S{i}")
        else:
            data[f"V{i}"] = f"{tag}-{i}-" + "x" * 190
    path.write_text(env_manifest(name, data, secret=secret))
    return path


def big_env_files(tmp_path: Path, count: int, canary: bytes, tag: str = "v") -> tuple[Path, Path]:
    """(--env-file, --secret-file) with `count` plain and count/10 secret variables, and
    the SLACK_WEBHOOK the example agent requires: with its instance, count * 1.1 + 5 in all."""
    plain = tmp_path / f"{tag}-plain.env"
    plain.write_text("".join(f"P{i}={tag}-{i}-{'y' * 190}\n" for i in range(count)))
    secrets = tmp_path / f"{tag}-secret.env"
    lines = [f"Q{i}={canary.decode()}-{tag}-{i}\n" for i in range(count // 10)]
    secrets.write_text("".join(lines) + f"SLACK_WEBHOOK={canary.decode()}-{tag}-hook\n")
    return plain, secrets


# --------------------------------------------------------------------------
# the disk fills up

# Bytes left free before the write. 0 fails at once; the larger ones let the WAL grow
# part of the way, or all of the way with the checkpoint at close failing instead.
FILL_LEVELS = [0, 4096, 16384, 65536, 131072, *range(196608, 458753, 32768), 786432, 3145728]


def full_disk_home(small_disk, examples):
    """A 6 MB disk whose home holds a key, the examples and the context `before`."""
    disk = small_disk(6 << 20)
    key_init(disk.home)
    apply_examples(disk.home, examples)
    simple_context(disk.home, "before", new_canary())
    return disk


def test_disk_full_during_apply_keeps_the_previous_state(small_disk, tmp_path, examples):
    disk = full_disk_home(small_disk, examples)
    home = disk.home
    canary = new_canary("full-apply")
    # Replaces `base` and adds `big`: both, or neither.
    big = big_environment(tmp_path / "big.yaml", "big", 1500, canary)
    replaced = tmp_path / "base.yaml"
    replaced.write_text(env_manifest("base", {"TIMEOUT": "99s", "NEW_ONE": "n"}))

    def whole(leave):
        # Enough room after all: then all of it, nothing less.
        assert integrity_check(home / DB) == "ok"
        shown = ok(run(["env", "get", "big"], home)).stdout
        assert len(shown.splitlines()) == 1 + 1500 and canary not in shown
        assert b"NEW_ONE" in ok(run(["env", "get", "base"], home)).stdout

    outcomes = disk.attempts(["apply", "-f", replaced, "-f", big], FILL_LEVELS,
                             lambda: store_state(home, (*EXAMPLE_ENVS, "big"), ("before",)), home / DB,
                             tmp_path / "saved", secrets_=(canary,), on_success=whole)
    print("apply outcomes by bytes left:", outcomes)
    # Failures at several points, and room enough at last (where the checkpoint at close
    # may still fail, leaving the commit in the WAL).
    assert outcomes[0] == 74 and list(outcomes.values()).count(74) >= 4 and outcomes[FILL_LEVELS[-1]] == 0, outcomes


@pytest.mark.parametrize("exec_id", ["big", "before"], ids=["new", "replaced"])
def test_disk_full_during_context_create_keeps_the_previous_state(small_disk, tmp_path, examples, exec_id):
    disk = full_disk_home(small_disk, examples)
    home = disk.home
    canary = new_canary("full-ctx")
    plain, secrets = big_env_files(tmp_path, 1500, canary)
    args = ["context", "create", "--execution-id", exec_id, *(["--replace"] if exec_id == "before" else []),
            "--instance", "github-reviewer-prod", "--env-file", plain, "--secret-file", secrets]

    def whole(leave):
        assert integrity_check(home / DB) == "ok"
        assert len(table_rows(ok(run(["context", "get", exec_id], home)).stdout)) == 1500 + 150 + 5

    outcomes = disk.attempts(args, FILL_LEVELS, lambda: store_state(home, EXAMPLE_ENVS, ("before", "big")), home / DB,
                             tmp_path / "saved", secrets_=(canary,), on_success=whole)
    print("context create outcomes by bytes left:", outcomes)
    assert outcomes[0] == 74 and list(outcomes.values()).count(74) >= 4 and outcomes[FILL_LEVELS[-1]] == 0, outcomes


def test_disk_full_before_the_store_exists(small_disk, tmp_path):
    """The first write of a home on a full disk: the store is not left behind half-made,
    and the same command works once there is room."""
    disk = small_disk(2 << 20)
    home = disk.home
    key_init(home)
    manifest = tmp_path / "one.yaml"
    manifest.write_text(env_manifest("one", {"A": "1"}))
    for leave in (0, 4096, 8192, 16384):
        disk.fill(leave)
        proc = run(["apply", "-f", manifest], home)
        disk.free()
        if proc.returncode == 0:
            break
        disk_full_error(proc, home / DB)
        left = sorted(p.name for p in home.iterdir())
        assert left == [KEY_FILE], f"a failed first write left {left}"
        # Nothing stored, and the home reads as such.
        assert ok(run(["env", "list"], home)).stdout.splitlines()[1:] == []
    ok(run(["apply", "-f", manifest], home))
    assert b"A" in ok(run(["env", "get", "one"], home)).stdout


def test_disk_full_during_key_init(small_disk):
    disk = small_disk(1 << 20)
    disk.fill(0)
    proc = run(["key", "init"], disk.home)
    disk.free()
    disk_full_error(proc, disk.home / KEY_FILE)
    assert not (disk.home / KEY_FILE).exists(), "a failed key init left a key file behind"
    key_init(disk.home)


# --------------------------------------------------------------------------
# SIGKILL at random points


def timed(args, home, times: int = 3) -> float:
    """The slowest of `times` runs of the command (seconds)."""
    worst = 0.0
    for _ in range(times):
        start = time.monotonic()
        ok(run(args, home))
        worst = max(worst, time.monotonic() - start)
    return worst


def kill_after(args, home, delay: float) -> int:
    """Start the command, SIGKILL it after `delay` s (if it still runs); its status."""
    proc = spawn(args, home)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    return proc.returncode


def test_sigkill_during_apply_leaves_each_resource_whole(home, tmp_path):
    key_init(home)
    versions = {}
    for tag, count in (("old", 60), ("new", 90)):
        files = []
        for name in ("alpha", "beta"):
            data = {f"{name.upper()}_{i}": f"{tag}-{name}-{i}" for i in range(count)}
            data["TOKEN"] = f"{tag}-secret-{name}"
            files.append(tmp_path / f"{tag}-{name}.yaml")
            files[-1].write_text(env_manifest(name, data, secret=("TOKEN",)))
        versions[tag] = ["apply", *[arg for f in files for arg in ("-f", f)]]
    shown = {}
    for tag in ("new", "old"):
        ok(run(versions[tag], home))
        shown[tag] = store_state(home, ("alpha", "beta"))
    assert shown["old"] != shown["new"]
    duration = timed(versions["new"], home)
    ok(run(versions["old"], home))

    r, killed = rng("apply"), 0
    for i in range(120):
        tag = ("new", "old")[i % 2]
        code = kill_after(versions[tag], home, r.uniform(0, duration * 1.2))
        killed += code == -signal.SIGKILL
        assert integrity_check(home / DB) == "ok", seeded(f"iteration {i}: the store is damaged")
        now = store_state(home, ("alpha", "beta"))
        # One transaction: both resources old, or both new (each one whole).
        assert now in (shown["old"], shown["new"]), seeded(f"iteration {i}: a resource is half-written:\n{now}")
        if code == 0:
            assert now == shown[tag], seeded(f"iteration {i}: apply succeeded but did not store its version")
    assert killed >= 30, seeded(f"only {killed} of 120 runs were killed before they finished")


def test_sigkill_during_context_create_leaves_each_context_whole(home, tmp_path, examples):
    key_init(home)
    apply_examples(home, examples)
    variants = {}
    values = {}
    for tag, count in (("old", 40), ("new", 70)):
        plain, secrets = big_env_files(tmp_path, count, new_canary(tag), tag=tag)
        variants[tag] = ["--instance", "github-reviewer-prod", "--env-file", plain, "--secret-file", secrets]
    tables = {}
    for tag in ("new", "old"):
        ok(run(["context", "create", "--execution-id", "ctx", "--replace", *variants[tag]], home))
        tables[tag] = table_rows(ok(run(["context", "get", "ctx"], home)).stdout)
        values[tag] = ok(run(["run", "--execution-id", "ctx", "--", PYTHON, "-c", PRINT_PREFIXED, ""], home)).stdout
    duration = timed(["context", "create", "--execution-id", "ctx", "--replace", *variants["new"]], home)
    ok(run(["context", "create", "--execution-id", "ctx", "--replace", *variants["old"]], home))

    r, killed = rng("context"), 0
    for i in range(100):
        # Even: replace ctx with the other version; odd: a new context that must appear whole or not at all.
        tag = ("new", "old")[i % 4 // 2]
        exec_id, extra = ("ctx", ["--replace"]) if i % 2 == 0 else (f"fresh-{i}", [])
        code = kill_after(["context", "create", "--execution-id", exec_id, *extra, *variants[tag]], home,
                          r.uniform(0, duration * 1.2))
        killed += code == -signal.SIGKILL
        assert integrity_check(home / DB) == "ok", seeded(f"iteration {i}: the store is damaged")
        got = run(["context", "get", exec_id], home)
        if got.returncode == 66 and exec_id != "ctx":
            assert code != 0, seeded(f"iteration {i}: context create succeeded but stored nothing")
            continue
        rows = table_rows(ok(got).stdout)
        want = ("old", "new") if exec_id == "ctx" else (tag,)
        assert rows in [tables[t] for t in want], seeded(f"iteration {i}: context {exec_id} is half-written")
        # The values themselves: they open, pass the context's integrity tag, and are one version.
        launched = ok(run(["run", "--execution-id", exec_id, "--", PYTHON, "-c", PRINT_PREFIXED, ""], home)).stdout
        assert launched in [values[t] for t in want], seeded(f"iteration {i}: context {exec_id} holds mixed values")
    assert killed >= 25, seeded(f"only {killed} of 100 runs were killed before they finished")


def test_sigkill_while_the_store_is_first_created(tmp_path):
    """Killed while it creates the store: the store is there whole or not at all — never an
    empty or half-made file that a later command must refuse — and the next apply works."""
    manifest = tmp_path / "one.yaml"
    manifest.write_text(env_manifest("one", {"A": "1", "B": "2"}))
    key = {"STIGMER_ENCRYPTION_KEY": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}
    probe_home = tmp_path / "probe" / "home"
    start = time.monotonic()
    ok(run(["apply", "-f", manifest], probe_home, env_extra=key))
    duration = time.monotonic() - start

    r, killed = rng("create"), 0
    for i in range(40):
        home = tmp_path / f"h{i}" / "home"
        proc = spawn(["apply", "-f", manifest], home, env_extra=key)
        try:
            proc.wait(timeout=r.uniform(0, duration))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        killed += proc.returncode == -signal.SIGKILL
        listed = run(["env", "list"], home, env_extra=key)
        assert listed.returncode == 0, seeded(f"iteration {i}: the store left by the kill cannot be read:\n{describe(listed)}")
        if (home / DB).exists():
            assert integrity_check(home / DB) == "ok", seeded(f"iteration {i}")
        ok(run(["apply", "-f", manifest], home, env_extra=key))
        assert b"one" in ok(run(["env", "list"], home, env_extra=key)).stdout
    assert killed >= 10, seeded(f"only {killed} of 40 runs were killed before they finished")


def test_concurrent_first_writes_make_one_whole_store(tmp_path):
    """Creators of a new store take turns: every one succeeds, and all write to one store."""
    key = {"STIGMER_ENCRYPTION_KEY": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}
    home = tmp_path / "h" / "home"
    procs = []
    for i in range(8):
        manifest = tmp_path / f"e{i}.yaml"
        manifest.write_text(env_manifest(f"e{i}", {"A": str(i)}))
        procs.append(spawn(["apply", "-f", manifest], home, env_extra=key))
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    listed = ok(run(["env", "list"], home, env_extra=key)).stdout
    assert all(f"e{i} ".encode() in listed for i in range(8)), listed
    left = {p.name for p in home.iterdir() if p.name.startswith(DB)}
    assert left <= {DB, f"{DB}-shm", f"{DB}-wal"}, left


# --------------------------------------------------------------------------
# a damaged store


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, bin_path, examples) -> Path:
    """A home with a key, the examples applied and the context `ctx`, closed cleanly."""
    home = tmp_path_factory.mktemp("pristine") / "home"
    key_init(home)
    apply_examples(home, examples)
    simple_context(home, "ctx", new_canary())
    return home


def copy_home(pristine: Path, home: Path) -> Path:
    shutil.copytree(pristine, home)
    os.chmod(home, 0o700)
    return home / DB


def page_size(db: Path) -> int:
    size = int.from_bytes(db.read_bytes()[16:18], "big")
    return 65536 if size == 1 else size


def flip(db: Path, offsets):
    data = bytearray(db.read_bytes())
    for offset in offsets:
        data[offset] ^= 0xFF
    db.write_bytes(bytes(data))


def truncate(db: Path, size: int):
    os.truncate(db, size)


def every_page_type(db: Path):
    """The b-tree page type byte of every page (page 1's is after the 100-byte header)."""
    size = page_size(db)
    flip(db, [100] + list(range(size, db.stat().st_size, size)))


DAMAGE = {
    "empty": (lambda db: truncate(db, 0), "empty"),
    "truncated-to-50-bytes": (lambda db: truncate(db, 50), "damaged"),
    "truncated-to-the-header": (lambda db: truncate(db, 100), "damaged"),
    "truncated-to-one-page": (lambda db: truncate(db, page_size(db)), "damaged"),
    "truncated-in-half": (lambda db: truncate(db, db.stat().st_size // 2 + 123), "damaged"),
    "last-page-cut": (lambda db: truncate(db, db.stat().st_size - page_size(db)), "damaged"),
    "header-magic": (lambda db: flip(db, [0, 5]), "damaged"),
    "page-size-field": (lambda db: flip(db, [16]), "damaged"),
    "every-page-type": (every_page_type, "damaged"),
    "garbage": (lambda db: db.write_bytes(os.urandom(db.stat().st_size)), "damaged"),
    "zeros": (lambda db: db.write_bytes(bytes(db.stat().st_size)), "damaged"),
    "directory": (lambda db: (db.unlink(), db.mkdir()), "not a regular file"),
}


def refused_without_launch(home: Path, tmp_path: Path, needle: str, codes=(65, 69)):
    """`run --execution-id ctx` (a child that leaves a marker), `context get` and `env
    list` each fail with one line holding `needle` and the store's path; nothing starts."""
    marker = tmp_path / "launched"
    for args in (["run", "--execution-id", "ctx", "--", PYTHON, "-c", MARKER_CHILD, marker],
                 ["context", "get", "ctx"], ["env", "list"], ["env", "get", "base"]):
        proc = run(args, home, timeout=20)
        one_line_error(proc, codes, needle, str(home / DB))
        assert not marker.exists(), f"{args[0]} launched the child from a damaged store"


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_store_is_reported_and_never_launches(pristine, home, tmp_path, damage):
    db = copy_home(pristine, home)
    do, needle = DAMAGE[damage]
    do(db)
    code = 65 if damage == "directory" else 69
    refused_without_launch(home, tmp_path, needle, codes=code)
    # A writing command does not paper over the damage either.
    manifest = tmp_path / "one.yaml"
    manifest.write_text(env_manifest("one", {"A": "1"}))
    one_line_error(run(["apply", "-f", manifest], home), code, needle, str(db))


def test_a_flipped_byte_in_a_stored_value_never_launches(pristine, home, tmp_path):
    """Damage SQLite cannot see (inside a value) is caught by the context's integrity tag."""
    db = copy_home(pristine, home)
    conn = sqlite3.connect(db)
    [(sealed,)] = conn.execute("SELECT value FROM context_values WHERE execution_id = 'ctx' AND sealed = 1").fetchall()
    conn.close()
    data = db.read_bytes()
    at = data.index(sealed.encode())
    flip(db, [at + len(sealed) // 2])
    marker = tmp_path / "launched"
    proc = run(["run", "--execution-id", "ctx", "--", PYTHON, "-c", MARKER_CHILD, marker], home)
    one_line_error(proc, 77, "integrity")
    assert not marker.exists()


@pytest.mark.parametrize("seed", range(12))
def test_random_damage_never_launches_other_values(pristine, home, tmp_path, seed):
    """Random bytes flipped anywhere: the launch is refused in one line, or the child gets
    exactly the stored values — never anything else."""
    db = copy_home(pristine, home)
    ok(run(["context", "create", "--execution-id", "ctx2", "--env", "P=plain", "--secret", "S"], home,
           input=b"the-secret\n"))
    r = rng(f"flip-{seed}")
    flip(db, r.sample(range(db.stat().st_size), 8))
    proc = run(["run", "--execution-id", "ctx2", "--", PYTHON, "-c", PRINT_PREFIXED, ""], home, timeout=20)
    if proc.returncode == 0:
        got = json.loads(proc.stdout)
        assert got.get("P") == "plain" and got.get("S") == "the-secret", seeded("a damaged store launched other values")
    else:
        assert proc.returncode in (66, 69, 77), seeded(describe(proc))
        one_line_error(proc, proc.returncode)


def wal_with_frames(home: Path):
    """Leaves the WAL holding the last `context create` (ctx2) uncheckpointed, as a crash
    would: a reader holds its snapshot while the context is created, then is SIGKILLed."""
    holder = subprocess.Popen([PYTHON, "-c", "import sqlite3,sys,time\n"
                               f"c = sqlite3.connect({str(home / DB)!r}, isolation_level=None)\n"
                               "c.execute('BEGIN'); c.execute('SELECT count(*) FROM contexts').fetchall()\n"
                               "print('held', flush=True); time.sleep(60)\n"], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"held\n"
        ok(run(["context", "create", "--execution-id", "ctx2", "--env", "P=plain", "--secret", "S"], home,
               input=b"the-secret\n"))
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=30)
    assert (home / f"{DB}-wal").stat().st_size > 32, "the WAL holds no frames"


def wal(home: Path) -> Path:
    return home / f"{DB}-wal"


def shm(home: Path) -> Path:
    return home / f"{DB}-shm"


WAL_DAMAGE = {
    "wal-header": lambda home: flip(wal(home), range(0, 32)),
    "wal-frame": lambda home: flip(wal(home), [32 + 24 + 10, 32 + 24 + 2000]),
    "wal-garbage": lambda home: wal(home).write_bytes(os.urandom(wal(home).stat().st_size)),
    "wal-truncated": lambda home: truncate(wal(home), wal(home).stat().st_size // 2 + 7),
    "wal-emptied": lambda home: truncate(wal(home), 0),
    "shm-garbage": lambda home: shm(home).write_bytes(os.urandom(shm(home).stat().st_size)),
}


@pytest.mark.parametrize("damage, keep_shm", [
    *[(damage, keep) for damage in sorted(WAL_DAMAGE) if damage != "shm-garbage" for keep in (False, True)],
    ("shm-garbage", True),
])
def test_damaged_wal_never_launches_other_values(pristine, home, damage, keep_shm):
    """SQLite drops WAL frames from the first one whose checksum fails (a torn write looks
    the same), so ctx2 may be gone (66) — but the launch never gets other values, and
    never waits on the damage (a read-only WAL index retried for 10 s); ctx, in the
    database file itself, still launches."""
    copy_home(pristine, home)
    wal_with_frames(home)
    WAL_DAMAGE[damage](home)
    if not keep_shm:
        shm(home).unlink()
    for exec_id, want in (("ctx", None), ("ctx2", {"P": "plain", "S": "the-secret"})):
        proc = run(["run", "--execution-id", exec_id, "--", PYTHON, "-c", PRINT_PREFIXED, ""], home, timeout=5)
        if exec_id == "ctx":
            ok(proc)
        elif proc.returncode == 0:
            got = json.loads(proc.stdout)
            assert {k: got.get(k) for k in want} == want, "a damaged WAL launched other values"
        else:
            one_line_error(proc, (66, 69, 77))


# --------------------------------------------------------------------------
# the key file is not a file


def make_key_impostor(path: Path, kind: str, keep: list):
    if kind == "fifo":
        os.mkfifo(path, 0o600)
    elif kind == "directory":
        path.mkdir(mode=0o700)
    elif kind == "1gb-file":
        with open(path, "wb") as f:
            f.truncate(1 << 30)
        os.chmod(path, 0o600)
    elif kind.startswith("/dev/"):
        path.symlink_to(kind)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(path))
        s.listen(1)
        os.chmod(path, 0o600)
        keep.append(s)
    else:
        raise AssertionError(kind)


KEY_IMPOSTORS = ["fifo", "directory", "1gb-file", "/dev/zero", "/dev/urandom", "socket"]


@pytest.mark.parametrize("kind", KEY_IMPOSTORS)
def test_key_file_impostor_is_refused_at_once(pristine, home, tmp_path, kind):
    copy_home(pristine, home)
    key = home / KEY_FILE
    key.unlink()
    keep = []
    make_key_impostor(key, kind, keep)
    marker = tmp_path / "launched"
    try:
        for args, stdin in ((["key", "seal", "--scope", "environment:e", "--name", "N"], b"v"),
                            (["run", "--execution-id", "ctx", "--", PYTHON, "-c", MARKER_CHILD, marker], None),
                            (["context", "get", "ctx"], None)):
            start = time.monotonic()
            proc = run(args, home, input=stdin, timeout=5)
            one_line_error(proc, 77, str(key))
            assert time.monotonic() - start < 5
            assert not marker.exists()
    finally:
        for s in keep:
            s.close()


def test_key_fd_from_a_fifo_still_works(home, tmp_path):
    key_text = key_init(tmp_path / "other") + "\n"
    fifo = tmp_path / "key.fifo"
    os.mkfifo(fifo, 0o600)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    writer = os.open(fifo, os.O_WRONLY)
    try:
        os.write(writer, key_text.encode())
        os.close(writer)
        os.set_blocking(reader, True)
        proc = run(["key", "seal", "--key-fd", "3", "--scope", "environment:e", "--name", "N"], home, input=b"v",
                   fd_map={3: reader}, timeout=5)
        assert ok(proc).stdout.startswith(b"v1:")
    finally:
        os.close(reader)


def test_key_fd_with_endless_input_is_refused_at_once(home):
    """A pipe that never ends (a writer of /dev/zero, say) is read up to a bound, not
    forever."""
    r, w = os.pipe()
    stop = threading.Event()

    def pour():
        chunk = b"A" * 65536
        try:
            while not stop.is_set():
                os.write(w, chunk)
        except OSError:
            pass  # the reader is gone

    thread = threading.Thread(target=pour, daemon=True)
    thread.start()
    try:
        proc = run(["key", "seal", "--key-fd", "3", "--scope", "environment:e", "--name", "N"], home, input=b"v",
                   fd_map={3: r}, timeout=5)
        one_line_error(proc, 77, "--key-fd 3")
    finally:
        stop.set()
        os.close(r)
        thread.join(timeout=5)
        os.close(w)


def test_key_fd_on_a_huge_file_is_refused_at_once(home, tmp_path):
    big = tmp_path / "huge"
    with open(big, "wb") as f:
        f.truncate(1 << 30)
    with open(big, "rb") as f:
        proc = run(["key", "seal", "--key-fd", "3", "--scope", "environment:e", "--name", "N"], home, input=b"v",
                   fd_map={3: f.fileno()}, timeout=5)
    one_line_error(proc, 77, "--key-fd 3")
