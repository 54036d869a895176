"""What the official Python client (mcp 2.x) shows a person when the gateway refuses a request at
the HTTP level (a wrong key): the gateway's own sentence, not "Server returned an error response".

usage: python refused.py BASE_URL
"""
import sys

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

BASE = sys.argv[1]


async def main():
    http = httpx2.AsyncClient(headers={"Authorization": "Bearer tak_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"})
    try:
        async with Client(streamable_http_client(f"{BASE}/mcp", http_client=http), mode="legacy") as client:
            await client.list_tools()
    except BaseException as error:  # the SDK raises inside a task group
        shown = repr(error)
        while isinstance(error, BaseExceptionGroup):
            error = error.exceptions[0]
        shown = str(error)
        print(f"shown: {shown}")
        return
    raise SystemExit("a wrong key was accepted")


anyio.run(main)
