"""A remote MCP server (and two tiny HTTP stand-ins) for the tests of the HTTP bridge.

Built with the official MCP Python SDK (MCPServer) and served by uvicorn on 127.0.0.1.
Used by test_mcp_http.py (the server `stigmer-exec mcp run` bridges to) and by
benchmarks/mcp-bridge.py.

    python3 mcp_http_server.py --transport streamable-http|sse --port N
        [--token T | --token-file F] [--record FILE] [--json-response]
        [--tls-cert F --tls-key F]
    python3 mcp_http_server.py --redirect-to URL --port N [--record FILE] [--tls-cert F --tls-key F]
    python3 mcp_http_server.py --recorder --port N [--record FILE] [--tls-cert F --tls-key F]
    python3 mcp_http_server.py --html --port N [--record FILE]
    python3 mcp_http_server.py --echo-error --port N [--record FILE]
    python3 mcp_http_server.py --stall --port N [--record FILE]
    python3 mcp_http_server.py --forget-sessions --port N [--token T] [--record FILE]

- MCP mode (the default): streamable HTTP at /mcp (stateful sessions, SSE responses, or
  JSON ones with --json-response), or the legacy HTTP+SSE transport at /sse (messages are
  POSTed to the SDK's /messages/?session_id=…). With --token/--token-file EVERY request
  must carry `Authorization: Bearer <token>`, else 401 with a short text body.
- --redirect-to URL: every request is answered `307` with `Location: URL + <request path>`
  (the query string is not kept). URL is an origin such as http://127.0.0.1:8001.
- --recorder: every request is answered `401` with a short text body.
- --html: every request is answered `200` with an HTML page (a url that is not an MCP
  endpoint, such as a login page).
- --echo-error: every request is answered `500` with a text that echoes what it was sent
  — the Authorization header as is, percent-encoded and JSON-escaped, and the raw query
  string — as careless servers' error pages do.
- --stall: every request is answered `200 text/event-stream`, then nothing, until the
  client goes (a server that hangs mid-answer).
- --forget-sessions: the MCP server, except that every request carrying an
  Mcp-Session-Id is answered `404` (a server that loses each session at once).

--record FILE appends one JSON line per HTTP request received, written when the request's
body has been read (before it is answered):
    {"method", "path", "query", "headers": {lower-cased name: value}, "body": utf-8 text, ≤ 2 kB}
and, from the `slow` tool, event lines {"event": "cancelled", "tool": "slow", "step": N}
(event lines have no "method").

Tools (MCP mode):
- echo(text) -> text
- whoami() -> {"headers": {…}, "query": {name: sha256 hex}, "authorization": sha256 hex | None}
  The HTTP request that carried this call: its headers (lower-cased; authorization,
  cookie and proxy-authorization left out) and digests of the query values and of the
  Authorization header — never the values, which may be secrets.
- slow(seconds, steps) -> "done": `steps` times: a progress notification (i/steps) and
  an info log message, then sleep seconds/steps. A cancellation is recorded (see above).
  With --json-response these notifications go on the session's GET stream (a JSON
  response body holds only the result, and the SDK drops notifications tied to it).
- big(size) -> a text of exactly `size` ASCII bytes (big_text(size)), unstructured.

Prints `ready <port>` on stdout once listening (`--port 0` picks a free port). SIGTERM
(or SIGINT) shuts it down and it exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import signal
import string
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import anyio
import uvicorn

from mcp.server.mcpserver import Context, MCPServer

warnings.simplefilter("ignore")  # ctx.info is deprecated as of 2026-07-28; still what clients show

SECRET_HEADERS = {"authorization", "cookie", "proxy-authorization"}
BODY_LIMIT = 2048
RECORD: Path | None = None
JSON_RESPONSE = False  # --json-response


def big_text(size: int) -> str:
    """The text big(size) returns: a repeating alphabet, so a corruption shows."""
    alphabet = string.ascii_letters + string.digits
    return (alphabet * (size // len(alphabet) + 1))[:size]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def record(entry: dict):
    """Append one JSON line to the record file, if there is one."""
    if RECORD is None:
        return
    with open(RECORD, "a") as f:
        f.write(json.dumps(entry) + "\n")


# --------------------------------------------------------------------------
# the MCP server

server = MCPServer("stigmer-remote-probe", log_level="WARNING")


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
def whoami(ctx: Context) -> dict:
    """What the HTTP request carrying this call held: headers and digests of secrets."""
    request = ctx.request_context.request
    headers = {name.lower(): value for name, value in request.headers.items()}
    return {
        "headers": {name: value for name, value in headers.items() if name not in SECRET_HEADERS},
        "query": {name: sha256(value) for name, value in request.query_params.multi_items()},
        "authorization": sha256(headers["authorization"]) if "authorization" in headers else None,
    }


@server.tool()
async def slow(seconds: float, steps: int, ctx: Context) -> str:
    """Report progress and log `steps` times over `seconds`, then return "done"."""
    meta = ctx.request_context.meta or {}
    token = meta.get("progress_token", meta.get("progressToken"))
    step = 0
    try:
        for step in range(1, steps + 1):
            message = f"step {step}/{steps}"
            if JSON_RESPONSE:
                # A JSON response body carries only the result (the SDK drops notifications
                # tied to the request): send them unrelated, so they go on the GET stream.
                if token is not None:
                    await ctx.session.send_progress_notification(token, step, steps, message)
                await ctx.session.send_log_message(level="info", data=f"slow: {message}", logger=None)
            else:
                await ctx.report_progress(step, steps, message)
                await ctx.info(f"slow: {message}")
            await anyio.sleep(seconds / max(steps, 1))
    except anyio.get_cancelled_exc_class():
        record({"event": "cancelled", "tool": "slow", "step": step})
        raise
    return "done"


@server.tool(structured_output=False)
def big(size: int) -> str:
    """A text of exactly `size` bytes."""
    return big_text(size)


# --------------------------------------------------------------------------
# ASGI wrappers: recording, the bearer check, and the two stand-ins


async def send_text(send, status: int, text: str, headers=()):
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


class Recording:
    """Reads each request's body, records the request, then hands it on unchanged."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            name, value = name.decode("latin-1").lower(), value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        record({
            "method": scope["method"],
            "path": scope["path"],
            "query": scope["query_string"].decode("latin-1"),
            "headers": headers,
            "body": body[:BODY_LIMIT].decode("utf-8", errors="replace"),
        })
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class ForgetSessions:
    """404 for any request that names a session: initialize works, nothing after it."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and b"mcp-session-id" in dict(scope["headers"]):
            return await send_text(send, 404, "session not found\n")
        await self.app(scope, receive, send)


class BearerCheck:
    """401 for any HTTP request without `Authorization: Bearer <token>`."""

    def __init__(self, app, token: str):
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                return await send_text(send, 401, "unauthorized\n", [(b"www-authenticate", b"Bearer")])
        await self.app(scope, receive, send)


def redirect_app(target: str):
    target = target.rstrip("/")

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return await lifespan_noop(receive, send)
        location = (target + scope["path"]).encode()
        await send_text(send, 307, "redirected\n", [(b"location", location)])

    return app


async def recorder_app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan_noop(receive, send)
    await send_text(send, 401, "unauthorized\n")


async def html_app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan_noop(receive, send)
    body = b"<html><body>Please sign in</body></html>"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def echo_error_app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan_noop(receive, send)
    from urllib.parse import quote
    headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
    auth = headers.get("authorization", "")
    text = (f"bad credentials: {auth} (encoded {quote(auth, safe='')}) (json {json.dumps(auth)}) "
            f"query={scope['query_string'].decode()}")
    await send_text(send, 500, text)


async def stall_app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan_noop(receive, send)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    await send({"type": "http.response.body", "body": b"", "more_body": True})
    while (await receive())["type"] != "http.disconnect":
        pass


async def lifespan_noop(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


# --------------------------------------------------------------------------
# serving


class QuietServer(uvicorn.Server):
    """uvicorn re-raises a caught SIGTERM after shutting down (death by signal); here a
    SIGTERM or SIGINT ends the server and the process exits 0."""

    @contextmanager
    def capture_signals(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.handle_exit)
        yield


async def serve(app, args) -> int:
    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=1, ssl_certfile=args.tls_cert, ssl_keyfile=args.tls_key)
    http = QuietServer(config)
    task = asyncio.create_task(http.serve())
    while not http.started:
        if task.done():
            await task
            return 1
        await asyncio.sleep(0.01)
    port = http.servers[0].sockets[0].getsockname()[1]
    print(f"ready {port}", flush=True)
    await task
    return 0


def main() -> int:
    global RECORD, JSON_RESPONSE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=["streamable-http", "sse"], default="streamable-http")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token")
    parser.add_argument("--token-file")
    parser.add_argument("--record")
    parser.add_argument("--json-response", action="store_true")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--redirect-to", metavar="URL")
    parser.add_argument("--recorder", action="store_true")
    parser.add_argument("--html", action="store_true")
    parser.add_argument("--echo-error", action="store_true")
    parser.add_argument("--stall", action="store_true")
    parser.add_argument("--forget-sessions", action="store_true")
    args = parser.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if args.token and args.token_file:
        parser.error("--token and --token-file are exclusive")
    RECORD = Path(args.record) if args.record else None
    JSON_RESPONSE = args.json_response
    token = args.token or (Path(args.token_file).read_text().strip() if args.token_file else None)

    if args.redirect_to:
        app = redirect_app(args.redirect_to)
    elif args.recorder:
        app = recorder_app
    elif args.html:
        app = html_app
    elif args.echo_error:
        app = echo_error_app
    elif args.stall:
        app = stall_app
    elif args.transport == "sse":
        app = server.sse_app()
    else:
        app = server.streamable_http_app(json_response=args.json_response)
        if args.forget_sessions:
            app = ForgetSessions(app)
    if token and not (args.redirect_to or args.recorder or args.html or args.echo_error or args.stall):
        app = BearerCheck(app, token)
    return asyncio.run(serve(Recording(app), args))


if __name__ == "__main__":
    sys.exit(main())
