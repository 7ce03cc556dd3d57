"""The exceptions of the client: one per failure a caller acts on differently.

Every message comes from stigmer-exec (its stderr line, its `--error-fd` record, or the
server's status text), which names variables, files and servers, never a value.
"""

from __future__ import annotations

import json
import signal as _signal
from typing import Any

#: The launcher's exit status for each code of its `--error-fd` record.
STATUS = {"usage": 64, "dataError": 65, "conflict": 65, "notFound": 66, "unavailable": 69,
          "internalError": 70, "ioError": 74, "notPermitted": 77, "unresolved": 78,
          "notExecutable": 126, "commandNotFound": 127}


class StigmerExecError(Exception):
    """stigmer-exec (the launcher, or the server) refused or failed: nothing ran, or the
    command did not succeed (`ChildFailed`). `status` is the exit status, `code` the
    launcher's code (see STATUS), `message` its one line."""

    def __init__(self, status: int, code: str, message: str = "") -> None:
        self.status, self.code, self.message = status, code, message or code
        super().__init__(f"{self.message} (stigmer-exec: {code}, status {status})")


class MissingVariables(StigmerExecError):
    """Variables the launch needs are not in the context (78); `names` lists them."""

    def __init__(self, status: int, code: str, message: str = "", names: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__(status, code, message)
        self.names: tuple[str, ...] = tuple(names)


class NotPermitted(StigmerExecError):
    """Refused (77): a bad or expired token, a context that does not exist or was deleted
    (the server does not tell which), a server key that does not match, tampering."""


class Unavailable(StigmerExecError):
    """The server (or store) did not answer within the fetch timeout (69): retry later."""


class NotFound(StigmerExecError):
    """Something named does not exist (66): an MCP server in the config, a resource the
    server is asked to merge."""


class ChildFailed(StigmerExecError):
    """The command ran and exited with a non-zero status, or was killed by a signal
    (`status` 128+N, `signal` N). `result` holds what was captured."""

    def __init__(self, status: int, signal: int | None = None, result: Any = None) -> None:
        how = (f"was killed by {_signal.Signals(signal).name}" if signal in _signal.valid_signals()
               else f"was killed by signal {signal}") if signal else f"exited with status {status}"
        super().__init__(status, "childFailed", f"the command {how}")
        self.signal, self.result = signal, result


_CLASSES: dict[str, type[StigmerExecError]] = {
    "unresolved": MissingVariables, "notPermitted": NotPermitted, "unavailable": Unavailable, "notFound": NotFound}


def from_record(line: bytes, status: int, stderr: bytes | None = None) -> StigmerExecError:
    """The exception for one `--error-fd` record. When the record's message is empty (an
    error the fetch helper already reported on stderr), the launcher's stderr line is used."""
    try:
        record = json.loads(line)
        code, message, names = str(record["code"]), str(record.get("message") or ""), record.get("names") or []
        status = int(record.get("status", status))
    except (ValueError, KeyError, TypeError):
        return StigmerExecError(status, "internalError", "stigmer-exec wrote an unreadable error record")
    if not message and stderr:
        lines = [ln for ln in stderr.decode(errors="replace").splitlines() if ln.startswith("stigmer-exec: ")]
        message = lines[-1].removeprefix("stigmer-exec: ") if lines else ""
    return from_code(code, status, message, names)


def from_code(code: str, status: int, message: str, names: list[str] | tuple[str, ...] = ()) -> StigmerExecError:
    """The exception class for a launcher code (`names` only for MissingVariables)."""
    cls = _CLASSES.get(code, StigmerExecError)
    if cls is MissingVariables:
        return MissingVariables(status, code, message, [str(n) for n in names])
    return cls(status, code, message)
