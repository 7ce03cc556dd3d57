"""A small stdio MCP server that tries to open files, for the sandbox tests.

Used by test_sandbox.py as a real server (the official MCP Python SDK, MCPServer) that
`stigmer-exec mcp run` starts under a Landlock profile. Tools:

- read(path)    open the file read-only and read it: "ok", or the errno name (e.g. EACCES)
- write(path)   create/truncate the file and write one byte: "ok", or the errno name

Contents are never returned. Only protocol goes to stdout; it exits on stdin EOF.
"""

from __future__ import annotations

import errno
import logging
import os
import sys

from mcp.server.mcpserver import MCPServer

logging.basicConfig(stream=sys.stderr, level=logging.WARNING)

server = MCPServer("stigmer-fs-probe")


def _errname(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno, str(exc.errno)) if exc.errno is not None else type(exc).__name__


@server.tool()
def read(path: str) -> str:
    """Open `path` read-only and read it; "ok" or the errno name."""
    try:
        with open(path, "rb") as f:
            f.read()
    except OSError as exc:
        return _errname(exc)
    return "ok"


@server.tool()
def write(path: str) -> str:
    """Create or truncate `path` and write one byte; "ok" or the errno name."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
    except OSError as exc:
        return _errname(exc)
    return "ok"


if __name__ == "__main__":
    server.run("stdio")
