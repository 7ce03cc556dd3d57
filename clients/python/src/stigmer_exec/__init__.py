"""stigmer-exec's Python client, for the runner side (a Temporal activity, say).

- `create_context` / `delete_context`: an execution's context over the gRPC API
  (operator token); `create_context` returns the execution token.
- `run` / `run_async` and `mcp_run` / `mcp_run_async`: start `stigmer-exec` with that
  token on a pipe; the command gets the context's values, the caller gets a `Completed`
  or one of the exceptions below. Values never pass through this package.
"""

from .api import create_context, delete_context
from .errors import ChildFailed, MissingVariables, NotFound, NotPermitted, StigmerExecError, Unavailable
from .launch import DEVNULL, PIPE, Completed, LaunchOptions, find_binary, mcp_run, mcp_run_async, run, run_async

__version__ = "0.2.0"
__all__ = [
    "create_context", "delete_context", "run", "run_async", "mcp_run", "mcp_run_async", "find_binary",
    "Completed", "LaunchOptions", "PIPE", "DEVNULL",
    "StigmerExecError", "MissingVariables", "NotPermitted", "Unavailable", "NotFound", "ChildFailed",
]
