"""`--error-fd N`: a failure of stigmer-exec itself is also one JSON line on descriptor N,
so a caller (the Python client, a runner) can tell it from the child's own exit status:
the descriptor is close-on-exec, and a child that ran leaves it empty — even one that
exits 78 itself. Names only, never a value."""

from __future__ import annotations

import json
import os

import pytest

from helpers import new_canary, run

FD = 7


def launch(home, *args, input=None):
    """Run with `--error-fd 7` on a pipe; (process, the lines written to it)."""
    read, write = os.pipe()
    try:
        proc = run(["run", "--error-fd", str(FD), *args], home, input=input, fd_map={FD: write})
    finally:
        os.close(write)
    with os.fdopen(read, "rb") as f:
        lines = f.read().splitlines()
    return proc, [json.loads(line) for line in lines]


def test_a_missing_variable_is_a_record_with_its_names(home):
    proc, records = launch(home, "--env", "A=1", "--file-var", "GITHUB_TOKEN", "--file-var", "OTHER", "--", "true")
    assert proc.returncode == 78, proc.stderr
    assert records == [{
        "status": 78, "code": "unresolved", "names": ["GITHUB_TOKEN", "OTHER"],
        "message": proc.stderr.decode().strip().removeprefix("stigmer-exec: "),
    }]


def test_a_child_that_exits_78_itself_leaves_no_record(home):
    proc, records = launch(home, "--env", "A=1", "--", "sh", "-c", f"test ! -e /proc/self/fd/{FD} || exit 9; exit 78")
    assert proc.returncode == 78, "the descriptor reached the child (exit 9), or the status was lost"
    assert records == []


def test_a_supervised_child_leaves_no_record_either(home):
    proc, records = launch(home, "--init", "--env", "A=1", "--", "sh", "-c", f"test ! -e /proc/self/fd/{FD} || exit 9; exit 77")
    assert (proc.returncode, records) == (77, [])


def test_usage_and_not_found_are_records(home):
    proc, records = launch(home, "--no-such-flag", "--", "true")
    assert proc.returncode == 64 and records and records[0]["status"] == 64 and records[0]["code"] == "usage"
    proc, records = launch(home, "--env", "A=1", "--", "/no/such/command")
    assert proc.returncode == 127 and records == [{**records[0], "status": 127, "code": "commandNotFound", "names": []}]


def test_the_record_holds_no_value(home):
    canary = new_canary("errfd")
    proc, records = launch(home, "--secret", "S", "--file-var", "MISSING", "--", "true", input=canary + b"\n")
    assert proc.returncode == 78 and records[0]["names"] == ["MISSING"]
    assert canary.decode() not in json.dumps(records) and canary not in proc.stderr


@pytest.mark.parametrize("bad", ["2", "x", "-1"])
def test_a_bad_descriptor_is_a_usage_error(home, bad):
    proc = run(["run", "--error-fd", bad, "--env", "A=1", "--", "true"], home)
    assert proc.returncode == 64 and b"--error-fd" in proc.stderr
