"""Black-box tests of `stigmer-exec plan` against the shared examples."""

from __future__ import annotations

import re
import secrets

import pytest

from conftest import describe, run

MANIFESTS = [
    "agent-github-reviewer.yaml",
    "agentinstance-github-reviewer-prod.yaml",
    "environment-base.yaml",
    "environment-github-prod.yaml",
]
EXAMPLE_TOKEN = b"ghp_example0000000000000000000000000000"

EXPECTED_ROWS = {
    "GITHUB_TOKEN": ("yes", "environment:github-prod"),
    "GITHUB_ORG": ("no", "environment:github-prod"),
    "TIMEOUT": ("no", "environment:base"),
    "LOG_LEVEL": ("no", "runtime"),
    "SLACK_WEBHOOK": ("yes", "runtime"),
    "REGION": ("no", "runtime"),
}


# --------------------------------------------------------------------------
# helpers


def key_init(home):
    proc = run(["key", "init"], home)
    assert proc.returncode == 0, describe(proc)


def example_args(examples, *extra):
    args = ["plan"]
    for name in MANIFESTS:
        args += ["-f", examples / name]
    return args + ["--instance", "github-reviewer-prod", "--env-file", examples / "runtime.env", *extra]


def parse_table(stdout: bytes) -> dict[str, tuple[str, str]]:
    lines = [line for line in stdout.decode().splitlines() if line.strip()]
    assert lines, "plan printed nothing"
    assert lines[0].split() == ["NAME", "SECRET", "LAYER"], lines[0]
    rows = {}
    for line in lines[1:]:
        cells = line.split()
        assert len(cells) == 3, f"row is not NAME SECRET LAYER: {line!r}"
        name, secret, layer = cells
        assert name not in rows, f"duplicate row {name}"
        assert secret in ("yes", "no"), line
        rows[name] = (secret, layer)
    return rows


def assert_one_line_error(proc, exit_code: int, *needles: str) -> str:
    assert proc.returncode == exit_code, describe(proc)
    assert proc.stdout == b"", describe(proc)
    err = proc.stderr.decode("utf-8", errors="replace")
    assert len(err.splitlines()) == 1, f"expected exactly one stderr line:\n{describe(proc)}"
    assert "Traceback" not in err and "Fatal error" not in err, describe(proc)
    for needle in needles:
        assert needle in err, f"{needle!r} not in stderr:\n{describe(proc)}"
    return err


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


# --------------------------------------------------------------------------
# the happy path


@pytest.mark.parametrize("log_level", [None, "trace"])
def test_plan_prints_names_flags_and_layers_never_values(home, examples, log_level):
    key_init(home)
    canary = f"canary-{secrets.token_hex(12)}".encode()
    extra = ["--secret", "SLACK_WEBHOOK"]
    if log_level:
        extra += ["--log-level", log_level]

    proc = run(example_args(examples, *extra), home, input=canary + b"\n")
    assert proc.returncode == 0, describe(proc)

    rows = parse_table(proc.stdout)
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
    assert_one_line_error(proc, 78, "SLACK_WEBHOOK")


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
    assert_one_line_error(proc, 65, "widget.yaml", "kind")


def test_bad_variable_name_in_manifest_is_located(home, tmp_path):
    key_init(home)
    path = write(
        tmp_path,
        "env-bad-name.yaml",
        "apiVersion: agentic.stigmer.ai/v1\n"  # 1
        "kind: Environment\n"  # 2
        "metadata:\n"  # 3
        "  name: bad\n"  # 4
        "spec:\n"  # 5
        "  data:\n"  # 6
        "    GOOD:\n"  # 7
        "      value: a\n"  # 8
        "    BAD-NAME:\n"  # 9
        "      value: b\n",  # 10
    )
    proc = run(["plan", "-f", path, "--env-ref", "bad"], home)
    err = assert_one_line_error(proc, 65, "env-bad-name.yaml", "BAD-NAME")
    m = re.search(r"env-bad-name\.yaml:(\d+)", err)
    assert m, f"no file:line in {err!r}"
    assert int(m.group(1)) == 9, f"line {m.group(1)} is not the BAD-NAME entry: {err!r}"


def test_bad_variable_name_in_env_file_is_located(home, examples, tmp_path):
    key_init(home)
    path = write(tmp_path, "bad.env", "# comment\nGOOD=1\n1BAD=x\nLATER=2\n")
    proc = run(
        ["plan", "-f", examples / "environment-base.yaml", "--env-ref", "base", "--env-file", path],
        home,
    )
    assert_one_line_error(proc, 65, "bad.env:3")
