"""Black-box tests of `stigmer-exec plan` against the shared examples."""

from __future__ import annotations

import re

import pytest

from helpers import (
    BAD_NAME_ENV,
    BAD_NAME_LINE,
    EXAMPLE_TOKEN,
    MANIFESTS,
    describe,
    key_init,
    new_canary,
    one_line_error,
    parse_variable_table,
    run,
    write,
)

EXPECTED_ROWS = {
    "GITHUB_TOKEN": ("yes", "environment:github-prod"),
    "GITHUB_ORG": ("no", "environment:github-prod"),
    "TIMEOUT": ("no", "environment:base"),
    "LOG_LEVEL": ("no", "runtime"),
    "SLACK_WEBHOOK": ("yes", "runtime"),
    "REGION": ("no", "runtime"),
}


def example_args(examples, *extra):
    args = ["plan"]
    for name in MANIFESTS:
        args += ["-f", examples / name]
    return args + ["--instance", "github-reviewer-prod", "--env-file", examples / "runtime.env", *extra]


# --------------------------------------------------------------------------
# the happy path


@pytest.mark.parametrize("log_level", [None, "trace"])
def test_plan_prints_names_flags_and_layers_never_values(home, examples, log_level):
    key_init(home)
    canary = new_canary()
    extra = ["--secret", "SLACK_WEBHOOK"]
    if log_level:
        extra += ["--log-level", log_level]

    proc = run(example_args(examples, *extra), home, input=canary + b"\n")
    assert proc.returncode == 0, describe(proc)

    header, rows = parse_variable_table(proc.stdout)
    assert header == {}, f"plan prints only the table:\n{describe(proc)}"
    for name, expected in EXPECTED_ROWS.items():
        assert rows.get(name) == expected, f"{name}: got {rows.get(name)}, want {expected}\n{describe(proc)}"

    for stream in (proc.stdout, proc.stderr):
        assert canary not in stream, describe(proc)
        assert EXAMPLE_TOKEN not in stream, describe(proc)
        # Other example values must not leak either.
        for value in (b"my-org", b"eu-west-1", b"30s", b"hello world"):
            assert value not in stream, f"{value!r} leaked\n{describe(proc)}"


def test_plan_without_required_secret_names_it(home, examples):
    key_init(home)
    proc = run(example_args(examples), home)
    one_line_error(proc, 78, "SLACK_WEBHOOK")


# --------------------------------------------------------------------------
# bad input data


def test_unknown_kind_is_rejected_with_file_name(home, examples, tmp_path):
    key_init(home)
    path = write(
        tmp_path,
        "widget.yaml",
        "apiVersion: agentic.stigmer.ai/v1\n"
        "kind: Widget\n"
        "metadata:\n"
        "  name: w\n"
        "spec: {}\n",
    )
    proc = run(["plan", "-f", examples / "environment-base.yaml", "-f", path, "--env-ref", "base"], home)
    one_line_error(proc, 65, "widget.yaml", "kind")


def test_bad_variable_name_in_manifest_is_located(home, tmp_path):
    key_init(home)
    path = write(tmp_path, "env-bad-name.yaml", BAD_NAME_ENV)
    proc = run(["plan", "-f", path, "--env-ref", "bad"], home)
    err = one_line_error(proc, 65, "env-bad-name.yaml", "BAD-NAME")
    m = re.search(r"env-bad-name\.yaml:(\d+)", err)
    assert m, f"no file:line in {err!r}"
    assert int(m.group(1)) == BAD_NAME_LINE, f"line {m.group(1)} is not the BAD-NAME entry: {err!r}"


def test_bad_variable_name_in_env_file_is_located(home, examples, tmp_path):
    key_init(home)
    path = write(tmp_path, "bad.env", "# comment\nGOOD=1\n1BAD=x\nLATER=2\n")
    proc = run(
        ["plan", "-f", examples / "environment-base.yaml", "--env-ref", "base", "--env-file", path],
        home,
    )
    one_line_error(proc, 65, "bad.env:3")
