"""A real third-party MCP server (mcp-server-time, from PyPI) launched through
`stigmer-exec mcp wrap` → `mcp run`, driven by the real MCP SDK client, from another
directory with a client's bare environment: what users do with Claude Desktop or Cursor."""

from __future__ import annotations

import asyncio
import json

from helpers import PYTHON, create_context, key_init, new_canary, ok, run, write_json


def call_time_server(command, args, env, cwd, errlog) -> tuple[set[str], str]:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=command, args=args, env=env, cwd=str(cwd))

    async def session_run():
        with open(errlog, "w") as err:
            async with stdio_client(params, errlog=err) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    tools = {t.name for t in (await session.list_tools()).tools}
                    result = await session.call_tool("get_current_time", {"timezone": "Europe/Paris"})
                    return tools, "".join(getattr(c, "text", "") for c in result.content)

    return asyncio.run(asyncio.wait_for(session_run(), 30))


def test_mcp_server_time_through_wrap(home, tmp_path):
    key_init(home)
    secret = new_canary("tz")
    ok(create_context(home, "tp-1", "--env", "ZONE=Europe/Paris", "--secret", "UNUSED_TOKEN", secret_stdin=secret))
    cfg = write_json(tmp_path / "claude.json", {"mcpServers": {"time": {
        "command": PYTHON, "args": ["-m", "mcp_server_time", "--local-timezone", "${ZONE}"],
        "env": {"API_TOKEN": "${UNUSED_TOKEN}"}}}})
    wrapped = json.loads(ok(run(["mcp", "wrap", "--execution-id", "tp-1", "--config", cfg], home)).stdout)
    entry = wrapped["mcpServers"]["time"]
    assert secret.decode() not in json.dumps(entry)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    tools, text = call_time_server(entry["command"], entry["args"], {"PATH": "/usr/bin:/bin"},
                                   elsewhere, tmp_path / "server-stderr")
    assert "get_current_time" in tools, tools
    assert "Europe/Paris" in text, text
    assert secret.decode() not in (tmp_path / "server-stderr").read_text()
