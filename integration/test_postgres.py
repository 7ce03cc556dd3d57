"""Black-box tests of the PostgreSQL store ("Remote contexts"): the lean CLI handing
`apply`, `context create|get|delete|gc`, `env list|get|delete` and `plan` over to
stigmer-exec-full for a postgres:// store (answering as on SQLite), `run` opening the
store's ciphertext fetched by the companion's helper, the store conformance rules
(duplicate ids, all-or-nothing apply), launches across a PostgreSQL restart (whole
environment or 69, nothing in between), and two `serve` processes on one database. TLS to
PostgreSQL: test_postgres_tls.py.

Each test gets its own database (`pg_db`) of the session's cluster (`pg_cluster`, see
conftest.py): a throwaway cluster started as user postgres, or $STIGMER_TEST_POSTGRES_URL's.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import (
    describe,
    EXAMPLE_TOKEN,
    STORY_ARGS,
    STORY_LAYERS,
    STORY_NAMES,
    PgCluster,
    Server,
    apply_examples,
    create_context,
    created_token,
    env_lines,
    env_manifest,
    free_port,
    key_init,
    new_canary,
    ok,
    one_line_error,
    print_env,
    recorded_calls,
    recording_companion,
    remote_cli,
    remote_create,
    remote_run,
    spawn,
    story_values,
    table_rows,
    wait_for,
    run,
)

BAD_ENV = env_manifest("atomic-bad", {"BAD-NAME": "x"})


def pg_run(home, url, exec_id, cmd, env_extra=None):
    return run(["run", "--store", url, "--execution-id", exec_id, "--", *cmd], home, env_extra=env_extra)


def resources(cluster: PgCluster, db: str) -> list[str]:
    out = cluster.psql(db, "SELECT kind || '/' || name FROM resources ORDER BY 1")
    return out.splitlines()


def table_dump(cluster: PgCluster, db: str, table: str) -> str:
    return cluster.psql(db, f"SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM {table} t")


# --------------------------------------------------------------------------
# 5. the PostgreSQL store through the lean CLI


def test_postgres_store_lifecycle(pg_db, home, examples):
    cluster, db = pg_db
    url = cluster.url(db)
    key_init(home)
    applied = apply_examples(home, examples, store=url)
    assert set(applied.stdout.decode().splitlines()) == {
        "Agent/github-reviewer applied",
        "AgentInstance/github-reviewer-prod applied",
        "Environment/base applied",
        "Environment/github-prod applied",
    }, describe(applied)
    assert resources(cluster, db) == ["Agent/github-reviewer", "AgentInstance/github-reviewer-prod",
                                      "Environment/base", "Environment/github-prod"]

    canary = new_canary()
    created = ok(create_context(home, "pg-1", *STORY_ARGS, secret_stdin=canary, store=url))
    assert created.stdout == b"" and b"pg-1" in created.stderr, describe(created)

    got = ok(run(["context", "get", "pg-1", "--store", url], home))
    assert table_rows(got.stdout) == STORY_LAYERS, describe(got)
    assert canary not in got.stdout + got.stderr and EXAMPLE_TOKEN not in got.stdout + got.stderr

    proc = ok(pg_run(home, url, "pg-1", ["env"], env_extra={"STIGMER_FOO": "x"}))
    env = env_lines(proc.stdout)
    for name, value in story_values(canary).items():
        assert env.get(name) == value, f"{name}\n{describe(proc)}"
    assert not [k for k in env if k.startswith("STIGMER_")], describe(proc)
    # STIGMER_STORE selects the store as well as --store.
    proc = ok(run(["run", "--execution-id", "pg-1", "--", *print_env(STORY_NAMES)], home,
                   env_extra={"STIGMER_STORE": url}))
    assert json.loads(proc.stdout) == story_values(canary), describe(proc)

    # Secrets are sealed at rest in PostgreSQL.
    for table in ("context_values", "resource_values"):
        dump = table_dump(cluster, db, table)
        assert dump, table
        assert canary.decode() not in dump and EXAMPLE_TOKEN.decode() not in dump, table
    assert cluster.psql(db, "SELECT count(*) FROM contexts") == "1"

    # Duplicate ids are refused (65) unless --replace.
    dup = create_context(home, "pg-1", "--env", "A=second", store=url)
    one_line_error(dup, 65, "already exists")
    assert json.loads(ok(pg_run(home, url, "pg-1", print_env(["LOG_LEVEL", "A"]))).stdout) == \
        {"LOG_LEVEL": "trace", "A": None}
    ok(create_context(home, "pg-1", "--env", "A=second", "--replace", store=url))
    assert json.loads(ok(pg_run(home, url, "pg-1", print_env(["A", "SLACK_WEBHOOK"]))).stdout) == \
        {"A": "second", "SLACK_WEBHOOK": None}
    assert cluster.psql(db, "SELECT count(*) FROM context_values WHERE execution_id = 'pg-1'") == "1"

    # Delete, then gone.
    ok(run(["context", "delete", "pg-1", "--store", url], home))
    one_line_error(run(["context", "get", "pg-1", "--store", url], home), 66)
    one_line_error(run(["context", "delete", "pg-1", "--store", url], home), 66)
    one_line_error(pg_run(home, url, "pg-1", ["true"]), 66)
    assert cluster.psql(db, "SELECT count(*) FROM contexts") == "0"
    assert cluster.psql(db, "SELECT count(*) FROM context_values") == "0"

    # gc deletes expired contexts only.
    ok(create_context(home, "pg-short", "--env", "A=1", "--ttl", "1s", store=url))
    ok(create_context(home, "pg-long", "--env", "A=1", store=url))
    wait_for(lambda: pg_run(home, url, "pg-short", ["true"]).returncode == 66, 6, "pg-short to expire")
    gc = ok(run(["context", "gc", "--store", url], home))
    assert gc.stdout == b"1\n", describe(gc)
    gc = ok(run(["context", "gc", "--store", url], home))
    assert gc.stdout == b"0\n", describe(gc)
    assert cluster.psql(db, "SELECT execution_id FROM contexts") == "pg-long"


# `env` and `plan` answer on PostgreSQL as on SQLite: each step through both stores, side by
# side (stdin: the --secret's value).
ENV_AND_PLAN_STEPS = [
    (["env", "list"], None),
    (["env", "get", "github-prod"], None),
    (["env", "get", "base"], None),
    (["env", "get", "nope"], None),
    (["plan", *STORY_ARGS], b"typed-secret\n"),
    (["plan", "--agent", "github-reviewer", "--env-ref", "base", "--env", "GITHUB_TOKEN=x", "--env", "SLACK_WEBHOOK=y"], None),
    (["plan", "--env-ref", "no-such-env"], None),
    (["plan", "--instance", "github-reviewer-prod"], None),
    (["plan", "--env", "ONLY=runtime"], None),
    (["env", "delete", "nope"], None),
    (["env", "delete", "base"], None),
    (["env", "list"], None),
    (["env", "get", "base"], None),
]


def test_env_and_plan_on_postgres_answer_as_on_sqlite(pg_db, home, examples):
    cluster, db = pg_db
    url = cluster.url(db)
    key_init(home)
    apply_examples(home, examples)
    apply_examples(home, examples, store=url)
    codes = set()
    for args, stdin in ENV_AND_PLAN_STEPS:
        sqlite = run(args, home, input=stdin)
        postgres = run([*args, "--store", url], home, input=stdin)
        same = (postgres.returncode, postgres.stdout, postgres.stderr) == (sqlite.returncode, sqlite.stdout, sqlite.stderr)
        assert same, f"{args}:\nsqlite:\n{describe(sqlite)}\npostgres:\n{describe(postgres)}"
        assert EXAMPLE_TOKEN not in postgres.stdout + postgres.stderr and b"typed-secret" not in postgres.stdout
        codes.add(postgres.returncode)
    assert codes == {0, 66, 78}, codes  # found, not found, a required variable missing
    assert "Environment/base" not in resources(cluster, db)
    assert cluster.psql(db, "SELECT count(*) FROM resource_values WHERE owner = 'base'") == "0"


def test_postgres_fetch_helper_gets_ciphertext_and_no_key(pg_db, home, examples, tmp_path):
    """`run` with a postgres store: the companion's fetch helper returns the store's
    ciphertext, never gets STIGMER_ENCRYPTION_KEY, and the launcher opens the values with
    its own key (none: refused, no child)."""
    cluster, db = pg_db
    url = cluster.url(db)
    key = key_init(home)
    apply_examples(home, examples, store=url)
    canary = new_canary()
    ok(create_context(home, "pg-helper", *STORY_ARGS, secret_stdin=canary, store=url))

    keyless = tmp_path / "keyless"
    script, logdir = recording_companion(tmp_path)
    proc = pg_run(keyless, url, "pg-helper", print_env(STORY_NAMES),
                  env_extra={"STIGMER_ENCRYPTION_KEY": key, "STIGMER_EXEC_FULL": script})
    assert json.loads(ok(proc).stdout) == story_values(canary), describe(proc)
    calls = recorded_calls(logdir)
    assert [c["argv"][0] for c in calls] == ["fetch"], calls
    assert "STIGMER_ENCRYPTION_KEY" not in calls[0]["env"]
    assert calls[0]["stdout"], "the helper wrote nothing"
    for secret in (canary, EXAMPLE_TOKEN):
        assert secret not in calls[0]["stdout"], f"{secret!r} in the helper's output"
    assert key.encode() not in calls[0]["stdout"]

    # Without any key the launcher cannot open the secrets: refused before the child starts.
    marker = tmp_path / "child-started"
    proc = pg_run(keyless, url, "pg-helper", ["python3", "-c", f"open({str(marker)!r}, 'w')"])
    one_line_error(proc, 77, secrets_=(canary,))
    assert not marker.exists()


def test_postgres_apply_is_all_or_nothing(pg_db, home, examples, tmp_path):
    cluster, db = pg_db
    url = cluster.url(db)
    key_init(home)
    apply_examples(home, examples, store=url)
    before = resources(cluster, db)
    values_before = table_dump(cluster, db, "resource_values")

    # Invalid input: nothing stored.
    good = tmp_path / "good.yaml"
    good.write_text(env_manifest("atomic-good", {"GOOD": "y"}))
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_ENV)
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text(env_manifest("atomic-good", {"GOOD": "y"}) + "---\n" + BAD_ENV)
    for files in ([good, bad], [mixed]):
        args = ["apply", "--store", url]
        for f in files:
            args += ["-f", f]
        one_line_error(run(args, home), 65)
        assert resources(cluster, db) == before

    # A failure inside the transaction (a trigger refuses one row, after others were
    # written): nothing of the batch stays.
    cluster.psql(db, """
        CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.name = 'atomic-poison' THEN RAISE EXCEPTION 'poisoned row'; END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON resources
            FOR EACH ROW EXECUTE FUNCTION refuse_poison();
    """)
    batch = []
    for name in ("atomic-a", "atomic-b", "atomic-poison", "atomic-c"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(env_manifest(name, {"GOOD": "y"}))
        batch += ["-f", path]
    proc = run(["apply", "--store", url, "-f", examples / "environment-base.yaml", *batch], home)
    assert proc.returncode != 0 and proc.stdout == b"", describe(proc)
    assert len(proc.stderr.decode().splitlines()) == 1, describe(proc)
    assert resources(cluster, db) == before
    assert table_dump(cluster, db, "resource_values") == values_before


def test_postgres_unreachable_is_69(home, tmp_path):
    key_init(home)
    url = f"postgres://stigmer@127.0.0.1:{free_port()}/nowhere"
    commands = [
        ["run", "--store", url, "--execution-id", "x-1", "--", "true"],
        ["context", "get", "x-1", "--store", url],
        ["context", "create", "--store", url, "--execution-id", "x-1", "--env", "A=1"],
        ["apply", "--store", url, "-f", tmp_path / "none.yaml"],
    ]
    (tmp_path / "none.yaml").write_text(env_manifest("unreached", {"GOOD": "y"}))

    def timed(args):
        started = time.monotonic()
        proc = run(args, home)
        return proc, time.monotonic() - started

    with ThreadPoolExecutor(len(commands)) as pool:
        results = list(pool.map(timed, commands))
    for proc, elapsed in results:
        one_line_error(proc, 69)
        assert 3 <= elapsed < 12, (elapsed, describe(proc))


# --------------------------------------------------------------------------
# 6. PostgreSQL restarted while launches run


@pytest.fixture
def restartable_pg(pg_cluster):
    """A cluster this test may restart: the session's own one, else a private one."""
    if pg_cluster.owned:
        yield pg_cluster
        return
    cluster = PgCluster.create()
    try:
        yield cluster
    finally:
        cluster.destroy()


LAUNCH_TIMEOUT_S = 12  # PostgreSQL's 5 s deadline, with room; longer is a hang


def launch_bounded(args, home, timeout=LAUNCH_TIMEOUT_S):
    """Run the binary in its own process group; on timeout kill the group (launcher and
    fetch helper) and return None."""
    proc = spawn(args, home, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        tree = subprocess.run(["ps", "-ww", "-o", "pid,ppid,wchan:24,args", "-g", str(proc.pid)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout.decode(errors="replace")
        # The fetch helper first, so the launcher reaps it; then whatever is left of the group.
        children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(proc.pid)], stdout=subprocess.PIPE).stdout
        for pid in children.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        return None, tree
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), None


def test_launches_across_postgres_restart(restartable_pg, home, tmp_path):
    cluster = restartable_pg
    db = cluster.create_db()
    url = cluster.url(db)
    key_init(home)

    expected = {f"PLAIN_{i:02d}": f"plain-value-{i:02d}-{secrets.token_hex(4)}" for i in range(12)}
    secrets_file = tmp_path / "secrets.env"
    secret_values = {f"SECRET_{i:02d}": new_canary(f"secret{i:02d}").decode() for i in range(6)}
    secrets_file.write_text("".join(f"{k}={v}\n" for k, v in secret_values.items()))
    expected.update(secret_values)
    args = []
    for k, v in expected.items():
        if k.startswith("PLAIN_"):
            args += ["--env", f"{k}={v}"]
    ok(create_context(home, "restart-ctx", *args, "--secret-file", secrets_file, store=url))

    outcomes: Counter = Counter()
    bad: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    t0 = time.monotonic()
    events: list[str] = []

    def note(what):
        events.append(f"{time.monotonic() - t0:6.2f}s {what}")

    def launch_loop():
        while not stop.is_set():
            started = time.monotonic() - t0
            proc, hang = launch_bounded(["run", "--store", url, "--execution-id", "restart-ctx", "--", "env"], home)
            with lock:
                if proc is None:
                    bad.append(f"launch started at {started:.2f}s did not finish within {LAUNCH_TIMEOUT_S} s "
                               f"(killed); its processes were:\n{hang}")
                elif proc.returncode == 0:
                    env = env_lines(proc.stdout)
                    got = {k: env.get(k) for k in expected}
                    if got == expected:
                        outcomes[0] += 1
                    else:
                        wrong = sorted(k for k in expected if got[k] != expected[k])
                        bad.append(f"exit 0 with a partial/wrong environment (started at {started:.2f}s): "
                                   f"{wrong}\n{describe(proc)}")
                elif proc.returncode == 69 and proc.stdout == b"" and len(proc.stderr.splitlines()) == 1:
                    outcomes[69] += 1
                else:
                    bad.append(f"launch started at {started:.2f}s: {describe(proc)}")

    def successes():
        with lock:
            return outcomes[0]

    threads = [threading.Thread(target=launch_loop) for _ in range(4)]  # 1 "sequential" + 3 parallel
    for t in threads:
        t.start()
    phase_error = None
    try:
        wait_for(lambda: successes() >= 8, 10, "launches before the restart")
        for _ in range(6):  # connections cut while launches are connecting, querying or done
            note("restart -m fast")
            cluster.restart("fast")
            note("restarted")
            n = successes()
            wait_for(lambda: successes() >= n + 4, 10, "launches after the restart")
        # Down hard for longer than the 5 s the helper waits: in-flight launches must give up.
        note("stop -m immediate")
        cluster.stop("immediate")
        time.sleep(5.5)
        cluster.start()
        note("started")
        n = successes()
        wait_for(lambda: successes() >= n + 8, 12, "launches after PostgreSQL came back")
    except AssertionError as e:
        phase_error = e
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=LAUNCH_TIMEOUT_S + 15)
        if cluster.owned:
            try:
                cluster.start()
            except RuntimeError:
                pass  # already running
    summary = f"outcomes {dict(outcomes)}, {len(bad)} bad; events: {events}"
    assert not bad, f"{summary}\nfirst bad launch: {bad[0]}"
    if phase_error:
        raise AssertionError(f"{phase_error}; {summary}")
    assert outcomes[0] >= 32, summary
    cluster.drop_db(db)


class LockHolder:
    """A psql session that takes a lock and keeps it until closed."""

    def __init__(self, cluster: PgCluster, db: str, sql: str):
        self.proc = subprocess.Popen(
            ["psql", "-X", "-q", "-h", cluster.host, "-p", str(cluster.port), "-U", cluster.user, "-d", db],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.proc.stdin.write(sql.encode() + b"\n")
        self.proc.stdin.flush()

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


WAITING_SQL = ("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
               "AND wait_event_type = 'Lock' AND wait_event = '{event}'")


def test_connection_cut_while_waiting_for_a_lock(pg_db, home, tmp_path):
    """A launch whose PostgreSQL session is terminated (pg_terminate_backend, as a restart
    does) while it waits inside the schema migration ends with 69 (or 0 with the whole
    environment), never hangs: once while waiting for a table lock, once while waiting for
    the migration's advisory lock (its key is read from pg_locks in the first case)."""
    cluster, db = pg_db
    url = cluster.url(db)
    key_init(home)
    ok(create_context(home, "cut-1", "--env", "A=1", "--env", "B=2", store=url))
    marker = tmp_path / "child-started"
    child = ["python3", "-c", f"import os; open({str(marker)!r}, 'w'); print(os.environ.get('A'), os.environ.get('B'))"]
    launch = ["run", "--store", url, "--execution-id", "cut-1", "--", *child]

    def cut_while_waiting(lock_sql, granted_sql, event):
        holder = LockHolder(cluster, db, lock_sql)
        try:
            wait_for(lambda: cluster.psql(db, granted_sql) == "1", 10, f"the lock of {lock_sql!r}")
            with ThreadPoolExecutor(1) as pool:
                future = pool.submit(launch_bounded, launch, home)
                pid = wait_for(lambda: cluster.psql(db, WAITING_SQL.format(event=event)), 10,
                               f"the launch to wait for the {event} lock")
                advisory = cluster.psql(db, "SELECT classid::bigint * 4294967296 + objid::bigint FROM pg_locks "
                                            f"WHERE locktype = 'advisory' AND pid = {int(pid)}")
                cluster.psql(db, f"SELECT pg_terminate_backend({int(pid)})")
                proc, hang = future.result()
        finally:
            holder.close()
        assert proc is not None, (f"the launch hung after its session was terminated while waiting for the {event} "
                                  f"lock (killed after {LAUNCH_TIMEOUT_S} s):\n{hang}")
        if proc.returncode == 0:
            assert proc.stdout == b"1 2\n", describe(proc)
        else:
            one_line_error(proc, 69)
            assert not marker.exists(), "the child started"
        return advisory

    key = cut_while_waiting(
        "BEGIN; LOCK TABLE stigmer_schema_migrations IN ACCESS EXCLUSIVE MODE;",
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
        "WHERE c.relname = 'stigmer_schema_migrations' AND l.mode = 'AccessExclusiveLock' AND l.granted",
        "relation")
    assert key.isdigit(), f"no advisory lock held while migrating: {key!r}"
    ok(run(launch, home))
    marker.unlink(missing_ok=True)
    cut_while_waiting(f"SELECT pg_advisory_lock({int(key)});",
                      "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted", "advisory")


def test_unanswered_query_gives_69_after_the_deadline(pg_db, home, tmp_path):
    """PostgreSQL reachable but not answering (the migration's query waits for a table lock
    another session holds): the launch gives up after its ~5 s deadline with 69 and one
    line, and the child never starts."""
    cluster, db = pg_db
    url = cluster.url(db)
    key_init(home)
    ok(create_context(home, "slow-1", "--env", "A=1", store=url))
    marker = tmp_path / "child-started"
    holder = LockHolder(cluster, db, "BEGIN; LOCK TABLE stigmer_schema_migrations IN ACCESS EXCLUSIVE MODE;")
    try:
        wait_for(lambda: cluster.psql(db, "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                                          "WHERE c.relname = 'stigmer_schema_migrations' AND l.granted "
                                          "AND l.mode = 'AccessExclusiveLock'") == "1", 10, "the table lock")
        started = time.monotonic()
        proc, hang = launch_bounded(["run", "--store", url, "--execution-id", "slow-1", "--",
                                     "python3", "-c", f"open({str(marker)!r}, 'w')"], home)
        elapsed = time.monotonic() - started
    finally:
        holder.close()
    assert proc is not None, f"no answer after {LAUNCH_TIMEOUT_S} s (killed); the processes were:\n{hang}"
    one_line_error(proc, 69)
    assert 4 <= elapsed < 10, elapsed
    assert not marker.exists()


# --------------------------------------------------------------------------
# 7. two servers on one database


SWEPT_RE = re.compile(rb"swept expired contexts count=(\d+)")
# Waits for real events (a server's "serving on" line, rows gone, a process's exit), polled
# with deadlines generous enough for a machine busy building: they cost time only when
# something is wrong.
EVENT_WAIT_S = 60


def test_two_servers_share_one_database(pg_db, examples, tmp_path):
    """Two `serve` processes on one database: creates alternate between them, a create
    raced on both is won by exactly one, either serves every context, and their sweepers,
    racing every second, delete each expired context exactly once.

    Deterministic under load: nothing here sleeps for a round of the sweep. The sweep
    lines are counted once both servers have exited (SIGTERM lets a sweep under way finish)
    and their stderr has been read to its end, after the rows were seen gone."""
    cluster, db = pg_db
    url = cluster.url(db)
    server_home = tmp_path / "server"
    key_init(server_home)
    apply_examples(server_home, examples, store=url)
    op_home, client_home = tmp_path / "operator", tmp_path / "client"

    a = Server(server_home, tmp_path, store=url, sweep="1s").start(timeout=EVENT_WAIT_S)
    try:
        b = Server(server_home, tmp_path, store=url, sweep="1s").start(timeout=EVENT_WAIT_S)
    except BaseException:
        a.kill()
        raise
    try:
        assert a.port != b.port
        servers = [a, b]

        # Created alternately through both.
        tokens = {}
        for i in range(6):
            tokens[f"dual-{i}"] = created_token(
                remote_create(op_home, servers[i % 2].url, f"dual-{i}", "--env", f"WHO=dual-{i}", "--secret",
                              "SECRET", secret_stdin=f"secret-{i}".encode()))

        # The same id through both at once: exactly one wins, the other is told it exists.
        def create_on(server, exec_id):
            return remote_create(op_home, server.url, exec_id, "--env", "A=1")

        winners = []
        for r in range(3):
            exec_id = f"dual-race-{r}"
            with ThreadPoolExecutor(2) as pool:
                procs = list(pool.map(lambda s: create_on(s, exec_id), servers))
            codes = sorted(p.returncode for p in procs)
            assert codes == [0, 65], [describe(p) for p in procs]
            loser = next(p for p in procs if p.returncode == 65)
            one_line_error(loser, 65, "already exists")
            created_token(next(p for p in procs if p.returncode == 0))
            winners.append(exec_id)

        # Fetches and reads through either server.
        for i in range(6):
            exec_id = f"dual-{i}"
            for server in servers:
                proc = remote_run(client_home, server.url, exec_id, print_env(["WHO", "SECRET"]), token=tokens[exec_id])
                assert json.loads(ok(proc).stdout) == {"WHO": exec_id, "SECRET": f"secret-{i}"}, describe(proc)
                ok(remote_cli(op_home, server.url, "get", exec_id))

        # Expiring contexts, swept by both servers at once.
        expiring = [f"dual-exp-{i}" for i in range(8)]
        for i, exec_id in enumerate(expiring):
            created_token(remote_create(op_home, servers[i % 2].url, exec_id, "--env", "A=1", "--ttl", "1s"))
        wait_for(lambda: cluster.psql(db, "SELECT count(*) FROM contexts WHERE execution_id LIKE 'dual-exp-%'")
                 == "0", EVENT_WAIT_S, "both sweepers to delete the expiring contexts", interval=0.2)

        # Nothing lost, nothing duplicated; nothing left for a sweep (so none can count more).
        live = sorted(tokens) + winners
        assert cluster.psql(db, "SELECT count(*) FROM contexts") == str(len(live))
        assert cluster.psql(db, "SELECT execution_id FROM contexts ORDER BY 1").splitlines() == sorted(live)
        assert cluster.psql(db, "SELECT count(*) FROM context_values") == str(2 * len(tokens) + len(winners))
        for server in servers:
            gc = ok(remote_cli(op_home, server.url, "gc"))
            assert gc.stdout == b"0\n", describe(gc)

        assert a.stop(timeout=EVENT_WAIT_S) == 0, a.stderr
        assert b.stop(timeout=EVENT_WAIT_S) == 0, b.stderr
    finally:
        a.kill()
        b.kill()
    # Every line both servers wrote is in: each expired context was counted exactly once.
    swept = sum(int(n) for s in servers for n in SWEPT_RE.findall(s.stderr))
    assert swept == len(expiring), [s.stderr for s in servers]
    for server in servers:
        assert b"sweep failed" not in server.stderr and b"warning" not in server.stderr, server.stderr
        assert b"error" not in server.stderr, server.stderr
    for i in range(6):
        assert f"secret-{i}".encode() not in a.stderr + b.stderr


def test_a_postgres_writer_cannot_change_a_context(pg_db, home, tmp_path):
    """Whoever can write the shared database (not the key) adds an LD_PRELOAD row, changes
    a plain value or extends a lifetime: the launcher checks the context's tag over every
    row the fetch helper hands it, and refuses before a child exists."""
    cluster, db = pg_db
    url = cluster.url(db)
    key_init(home)
    canary = new_canary()
    marker = tmp_path / "ran"
    changes = [
        "INSERT INTO context_values (execution_id, name, position, value, sealed, is_secret, layer) "
        "VALUES ('pg-t', 'LD_PRELOAD', 99, '/tmp/attacker.so', false, false, 'runtime')",
        "UPDATE context_values SET value = 'https://attacker.example' WHERE name = 'CTX_PLAIN'",
        "UPDATE contexts SET expires_at = expires_at + 86400",
        "UPDATE contexts SET tag = NULL",
    ]
    for change in changes:
        ok(create_context(home, "pg-t", "--env", "CTX_PLAIN=plain", "--secret", "CTX_SECRET", "--replace",
                          secret_stdin=canary, store=url))
        ok(pg_run(home, url, "pg-t", ["touch", str(marker)]))  # control
        marker.unlink()
        cluster.psql(db, change)
        proc = pg_run(home, url, "pg-t", ["touch", str(marker)])
        one_line_error(proc, 77, "pg-t", "integrity", secrets_=(canary,))
        assert not marker.exists(), change


def test_a_postgres_writer_cannot_change_a_resource(pg_db, home, examples):
    """The same, for what a merge reads: an LD_PRELOAD added to a stored Environment never
    reaches a context."""
    cluster, db = pg_db
    url = cluster.url(db)
    key_init(home)
    apply_examples(home, examples, store=url)
    ok(create_context(home, "pg-r1", *STORY_ARGS, secret_stdin=b"x", store=url))  # control
    cluster.psql(db, "INSERT INTO resource_values (kind, owner, name, position, value, sealed, is_secret) "
                     "VALUES ('Environment', 'base', 'LD_PRELOAD', 99, '/tmp/attacker.so', false, false)")
    one_line_error(create_context(home, "pg-r2", *STORY_ARGS, secret_stdin=b"x", store=url), 77, "Environment/base",
                   "integrity")
    one_line_error(run(["plan", *STORY_ARGS, "--store", url], home, input=b"x\n"), 77, "Environment/base", "integrity")
    assert cluster.psql(db, "SELECT execution_id FROM contexts") == "pg-r1"
