"""Creating and deleting execution contexts over the gRPC API (operator token).

The server merges the named Agent/AgentInstance/Environments of its own store with the
values given here (the runtime layer), seals the context, and returns an execution token
that reads exactly that context. Errors are the launcher's exceptions (`errors`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence, Union
from urllib.parse import urlsplit

import grpc

from .errors import StigmerExecError, from_code
from .v1 import execution_context_pb2 as pb2
from .v1 import execution_context_pb2_grpc as pb2_grpc

# gRPC status → (launcher code, exit status): the server's own mapping, read backwards.
_CODES = {
    grpc.StatusCode.UNAUTHENTICATED: ("notPermitted", 77), grpc.StatusCode.PERMISSION_DENIED: ("notPermitted", 77),
    grpc.StatusCode.NOT_FOUND: ("notFound", 66), grpc.StatusCode.UNAVAILABLE: ("unavailable", 69),
    grpc.StatusCode.DEADLINE_EXCEEDED: ("unavailable", 69), grpc.StatusCode.FAILED_PRECONDITION: ("unresolved", 78),
    grpc.StatusCode.ALREADY_EXISTS: ("conflict", 65), grpc.StatusCode.INVALID_ARGUMENT: ("dataError", 65),
}
_MISSING = re.compile(r"missing required variables?: ([A-Za-z_][A-Za-z0-9_]*(?:, [A-Za-z_][A-Za-z0-9_]*)*)")


def create_context(execution_id: str, *, server: Optional[str] = None, operator_token: Optional[str] = None,
                   env: Optional[Mapping[str, str]] = None, secrets: Optional[Mapping[str, str]] = None,
                   agent: str = "", instance: str = "", environment_refs: Sequence[str] = (),
                   ttl_seconds: int = 0, replace: bool = False, tls_ca: Union[str, os.PathLike[str], None] = None,
                   allow_plaintext: bool = False, timeout: float = 30.0) -> str:
    """Create the context of `execution_id` on the server; return its execution token
    (`stx2_…`, returned once: the server keeps only a hash of it).

    `server` is grpc[s]://HOST:PORT (default $STIGMER_SERVER), `operator_token` the
    server's operator token (default $STIGMER_TOKEN), `tls_ca` a CA (PEM) for grpcs://.
    `env` holds plain values and `secrets` secret ones (both the runtime layer, on top of
    `agent`/`instance`/`environment_refs` from the server's store); `ttl_seconds` 0 is the
    server's default (24 h); `replace` overwrites an existing context of that id.
    Raises MissingVariables (a required variable has no value), NotFound (a resource is
    not in the server's store), NotPermitted, Unavailable, or StigmerExecError (conflict…).
    """
    data = {name: pb2.ExecutionValue(value=value) for name, value in (env or {}).items()}
    data.update({name: pb2.ExecutionValue(value=value, is_secret=True) for name, value in (secrets or {}).items()})
    request = pb2.CreateExecutionContextRequest(
        spec=pb2.ExecutionContextSpec(execution_id=execution_id, data=data), ttl_seconds=ttl_seconds,
        replace=replace, agent=agent, instance=instance, environment_refs=list(environment_refs))
    response = _call("CreateExecutionContext", request, server, operator_token, tls_ca, allow_plaintext, timeout)
    return str(response.execution_token)


def delete_context(execution_id: str, *, server: Optional[str] = None, operator_token: Optional[str] = None,
                   tls_ca: Union[str, os.PathLike[str], None] = None, allow_plaintext: bool = False,
                   timeout: float = 30.0) -> bool:
    """Delete the context of `execution_id` (its token stops working at once); True when
    there was one. Same server, token and TLS options as `create_context`."""
    request = pb2.DeleteExecutionContextRequest(execution_id=execution_id)
    response = _call("DeleteExecutionContext", request, server, operator_token, tls_ca, allow_plaintext, timeout)
    return bool(response.deleted)


def _call(method: str, request: Any, server: Optional[str], token: Optional[str],
          tls_ca: Union[str, os.PathLike[str], None], allow_plaintext: bool, timeout: float) -> Any:
    """One unary call of the service; gRPC errors as this package's exceptions."""
    with _service(server, token, tls_ca, allow_plaintext) as (stub, url, metadata):
        try:
            return getattr(stub, method)(request, metadata=metadata, timeout=timeout)
        except grpc.RpcError as error:
            raise _error(error, url) from None


@contextlib.contextmanager
def _service(server: Optional[str], token: Optional[str], tls_ca: Union[str, os.PathLike[str], None],
             allow_plaintext: bool) -> Iterator[tuple[pb2_grpc.ExecutionContextServiceStub, str, tuple[tuple[str, str]]]]:
    url = server or os.environ.get("STIGMER_SERVER", "")
    token = token or os.environ.get("STIGMER_TOKEN")
    parts = urlsplit(url)
    if parts.scheme not in ("grpc", "grpcs") or not parts.hostname or not parts.port:
        raise StigmerExecError(64, "usage", "the server must be grpc://HOST:PORT or grpcs://HOST:PORT "
                                            "(server= or STIGMER_SERVER)")
    if not token:
        raise StigmerExecError(64, "usage", "no operator token: pass operator_token= or set STIGMER_TOKEN")
    host = parts.hostname
    target = f"[{host}]:{parts.port}" if ":" in host else f"{host}:{parts.port}"
    if parts.scheme == "grpcs":
        roots = Path(tls_ca).read_bytes() if tls_ca else None
        channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=roots))
    elif allow_plaintext or _loopback(host):
        channel = grpc.insecure_channel(target)
    else:
        raise StigmerExecError(64, "usage", f"{url}: grpc:// (no TLS) to a host other than loopback sends the "
                                            "operator token in clear; use grpcs://, or allow_plaintext=True")
    with channel:
        yield pb2_grpc.ExecutionContextServiceStub(channel), url, (("authorization", f"Bearer {token}"),)  # type: ignore[no-untyped-call]


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _error(error: grpc.RpcError, url: str) -> StigmerExecError:
    """The launcher's exception for a gRPC status (the details name things, never values)."""
    code, status = _CODES.get(error.code(), ("internalError", 70))
    details = str(error.details() or code)
    match = _MISSING.search(details) if code == "unresolved" else None
    return from_code(code, status, f"{url}: {details}", match.group(1).split(", ") if match else ())
