"""Shared fixtures and helpers for black-box tests of the stigmer-exec binary.

The binary is taken from $STIGMER_EXEC_BIN (absolute path), defaulting to
<repo>/.build/debug/stigmer-exec, where <repo> is the parent of this folder.
Shared examples live in <repo>/../shared/examples/ and are only read.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

INTEGRATION_DIR = Path(__file__).resolve().parent
REPO = INTEGRATION_DIR.parent
EXAMPLES = REPO.parent / "shared" / "examples"
TIMEOUT_S = 60


def binary_path() -> Path:
    """Where the binary under test is expected to be (it may not exist)."""
    override = os.environ.get("STIGMER_EXEC_BIN")
    if override:
        return Path(override)
    return REPO / ".build" / "debug" / "stigmer-exec"


def run(args, home, input=None, env_extra=None, fd_map=None):
    """Run the binary with a clean environment and return the CompletedProcess.

    The environment holds only PATH, HOME (the parent of `home`, a per-test
    temporary directory), STIGMER_HOME=home and whatever `env_extra` adds.
    stdin is `input` (bytes) or /dev/null; stdout and stderr are captured as
    bytes; the run times out after 60 s.

    `fd_map` ({child_fd: parent_fd}) places open descriptors at fixed numbers
    in the child (e.g. {3: read_end} for `--key-fd 3`), whatever numbers they
    have in this process. Python's own descriptors are non-inheritable, so
    only the mapped ones (and stdio) reach the child.
    """
    home = Path(home)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home.parent),
        "STIGMER_HOME": str(home),
    }
    if env_extra:
        env.update({k: str(v) for k, v in env_extra.items()})
    return subprocess.run(
        [str(binary_path()), *[str(a) for a in args]],
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        timeout=TIMEOUT_S,
        check=False,
        **_fd_map_kwargs(fd_map),
    )


def _fd_map_kwargs(fd_map):
    if not fd_map:
        return {}
    pairs = sorted(fd_map.items())
    for child_fd, _ in pairs:
        if child_fd < 3:
            raise ValueError("fd_map is for descriptors >= 3; use input= for stdin")

    def place_fds():  # runs in the child between fork and exec
        for child_fd, parent_fd in pairs:
            if parent_fd == child_fd:  # dup2 onto itself keeps FD_CLOEXEC
                os.set_inheritable(child_fd, True)
            else:
                os.dup2(parent_fd, child_fd, inheritable=True)

    # pass_fds would force close_fds=True, and subprocess closes descriptors
    # *after* preexec_fn, which would close the dup2'd ones again.
    return {"close_fds": False, "preexec_fn": place_fds}


def describe(proc) -> str:
    """A short description of a finished process, for assertion messages."""
    return (
        f"exit={proc.returncode}\n"
        f"stdout={proc.stdout!r}\n"
        f"stderr={proc.stderr!r}"
    )


@pytest.fixture(scope="session")
def bin_path() -> Path:
    path = binary_path()
    if not path.is_absolute():
        pytest.fail(f"STIGMER_EXEC_BIN must be an absolute path, got {str(path)!r}")
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"stigmer-exec binary not found or not executable at {path} "
            "(build it, or set STIGMER_EXEC_BIN to its absolute path)"
        )
    return path


@pytest.fixture(scope="session")
def examples() -> Path:
    if not EXAMPLES.is_dir():
        pytest.fail(f"shared examples directory missing: {EXAMPLES}")
    return EXAMPLES


@pytest.fixture
def home(tmp_path, bin_path) -> Path:
    """A fresh STIGMER_HOME path that does not exist yet."""
    path = tmp_path / "home"
    assert not path.exists()
    return path


# --------------------------------------------------------------------------
# PostgreSQL, for test_postgres.py (see remote_helpers.py)


@pytest.fixture(scope="session")
def pg_cluster():
    """A PostgreSQL cluster for the session: $STIGMER_TEST_POSTGRES_URL's (never stopped or
    restarted here), else a throwaway one started here and stopped at the end."""
    from remote_helpers import PgCluster

    url = os.environ.get("STIGMER_TEST_POSTGRES_URL")
    if url:
        yield PgCluster.external(url)
        return
    try:
        cluster = PgCluster.create()
    except (RuntimeError, KeyError, LookupError, OSError) as e:
        pytest.fail(f"cannot start a throwaway PostgreSQL: {e}")
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pg_db(pg_cluster):
    """A fresh database of the session's cluster, as (cluster, name); dropped afterwards."""
    name = pg_cluster.create_db()
    yield pg_cluster, name
    pg_cluster.drop_db(name)
