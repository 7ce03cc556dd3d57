"""pytest fixtures for the black-box tests of the stigmer-exec binaries.

Every helper lives in helpers.py (the binary is $STIGMER_EXEC_BIN, an absolute path,
defaulting to <repo>/.build/debug/stigmer-exec; the shared examples are
<repo>/../shared/examples/, only read). This file only turns them into fixtures.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import EXAMPLES, PgCluster, SmallDisk, binary_path, generate_stubs


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
def home(tmp_path_factory, bin_path) -> Path:
    """A fresh STIGMER_HOME path that does not exist yet — in a directory of its own, not
    inside tmp_path: the launcher keeps the child out of the home's ancestor directories
    except for what already exists in them (Landlock), and tests' children write into
    tmp_path."""
    path = tmp_path_factory.mktemp("stigmer-home") / "home"
    assert not path.exists()
    return path


@pytest.fixture
def small_disk(tmp_path_factory):
    """A factory of small tmpfs disks (helpers.SmallDisk): `small_disk(size_bytes)` mounts
    one and returns it; each is unmounted afterwards. Mounting needs root."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disks = []

    def make(size: int) -> SmallDisk:
        disk = SmallDisk(tmp_path_factory.mktemp("small-disk") / "mnt", size)
        try:
            disk.mount()
        except OSError as e:
            pytest.skip(str(e))
        disks.append(disk)
        return disk

    yield make
    for disk in disks:
        disk.unmount()


# --------------------------------------------------------------------------
# PostgreSQL (see helpers.PgCluster)


@pytest.fixture(scope="session")
def pg_cluster():
    """A PostgreSQL cluster for the session: $STIGMER_TEST_POSTGRES_URL's (never stopped or
    restarted here), else a throwaway one started here and stopped at the end."""
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


@pytest.fixture
def pg_url_if_given(request):
    """The URL of a fresh database when $STIGMER_TEST_POSTGRES_URL names a cluster, else None
    (for tests whose PostgreSQL half is skipped without one)."""
    if not os.environ.get("STIGMER_TEST_POSTGRES_URL"):
        return None
    cluster, db = request.getfixturevalue("pg_db")
    return cluster.url(db)


@pytest.fixture(scope="session")
def stubs(tmp_path_factory):
    """(pb2, pb2_grpc) generated from the .proto with grpcio-tools."""
    pytest.importorskip("grpc", reason="grpcio is needed (integration/requirements.txt)")
    pytest.importorskip("grpc_tools", reason="grpcio-tools is needed (integration/requirements.txt)")
    return generate_stubs(tmp_path_factory.mktemp("stubs"))
