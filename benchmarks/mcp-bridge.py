#!/usr/bin/env python3
"""The latency a tools/call gains through the MCP HTTP bridge (`stigmer-exec mcp run` on a
`type: http` server) over the MCP SDK's own streamable-HTTP client calling the server
directly. Both sessions are open at once against the same server
(integration/mcp_http_server.py on loopback, bearer token checked); each round calls
echo("ping") once on each, in alternating order, so drift hits both alike. Then the same
with the thinnest clients (JSON-RPC lines on the bridge's pipes against http.client on one
keep-alive connection), where the difference is the bridge's own cost. Prints p50 and p99
of each, and the differences, in milliseconds.

    ROUNDS=500 benchmarks/mcp-bridge.py [PATH-TO-stigmer-exec]   (default dist/stigmer-exec)

It builds its own STIGMER_HOME (key init, a context `bench` with ORG=x and the secret
REMOTE_TOKEN) in a work folder under $BENCH_PARENT (default ~/.cache), removed at the end.
"""
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

REPO = Path(__file__).resolve().parent.parent
SERVER = REPO / "integration" / "mcp_http_server.py"
WARMUP = 20

binary = Path(sys.argv[1] if len(sys.argv) > 1 else REPO / "dist" / "stigmer-exec").resolve()
rounds = int(os.environ.get("ROUNDS", "500"))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def timed_echo(session: ClientSession) -> float:
    start = time.perf_counter()
    result = await session.call_tool("echo", {"text": "ping"})
    elapsed = time.perf_counter() - start
    if result.is_error or result.content[0].text != "ping":
        raise SystemExit(f"echo failed: {result}")
    return elapsed


async def measure(bridge: StdioServerParameters, url: str, token: str) -> dict[str, list[float]]:
    headers = {"Authorization": f"Bearer {token}", "X-Org": "x"}
    async with stdio_client(bridge) as (read, write), ClientSession(read, write) as bridged:
        async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http:
            async with streamable_http_client(url, http_client=http) as streams:
                async with ClientSession(streams[0], streams[1]) as direct:
                    await bridged.initialize()
                    await direct.initialize()
                    sessions = {"bridge": bridged, "direct": direct}
                    times: dict[str, list[float]] = {name: [] for name in sessions}
                    for i in range(WARMUP + rounds):
                        order = ["bridge", "direct"] if i % 2 == 0 else ["direct", "bridge"]
                        for name in order:
                            elapsed = await timed_echo(sessions[name])
                            if i >= WARMUP:
                                times[name].append(elapsed)
                    return times


def raw_measure(bridge_argv: list[str], env: dict, url: str, token: str) -> dict[str, list[float]]:
    """The same calls with the thinnest clients on both sides, so the difference is the
    bridge's own cost: JSON-RPC lines written to and read from the bridge's pipes, against
    http.client POSTing to the server on one keep-alive connection (answers read whole)."""
    import http.client
    from urllib.parse import urlsplit

    def line(method: str, params: dict, id_: int | None) -> bytes:
        message = {"jsonrpc": "2.0", "method": method, "params": params}
        if id_ is not None:
            message["id"] = id_
        return json.dumps(message).encode()

    init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}
    call = {"name": "echo", "arguments": {"text": "ping"}}
    proc = subprocess.Popen(bridge_argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port)
    headers = {"Authorization": f"Bearer {token}", "X-Org": "x", "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream"}

    def bridged(message: bytes) -> bytes:
        proc.stdin.write(message + b"\n")
        proc.stdin.flush()
        return proc.stdout.readline()

    def direct(message: bytes) -> bytes:
        conn.request("POST", parts.path, body=message, headers=headers)
        response = conn.getresponse()
        body = response.read()
        if response.getheader("mcp-session-id"):
            headers["Mcp-Session-Id"] = response.getheader("mcp-session-id")
        return body

    try:
        for send in (bridged, direct):
            answer = send(line("initialize", init, 0))
            if b'"result"' not in answer:
                raise SystemExit(f"raw initialize failed: {answer[:200]!r}")
        headers["MCP-Protocol-Version"] = "2025-11-25"
        proc.stdin.write(line("notifications/initialized", {}, None) + b"\n")
        proc.stdin.flush()
        direct(line("notifications/initialized", {}, None))
        times: dict[str, list[float]] = {"bridge (raw)": [], "direct (raw)": []}
        for i in range(WARMUP + rounds):
            order = [("bridge (raw)", bridged), ("direct (raw)", direct)]
            for name, send in order if i % 2 == 0 else reversed(order):
                start = time.perf_counter()
                answer = send(line("tools/call", call, i + 1))
                elapsed = time.perf_counter() - start
                if b'"ping"' not in answer:
                    raise SystemExit(f"raw echo failed: {answer[:200]!r}")
                if i >= WARMUP:
                    times[name].append(elapsed)
        return times
    finally:
        conn.close()
        proc.stdin.close()
        proc.wait(timeout=30)


def main() -> int:
    if not binary.is_file():
        raise SystemExit(f"no stigmer-exec at {binary} (pass its path)")
    parent = Path(os.environ.get("BENCH_PARENT", Path.home() / ".cache"))
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="stigmer-bench.", dir=parent))
    server = None
    try:
        home = work / "home"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(Path.home()), "STIGMER_HOME": str(home)}
        token = "bench-" + secrets.token_hex(16)
        subprocess.run([binary, "key", "init"], env=env, check=True, stderr=subprocess.DEVNULL)
        subprocess.run([binary, "context", "create", "--execution-id", "bench", "--env", "ORG=x",
                        "--secret", "REMOTE_TOKEN"], env=env, input=(token + "\n").encode(), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        token_file = work / "token"
        token_file.write_text(token + "\n")
        server = subprocess.Popen([sys.executable, SERVER, "--port", "0", "--token-file", token_file],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        ready = server.stdout.readline().split()
        if ready[:1] != [b"ready"]:
            raise SystemExit("the MCP server did not start")
        url = f"http://127.0.0.1:{int(ready[1])}/mcp"
        config = work / "mcp.json"
        config.write_text(json.dumps({"mcpServers": {"remote": {
            "type": "http", "url": url,
            "headers": {"Authorization": "Bearer ${REMOTE_TOKEN}", "X-Org": "${ORG}"},
        }}}))
        bridge = StdioServerParameters(
            command=str(binary),
            args=["mcp", "run", "--execution-id", "bench", "--config", str(config), "--server", "remote"],
            env={"STIGMER_HOME": str(home)},
        )
        times = asyncio.run(measure(bridge, url, token))
        times.update(raw_measure([str(binary), *bridge.args], {**env}, url, token))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)

    p = {name: (percentile(v, 50) * 1000, percentile(v, 99) * 1000) for name, v in times.items()}
    for name, (p50, p99) in p.items():
        print(f"mcp-bridge: {name}: p50 {p50:.3f} ms, p99 {p99:.3f} ms ({rounds} calls)")
    for bridged, direct in (("bridge", "direct"), ("bridge (raw)", "direct (raw)")):
        print(f"mcp-bridge: {bridged} - {direct}: p50 {p[bridged][0] - p[direct][0]:+.3f} ms, "
              f"p99 {p[bridged][1] - p[direct][1]:+.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
