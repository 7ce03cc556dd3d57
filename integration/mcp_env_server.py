"""A small stdio MCP server that reports what environment it was launched with.

Used by test_mcp.py as the server `stigmer-exec mcp run` launches. Built with the
official MCP Python SDK (MCPServer). Tools:

- env_names()           sorted names of the environment variables it received
- env_value(name)       the value of a NON-secret variable (None when unset)
- secret_digest(name)   sha256 hex of os.environ[name] (None when unset)
- cwd()                 os.getcwd()
- argv()                sys.argv[1:]
- pid()                 os.getpid()
- env_digests()         [[NAME, sha256 hex of its value], ...] for every variable

Only protocol goes to stdout; logging goes to stderr. It exits on stdin EOF.
Optional control variables (set as plain config env):

- SHUTDOWN_MARKER  a file; a normal interpreter exit (the server loop ended on
                   stdin EOF) writes "clean-exit" into it, so a test can tell a
                   clean shutdown from a kill.
- TERM_EXIT_CODE   when set, SIGTERM writes "sigterm" into SHUTDOWN_MARKER and
                   exits with this code; otherwise SIGTERM keeps Python's
                   default action (death by the signal).
- STARTED_MARKER   a file the server writes its pid into at start-up.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import signal
import sys

from mcp.server.mcpserver import MCPServer

logging.basicConfig(stream=sys.stderr, level=logging.WARNING)

server = MCPServer("stigmer-env-probe")


@server.tool()
def env_names() -> list[str]:
    """Sorted names of the environment variables this server received."""
    return sorted(os.environ)


@server.tool()
def env_value(name: str) -> str | None:
    """The value of a non-secret environment variable, or None when unset."""
    return os.environ.get(name)


@server.tool()
def secret_digest(name: str) -> str | None:
    """sha256 hex digest of the named variable's value, or None when unset."""
    value = os.environb.get(os.fsencode(name))
    if value is None:
        return None
    return hashlib.sha256(value).hexdigest()


@server.tool()
def cwd() -> str:
    """The server's working directory."""
    return os.getcwd()


@server.tool()
def argv() -> list[str]:
    """The server's arguments (without the script name)."""
    return sys.argv[1:]


@server.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


@server.tool()
def env_digests() -> list[list[str]]:
    """[NAME, sha256 hex of its value] for every variable, sorted by name."""
    return [[name, hashlib.sha256(os.environb[os.fsencode(name)]).hexdigest()] for name in sorted(os.environ)]


def _write_marker(variable: str, text: str) -> None:
    path = os.environ.get(variable)
    if path:
        with open(path, "w") as f:
            f.write(text)


def _install_term_handler() -> None:
    code = os.environ.get("TERM_EXIT_CODE")
    if not code:
        return

    def on_term(signum, frame):
        _write_marker("SHUTDOWN_MARKER", "sigterm")
        os._exit(int(code))

    signal.signal(signal.SIGTERM, on_term)


def main() -> None:
    _install_term_handler()
    _write_marker("STARTED_MARKER", str(os.getpid()))
    server.run("stdio")
    # Reached only when the server loop ended by itself (stdin EOF).
    atexit.register(_write_marker, "SHUTDOWN_MARKER", "clean-exit")


if __name__ == "__main__":
    main()
