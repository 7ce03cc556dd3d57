"""The shipped launcher (`make launcher`: fully static) through every command it keeps.

The rest of the suite runs the debug build, which links libdispatch and SQLite dynamically.
The static launcher links no libdispatch (Sources/CStigmerStatic/nodispatch.c defines what
Swift's idle Concurrency runtime refers to, and stops the process if it is ever called) and
none of SQLite's compiled-in virtual tables (sqlite.c). So each command the launcher keeps
(the others are handed to the companion) runs here once on the static build and must end
as it does on the debug build — with no internal error.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from helpers import DB, EXAMPLES, KEY_FILE, REPO, apply_examples, describe, ok, run

STATIC = Path(os.environ.get("STIGMER_STATIC_LAUNCHER") or REPO / ".build-static" / "release" / "stigmer-exec")

pytestmark = pytest.mark.skipif(not STATIC.is_file(), reason=f"{STATIC} is missing: build it with `make launcher`")


def static(args, home, **kwargs):
    proc = run(args, home, binary=STATIC, **kwargs)
    assert b"internal error" not in proc.stderr and b"Concurrency" not in proc.stderr, describe(proc)
    return proc


def test_every_launcher_command_runs_on_the_static_build(home, tmp_path):
    ok(static(["--version"], home))
    ok(static(["--help"], home))
    ok(static(["key", "init"], home))
    assert (Path(home) / KEY_FILE).is_file()
    scope = ["--scope", "environment:static", "--name", "V"]
    sealed = ok(static(["key", "seal", *scope], home, input=b"a value\n")).stdout
    assert ok(static(["key", "open", *scope], home, input=sealed)).stdout.rstrip(b"\n") == b"a value"
    ok(static(["key", "list"], home))
    ok(static(["key", "rotate"], home))

    apply_examples(home, EXAMPLES)
    ok(static(["env", "list"], home))
    ok(static(["env", "get", "base"], home))
    ok(static(["plan", "--instance", "github-reviewer-prod", "--env-file", EXAMPLES / "runtime.env", "--env", "SLACK_WEBHOOK=x"], home))
    ok(static(["context", "create", "--execution-id", "static-1", "--env", "A=1", "--secret", "S"], home,
              input=b"static-secret\n"))
    ok(static(["context", "get", "static-1"], home))

    out = ok(static(["run", "--execution-id", "static-1", "--", "sh", "-c", 'printf %s "$A"'], home)).stdout
    assert out == b"1"
    ok(static(["run", "--execution-id", "static-1", "--init", "--", "true"], home))
    masked = ok(static(["run", "--execution-id", "static-1", "--mask-output", "--", "sh", "-c", 'printf %s "$S"'], home))
    assert b"static-secret" not in masked.stdout

    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"echo": {"command": "sh", "args": ["-c", 'printf %s "$A"'],
                                                          "env": {"A": "${A}"}}}}))
    ok(static(["mcp", "check", "--execution-id", "static-1", "--config", config], home))
    ok(static(["mcp", "wrap", "--execution-id", "static-1", "--config", config], home))
    assert ok(static(["mcp", "run", "--execution-id", "static-1", "--config", config, "--server", "echo"], home)).stdout == b"1"

    ok(static(["context", "delete", "static-1"], home))
    ok(static(["context", "gc"], home))
    target = tmp_path / "installed"
    target.mkdir()
    ok(static(["install", target], home))
    assert os.access(target / "stigmer-exec", os.X_OK)


def test_a_virtual_table_in_the_store_does_not_stop_the_static_launcher(home):
    """The static launcher registers none of SQLite's compiled-in virtual tables
    (sqlite.c). A store that another tool gave an FTS5 table still opens, and its contexts
    still launch: the launch reads only its own tables."""
    ok(static(["key", "init"], home))
    ok(static(["context", "create", "--execution-id", "vt-1", "--env", "A=1"], home))
    with sqlite3.connect(Path(home) / DB) as db:
        db.execute("CREATE VIRTUAL TABLE notes USING fts5(body)")
    assert ok(static(["run", "--execution-id", "vt-1", "--", "sh", "-c", 'printf %s "$A"'], home)).stdout == b"1"
