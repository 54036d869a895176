"""A result over the gateway's --max-result-bytes, through the official Python client (mcp 2.x),
which checks structuredContent against a tool's outputSchema: the call must come back as a tool
error that says how to ask for less, never as a client-side exception.

usage: python large_result.py BASE_URL ADMIN_KEY
"""
import sys

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

BASE, ADMIN = sys.argv[1:3]


async def main():
    connect = streamable_http_client(
        f"{BASE}/mcp", http_client=httpx2.AsyncClient(headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
    )
    async with Client(connect, mode="legacy") as client:
        big = await client.call_tool("list_tasks", {"limit": 100})
        text = "".join(getattr(c, "text", "") for c in big.content)
        assert big.is_error, f"expected a tool error, got: {text[:200]}"
        assert "limit" in text and "cursor" in text, text
        small = await client.call_tool("list_tasks", {"limit": 1})
        assert not small.is_error and small.structured_content["data"], small
    print("large result: a tool error with advice, no client exception")


anyio.run(main)
