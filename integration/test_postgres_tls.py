"""TLS to PostgreSQL: `sslmode` and `sslrootcert` (and `sslcert`/`sslkey`) on the store URL,
against a PostgreSQL of its own with `ssl = on`, a private CA's certificate that names
DNS:localhost only, and a pg_hba.conf that accepts TLS connections only (`hostssl`), so
a connection in clear is refused by the server itself.

Both paths that reach PostgreSQL are covered: the companion's commands (`apply`, `context`,
`env`, `plan`, `serve --store`) and `run`, whose fetch helper reads the store for the
launcher. Refusals are one line and a documented status (64 for a URL that cannot be
honoured, 69 for a server that cannot be reached as asked, 77 for one that refuses us), the
URL's password never appears, and nothing is written or launched.
"""

from __future__ import annotations

import json

import pytest

from helpers import (
    MANIFESTS,
    STORY_ARGS,
    STORY_NAMES,
    PgCluster,
    PrivateCA,
    Server,
    create_context,
    created_token,
    describe,
    key_init,
    new_canary,
    ok,
    one_line_error,
    print_env,
    remote_create,
    remote_run,
    run,
    story_values,
    table_rows,
)

PASSWORD = "hunter2-" + new_canary("pw").decode()  # trust auth: accepted, never needed, never shown


class TlsPg:
    """The TLS cluster, its CA, a CA nobody trusts, and a client certificate for `certuser`."""

    def __init__(self, base):
        self.ca = PrivateCA(base / "ca")
        self.other_ca = PrivateCA(base / "other-ca", name="other-ca")
        self.server_cert, self.server_key = self.ca.issue("localhost", "DNS:localhost")
        self.client_cert, self.client_key = self.ca.issue("certuser", client=True)
        self.cluster: PgCluster | None = None

    def configure(self, cluster: PgCluster):
        cluster.place("server.crt", self.server_cert, 0o644)
        cluster.place("server.key", self.server_key)
        cluster.place("root.crt", self.ca.pem, 0o644)
        # TLS or nothing; certuser proves who it is with a certificate of the CA.
        (cluster.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "hostssl all certuser 127.0.0.1/32 cert\n"
            "hostssl all all 127.0.0.1/32 trust\n"
            "hostssl all all ::1/128 trust\n")

    def url(self, db: str, host: str = "localhost", query: str = "", user: str = "stigmer", password: bool = True) -> str:
        auth = f"{user}:{PASSWORD}" if password else user
        return f"postgres://{auth}@{host}:{self.cluster.port}/{db}" + (f"?{query}" if query else "")

    def verify_full(self, db: str, host: str = "localhost", password: bool = True) -> str:
        return self.url(db, host, f"sslmode=verify-full&sslrootcert={self.ca.pem}", password=password)


@pytest.fixture(scope="module")
def tls_pg(tmp_path_factory):
    tls = TlsPg(tmp_path_factory.mktemp("pg-tls"))
    try:
        tls.cluster = PgCluster.create(settings=("ssl=on", "ssl_cert_file=server.crt", "ssl_key_file=server.key",
                                                 "ssl_ca_file=root.crt"), configure=tls.configure)
    except (RuntimeError, OSError) as e:
        pytest.fail(f"cannot start a PostgreSQL with ssl = on: {e}")
    try:
        tls.cluster.psql("postgres", "CREATE ROLE certuser LOGIN SUPERUSER")
        yield tls
    finally:
        tls.cluster.destroy()


@pytest.fixture
def tls_db(tls_pg):
    db = tls_pg.cluster.create_db("tls")
    yield tls_pg, db
    tls_pg.cluster.drop_db(db)


def with_store(url):
    """The URL in STIGMER_STORE: on --store, a password earns a warning line of its own."""
    return {"STIGMER_STORE": url}


def tables(cluster: PgCluster, db: str) -> str:
    return cluster.psql(db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")


def test_verify_full_through_the_companion_and_the_launcher(tls_db, home, examples, tmp_path):
    tls, db = tls_db
    env = with_store(tls.verify_full(db))
    key_init(home)
    applied = ok(run(["apply", *[arg for name in MANIFESTS for arg in ("-f", examples / name)]], home, env_extra=env))
    assert b"Environment/base applied" in applied.stdout, describe(applied)
    canary = new_canary()
    ok(run(["context", "create", "--execution-id", "tls-1", *STORY_ARGS], home, input=canary + b"\n", env_extra=env))
    got = ok(run(["context", "get", "tls-1"], home, env_extra=env))
    assert "SLACK_WEBHOOK" in table_rows(got.stdout), describe(got)
    listed = ok(run(["env", "list"], home, env_extra=env))
    assert b"github-prod" in listed.stdout, describe(listed)
    proc = ok(run(["run", "--execution-id", "tls-1", "--", *print_env(STORY_NAMES)], home, env_extra=env))
    assert json.loads(proc.stdout) == story_values(canary), describe(proc)
    for p in (applied, got, listed, proc):
        assert PASSWORD.encode() not in p.stdout + p.stderr and canary not in p.stderr


@pytest.mark.parametrize("mode", ["require", "verify-ca"])
def test_require_and_verify_ca_accept_the_address(tls_db, home, mode):
    """By 127.0.0.1, which the certificate does not name: `require` checks nothing (libpq's
    meaning without a root certificate), `verify-ca` checks the chain only."""
    tls, db = tls_db
    key_init(home)
    query = "sslmode=require" if mode == "require" else f"sslmode=verify-ca&sslrootcert={tls.ca.pem}"
    env = with_store(tls.url(db, "127.0.0.1", query))
    ok(create_context(home, f"tls-{mode}", "--env", "A=1", env_extra=env))
    proc = ok(run(["run", "--execution-id", f"tls-{mode}", "--", *print_env(["A"])], home, env_extra=env))
    assert json.loads(proc.stdout) == {"A": "1"}, describe(proc)


def refused_everywhere(home, tmp_path, url, code, *needles):
    """`context get` (the companion) and `run` (the launcher's fetch helper) both refuse
    with one line and `code`; the child never starts; nothing is written to the database."""
    marker = tmp_path / "child-started"
    env = with_store(url)
    for args in (["context", "get", "tls-x"],
                 ["context", "create", "--execution-id", "tls-x", "--env", "A=1"],
                 ["run", "--execution-id", "tls-x", "--", "python3", "-c", f"open({str(marker)!r}, 'w')"]):
        proc = run(args, home, env_extra=env)
        one_line_error(proc, code, *needles, secrets_=(PASSWORD.encode(),))
        assert "did not answer" not in proc.stderr.decode(), f"the cause was not named:\n{describe(proc)}"
    assert not marker.exists()


def test_verify_full_refuses_a_name_the_certificate_does_not_hold(tls_db, home, tmp_path):
    tls, db = tls_db
    key_init(home)
    refused_everywhere(home, tmp_path, tls.verify_full(db, "127.0.0.1"), 69, "not for", "127.0.0.1")
    assert tables(tls.cluster, db) == "0"


def test_a_certificate_of_another_ca_is_refused(tls_db, home, tmp_path):
    tls, db = tls_db
    key_init(home)
    for query in (f"sslmode=verify-full&sslrootcert={tls.other_ca.pem}", f"sslmode=verify-ca&sslrootcert={tls.other_ca.pem}",
                  f"sslmode=require&sslrootcert={tls.other_ca.pem}"):  # libpq: a root certificate makes require check the chain
        refused_everywhere(home, tmp_path, tls.url(db, query=query), 69, "not signed by", str(tls.other_ca.pem))
    assert tables(tls.cluster, db) == "0"


def test_require_refuses_a_server_without_tls(pg_db, home, tmp_path):
    """The session's PostgreSQL has ssl off: sslmode=require never falls back to plaintext."""
    cluster, db = pg_db
    key_init(home)
    url = f"postgres://stigmer:{PASSWORD}@127.0.0.1:{cluster.port}/{db}?sslmode=require"
    refused_everywhere(home, tmp_path, url, 69, "does not speak TLS", "sslmode=require")
    assert tables(cluster, db) == "0"


def test_plaintext_is_unchanged_and_refused_by_a_tls_only_server(tls_db, pg_db, home, tmp_path):
    """No sslmode (and sslmode=disable) is still a connection in clear: it works with the
    session's PostgreSQL, and this one's pg_hba.conf (hostssl only) refuses it — 77, with
    the server's reason."""
    tls, db = tls_db
    key_init(home)
    cluster, plain_db = pg_db
    for query in ("", "sslmode=disable"):
        plain = f"postgres://stigmer:{PASSWORD}@127.0.0.1:{cluster.port}/{plain_db}" + (f"?{query}" if query else "")
        ok(create_context(home, f"plain-{len(query)}", "--env", "A=1", env_extra=with_store(plain)))
        refused_everywhere(home, tmp_path, tls.url(db, "127.0.0.1", query), 77, "refused user", "no encryption")


def test_serve_on_postgres_over_tls(tls_db, tmp_path):
    """`serve --store` with verify-full: every session it holds is encrypted (pg_stat_ssl)."""
    tls, db = tls_db
    server_home, op_home, client_home = tmp_path / "server", tmp_path / "op", tmp_path / "client"
    key_init(server_home)
    with Server(server_home, tmp_path, store=tls.verify_full(db, password=False)) as server:
        canary = new_canary()
        token = created_token(remote_create(op_home, server.url, "tls-srv", "--env", "A=1", "--secret", "S",
                                            secret_stdin=canary))
        proc = remote_run(client_home, server.url, "tls-srv", print_env(["A", "S"]), token=token)
        assert json.loads(ok(proc).stdout) == {"A": "1", "S": canary.decode()}, describe(proc)
        sessions = tls.cluster.psql(db, "SELECT coalesce(string_agg(s.ssl::text || ' ' || s.version, ','), '') "
                                        "FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
                                        "WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()")
        assert sessions and all(s.startswith("true TLSv1.") for s in sessions.split(",")), sessions
        assert server.stop() == 0, server.describe()


def test_client_certificate(tls_db, home, tmp_path):
    """certuser must prove itself with a certificate (pg_hba `cert`): sslcert/sslkey do;
    without them the server refuses (77); a key file others may read is refused first (77)."""
    tls, db = tls_db
    key_init(home)
    base = tls.url(db, user="certuser", password=False, query=f"sslmode=verify-full&sslrootcert={tls.ca.pem}")
    with_cert = f"{base}&sslcert={tls.client_cert}&sslkey={tls.client_key}"
    ok(create_context(home, "tls-cert", "--env", "A=1", env_extra=with_store(with_cert)))
    proc = ok(run(["run", "--execution-id", "tls-cert", "--", *print_env(["A"])], home, env_extra=with_store(with_cert)))
    assert json.loads(proc.stdout) == {"A": "1"}, describe(proc)
    refused_everywhere(home, tmp_path, base, 77, "refused user", "certuser")
    lax = tmp_path / "lax.key"
    lax.write_bytes(tls.client_key.read_bytes())
    lax.chmod(0o644)
    refused_everywhere(home, tmp_path, f"{base}&sslcert={tls.client_cert}&sslkey={lax}", 77, "sslkey", "chmod 600")


@pytest.mark.parametrize("query,needle", [
    ("sslmode=verify-full", "sslrootcert=FILE"),
    ("sslmode=verify-full&sslrootcert=/nonexistent/ca.pem", "cannot read sslrootcert"),
    ("sslmode=prefer", "sslmode=prefer"),
    ("sslmode=allow", "sslmode=allow"),
    ("sslrootcert=CA", "no sslmode"),
    ("sslmode=require&application_name=x", "unsupported parameter"),
], ids=["verify-full-without-ca", "unreadable-ca", "prefer", "allow", "ca-without-sslmode", "unknown-parameter"])
def test_a_url_that_cannot_be_honoured_is_a_usage_error(tls_db, home, tmp_path, query, needle):
    tls, db = tls_db
    key_init(home)
    query = query.replace("CA", str(tls.ca.pem)) if "=CA" in query else query
    refused_everywhere(home, tmp_path, tls.url(db, query=query), 64, needle)
    assert tables(tls.cluster, db) == "0"
