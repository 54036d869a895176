"""Judges trainar-mcp's schema dialects with the vendors' own code, over Streamable HTTP.

usage: python dialects.py BASE_URL ADMIN_KEY
For `?schema=openai`: openai-agents' ensure_strict_json_schema must return every inputSchema
unchanged. For `?schema=gemini`: google-genai's process_schema with a Gemini Developer API client,
then types.FunctionDeclaration, must accept every inputSchema, and each must use only keywords of
Gemini's documented `parameters` subset. The same for the discovery meta-tools. In both, every
read-only tool without required arguments is called with null for every argument, and must succeed;
and over legacy SSE, search and a call through call_tool with JSON-text arguments work.
Exits non-zero on the first failed check; prints one line per passed check and the pass counts.
"""
import copy
import sys

import anyio
import httpx2
from agents.strict_schema import ensure_strict_json_schema
from google import genai
from google.genai import _transformers, types
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

BASE, ADMIN = sys.argv[1:3]

# Gemini's function `parameters` (an OpenAPI 3.0 Schema object, narrowed), as documented.
GEMINI_KEYWORDS = {
    "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
    "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
    "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum",
}
GEMINI_TYPES = {"string", "number", "integer", "boolean", "array", "object"}
GEMINI_FORMATS = {"enum", "date-time"}


def check(condition, what):
    if not condition:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok  {what}")


def gemini_subset_problems(schema, at="(root)"):
    problems = [f"{at}: keyword {k}" for k in schema if k not in GEMINI_KEYWORDS]
    if not isinstance(schema.get("type"), str) or schema["type"] not in GEMINI_TYPES:
        problems.append(f"{at}: type {schema.get('type')!r} is not one type")
    if "format" in schema and (schema["type"] != "string" or schema["format"] not in GEMINI_FORMATS):
        problems.append(f"{at}: format {schema['format']}")
    for name, sub in schema.get("properties", {}).items():
        problems += gemini_subset_problems(sub, f"{at}.{name}")
    if "items" in schema:
        problems += gemini_subset_problems(schema["items"], f"{at}[]")
    return problems


def optional(schema, name):
    """Optional in either dialect: not required (Gemini), or required but nullable (OpenAI)."""
    kind = schema["properties"][name].get("type")
    return name not in schema.get("required", []) or (isinstance(kind, list) and "null" in kind)


def openai_verdict(tool):
    try:
        strict = ensure_strict_json_schema(copy.deepcopy(tool.input_schema))
    except Exception as error:  # the SDK raises UserError or TypeError on what it cannot make strict
        return f"raises {error}"
    return None if strict == tool.input_schema else "was rewritten"


def gemini_verdict(tool, client):
    problems = gemini_subset_problems(tool.input_schema)
    if problems:
        return "; ".join(problems)
    schema = copy.deepcopy(tool.input_schema)
    try:
        _transformers.process_schema(schema, client._api_client)
        types.FunctionDeclaration(name=tool.name, description=tool.description, parameters=schema)
    except Exception as error:  # ValueError or pydantic's ValidationError
        return f"rejected: {error}"
    return None


async def judge(dialect):
    headers = {"Authorization": f"Bearer {ADMIN}"}
    connect = streamable_http_client(
        f"{BASE}/mcp?schema={dialect}", http_client=httpx2.AsyncClient(headers=headers, timeout=30)
    )
    gemini = genai.Client(api_key="x")  # the Developer API flavour; constructing it needs no network
    async with Client(connect, mode="legacy") as client:
        tools = (await client.list_tools()).tools
        check(len(tools) == 67, f"[{dialect}] 67 tools listed")
        failures = {}
        for tool in tools:
            verdict = openai_verdict(tool) if dialect == "openai" else gemini_verdict(tool, gemini)
            if verdict:
                failures[tool.name] = verdict
        passed = len(tools) - len(failures)
        print(f"{dialect}: {passed}/{len(tools)} inputSchemas accepted by the vendor's code")
        for name, verdict in failures.items():
            print(f"  {name}: {verdict}")
        check(not failures, f"[{dialect}] every inputSchema accepted")

        listing = [
            t for t in tools
            if t.annotations.read_only_hint
            and all(optional(t.input_schema, name) for name in t.input_schema["properties"])
        ]
        for tool in listing:
            nulls = {name: None for name in tool.input_schema["properties"]}
            result = await client.call_tool(tool.name, nulls)
            text = "".join(getattr(c, "text", "") for c in result.content)
            check(not result.is_error, f"[{dialect}] {tool.name} with every argument null: {text[:120]}")
        check(len(listing) >= 20, f"[{dialect}] {len(listing)} list tools called with nulls")


async def judge_meta_tools(dialect):
    """search_tools and call_tool (discovery mode) must be as acceptable as the catalogue."""
    headers = {"Authorization": f"Bearer {ADMIN}"}
    connect = streamable_http_client(
        f"{BASE}/mcp?schema={dialect}&discovery=search",
        http_client=httpx2.AsyncClient(headers=headers, timeout=30),
    )
    gemini = genai.Client(api_key="x")
    async with Client(connect, mode="legacy") as client:
        tools = (await client.list_tools()).tools
        check([t.name for t in tools] == ["search_tools", "call_tool"], f"[{dialect}] discovery lists the meta-tools")
        for tool in tools:
            verdict = openai_verdict(tool) if dialect == "openai" else gemini_verdict(tool, gemini)
            check(verdict is None, f"[{dialect}] {tool.name}'s inputSchema accepted: {verdict}")


async def legacy_sse(dialect):
    """The same options reach a legacy SSE connection: search, then a call with nulls."""
    headers = {"Authorization": f"Bearer {ADMIN}"}
    connect = sse_client(f"{BASE}/sse?schema={dialect}&discovery=search", headers=headers)
    async with Client(connect, mode="legacy") as client:
        names = [t.name for t in (await client.list_tools()).tools]
        check(names == ["search_tools", "call_tool"], f"[{dialect}/sse] discovery lists the meta-tools")
        found = await client.call_tool("search_tools", {"query": "open tasks", "limit": None})
        check("list_tasks" in text_of(found), f"[{dialect}/sse] search_tools finds list_tasks")
        page = await client.call_tool("call_tool", {"name": "list_tasks", "arguments": '{"limit": 1, "cursor": null}'})
        check(not page.is_error, f"[{dialect}/sse] call_tool with JSON-text arguments: {text_of(page)[:120]}")


def text_of(result):
    return "".join(getattr(c, "text", "") for c in result.content)


async def main():
    for dialect in ("openai", "gemini"):
        await judge(dialect)
        await judge_meta_tools(dialect)
        await legacy_sse(dialect)
    print("all checks passed")


anyio.run(main)
