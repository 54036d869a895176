"""Drives trainar-mcp with the official Python MCP client (mcp 2.x) over every transport.

usage: python mcp_clients.py BASE_URL ADMIN_KEY READ_TASKS_KEY TRAINAR_MCP_BINARY STDIO_DATA_DIR
(TRAINAR_MCP_BINARY "-" skips stdio: BASE_URL is then several replicas behind a load balancer.)
Exits non-zero on the first failed check; prints one line per passed check.
"""
import os
import sys

import anyio
import httpx2
from mcp import Client
from mcp import StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

BASE, ADMIN, READER, BINARY, STDIO_DATA = sys.argv[1:6]


def check(condition, what):
    if not condition:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok  {what}")


def transports(key, query=""):
    headers = {"Authorization": f"Bearer {key}"}
    yield "sse", "legacy", lambda: sse_client(f"{BASE}/sse{query}", headers=headers)
    for mode in ("legacy", "auto"):
        yield "streamable", mode, lambda: streamable_http_client(
            f"{BASE}/mcp{query}", http_client=httpx2.AsyncClient(headers=headers, timeout=30)
        )


async def all_tools(client):
    tools, cursor = [], None
    while True:
        page = await client.list_tools(cursor=cursor, cache_mode="refresh") if cursor else await client.list_tools()
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            return tools


def text(result):
    return "".join(getattr(c, "text", "") for c in result.content)


def expected_version(mode):
    """What each client mode must negotiate with us: auto takes the stateless era."""
    return "2026-07-28" if mode == "auto" else "2025-11-25"


async def admin_session(name, mode, connect):
    async with Client(connect(), mode=mode) as client:
        tag = f"[{name}/{mode}]"
        check(client.protocol_version == expected_version(mode), f"{tag} negotiated {client.protocol_version}")
        tools = await all_tools(client)
        names = {t.name for t in tools}
        check(len(tools) == 67, f"{tag} tools/list pages through all 67 tools ({len(tools)})")
        check("create_task" in names and "search_knowledge" in names, f"{tag} tools span categories")

        created = await client.call_tool("create_task", {"title": f"from python {name} {mode}"})
        check(not created.is_error and created.structured_content["title"].startswith("from python"), f"{tag} create_task")
        task_id = created.structured_content["id"]
        got = await client.call_tool("get_task", {"task_id": task_id})
        check(got.structured_content["id"] == task_id and task_id in text(got), f"{tag} get_task mirrors JSON as text")
        listed = await client.call_tool("list_tasks", {"limit": 2})
        check(len(listed.structured_content["data"]) <= 2 and "next_cursor" in listed.structured_content, f"{tag} list_tasks pages")
        me = await client.call_tool("list_api_keys", {})
        check(not me.is_error and me.structured_content["data"], f"{tag} list_api_keys (api_keys category)")

        bad = await client.call_tool("create_task", {"title": 5, "colour": "red"})
        check(bad.is_error and "title" in text(bad) and "colour" in text(bad), f"{tag} invalid arguments → isError naming every field")
        missing = await client.call_tool("get_task", {"task_id": "tsk_0000000000000000"})
        check(missing.is_error and "404" in text(missing) and "not_found" in text(missing), f"{tag} upstream 404 → isError with status and code")
        try:
            await client.call_tool("no_such_tool", {})
            check(False, f"{tag} unknown tool is a JSON-RPC error")
        except MCPError as error:
            check(error.error.code == -32602, f"{tag} unknown tool → -32602")
        if client.protocol_version == "2026-07-28":
            try:
                await client.send_ping()
                check(False, f"{tag} ping is not part of 2026-07-28")
            except MCPError as error:
                check(error.error.code == -32601, f"{tag} ping → -32601 (removed in 2026-07-28)")
        else:
            await client.send_ping()
            check(True, f"{tag} ping")


def sample_arguments(schema):
    """Values for a skill's required arguments, enough to pass its input_schema."""
    samples = {"string": "FL-7", "integer": 1, "number": 1, "boolean": True}
    properties = schema.get("properties", {})
    return {name: samples.get(properties[name].get("type"), "x") for name in schema.get("required", [])}


async def progress_session(name, mode, connect):
    """A long tool (execute_skill) with a progressToken sends increasing progress; log messages
    arrive when asked for (logging/setLevel, or the per-request logLevel of 2026-07-28)."""
    logs, progress = [], []

    async def on_log(params):
        logs.append(params)

    async def on_progress(value, total, message):
        progress.append((value, total, message))

    async with Client(connect(), mode=mode, logging_callback=on_log, log_level="info") as client:
        tag = f"[{name}/{mode} progress]"
        if client.protocol_version != "2026-07-28":
            await client.set_logging_level("info")
        skills = await client.call_tool("list_skills", {"status": "published", "limit": 1})
        skill = skills.structured_content["data"][0]
        arguments = {"skill_id": skill["id"], "dry_run": True, "arguments": sample_arguments(skill["input_schema"])}
        result = await client.call_tool("execute_skill", arguments, progress_callback=on_progress)
        check(not result.is_error, f"{tag} execute_skill dry run: {text(result)[:80]}")
        values = [value for value, _, _ in progress]
        check(len(values) >= 2 and values == sorted(set(values)), f"{tag} progress increases: {values}")
        check(progress[-1][1] == progress[-1][0], f"{tag} the last progress states the total")
        await anyio.sleep(0.2)  # the log line may trail the result on SSE
        check(any(getattr(log, "data", {}).get("tool") == "execute_skill" for log in logs), f"{tag} notifications/message for the call")


async def reader_session(name, mode, connect):
    async with Client(connect(), mode=mode) as client:
        tag = f"[{name}/{mode} read:tasks]"
        names = sorted(t.name for t in await all_tools(client))
        check(names == ["get_task", "list_tasks"], f"{tag} lists only what the key may call: {names}")
        denied = await client.call_tool("create_task", {"title": "nope"})
        check(denied.is_error and "write:tasks" in text(denied) and "read:tasks" in text(denied), f"{tag} denial names missing and held scopes")


async def selected_session(name, mode, connect):
    async with Client(connect(), mode=mode) as client:
        names = sorted(t.name for t in await all_tools(client))
        check(names == ["get_task", "list_tasks"], f"[{name}/{mode} ?toolsets=tasks&read_only=true] {names}")


def stdio_transport():
    """`trainar-mcp stdio` over its own embedded sandbox, acting as that sandbox's admin key."""
    env = dict(os.environ, TRAINAR_SANDBOX_ADMIN_KEY=ADMIN, TRAINAR_API_KEY=ADMIN, TRAINAR_TOOLS_PAGE_SIZE="20")
    params = StdioServerParameters(command=BINARY, args=["stdio", "--data-dir", STDIO_DATA], env=env)
    return stdio_client(params)


async def main():
    stdio = BINARY != "-"
    if stdio:
        await admin_session("stdio", "legacy", stdio_transport)
    for name, mode, connect in transports(ADMIN):
        await admin_session(name, mode, connect)
    if stdio:
        await progress_session("stdio", "legacy", stdio_transport)
    for name, mode, connect in transports(ADMIN):
        await progress_session(name, mode, connect)
    for name, mode, connect in transports(READER):
        await reader_session(name, mode, connect)
    for name, mode, connect in transports(ADMIN, "?toolsets=tasks&read_only=true"):
        await selected_session(name, mode, connect)
    print("python mcp client: all checks passed")


anyio.run(main)
