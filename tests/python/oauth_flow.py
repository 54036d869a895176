"""Signs in to trainar-mcp with the official Python MCP client's OAuth provider, headlessly.

usage: python oauth_flow.py BASE_URL
BASE_URL is a `serve` whose metadata names an authorization server (the embedded sandbox).

Over Streamable HTTP and over SSE, from nothing but the server's URL: the 401's challenge →
protected-resource metadata → authorization-server metadata → dynamic client registration →
the authorization endpoint (the redirect handler below reads the sign-in page, signs in as the
demo tenant's admin and submits the consent form, as a person would in a browser) → the code
for tokens → tools/list and tools/call with the access token → the access token treated as
expired, so the provider refreshes it (rotation) → another call in the same session.
Exits non-zero on the first failed check; prints one line per passed check.
"""
import re
import sys
import time
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urljoin, urlparse

import anyio
import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata

BASE = sys.argv[1]
REDIRECT = "http://127.0.0.1:9/callback"


def check(condition, what):
    if not condition:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok  {what}")


class Memory(TokenStorage):
    def __init__(self):
        self.tokens = None
        self.client = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, client_info):
        self.client = client_info


class Forms(HTMLParser):
    """The page's form: its method and action, and what submitting it sends (hidden fields,
    checked boxes and radios; the first radio of a group when none is checked), plus each
    radio's label text (to pick a user by role)."""

    def __init__(self):
        super().__init__()
        self.method, self.action, self.fields, self.radios = "get", "", [], []
        self._label = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.method, self.action = a.get("method", "get"), a.get("action", "")
        elif tag == "input":
            kind = a.get("type")
            if kind == "hidden" or (kind == "checkbox" and "checked" in a):
                self.fields.append((a["name"], a.get("value", "")))
            elif kind == "radio":
                self._label = [a["name"], a["value"], ""]
                self.radios.append(self._label)

    def handle_data(self, data):
        if self._label is not None:
            self._label[2] += data

    def handle_endtag(self, tag):
        if tag == "label":
            self._label = None


class Browser:
    """What a person does in the browser the client opens: sign in as the admin, allow."""

    def __init__(self):
        self.result = None
        self.pages = []

    async def redirect(self, authorization_url):
        async with httpx2.AsyncClient(timeout=30) as http:
            sign_in = await http.get(authorization_url)
            check(sign_in.status_code == 200, "the authorization endpoint shows the sign-in page")
            self.pages.append(sign_in.text)
            form = Forms()
            form.feed(sign_in.text)
            admin = next(r for r in form.radios if r[2].strip().endswith("admin"))
            consent = await http.get(
                urljoin(authorization_url, form.action),
                params=form.fields + [(admin[0], admin[1])],
            )
            check(consent.status_code == 200, "signing in as an admin shows the consent page")
            self.pages.append(consent.text)
            form = Forms()
            form.feed(consent.text)
            granted = [v for n, v in form.fields if n == "grant"]
            check(len(granted) > 0, f"the consent page offers {len(granted)} scopes to grant")
            answer = await http.post(
                urljoin(authorization_url, form.action),
                content=urlencode(form.fields + [("decision", "allow")]),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            check(answer.status_code == 303, f"allowing redirects to the client (got {answer.status_code})")
            location = answer.headers["location"]
            check(location.startswith(REDIRECT), "the redirect goes to the registered redirect URI")
            query = parse_qs(urlparse(location).query)
            check("code" in query and query["code"][0].startswith("tac_"), "the redirect carries a code")
            self.result = AuthorizationCodeResult(
                code=query["code"][0], state=query.get("state", [None])[0], iss=query.get("iss", [None])[0]
            )

    async def callback(self):
        return self.result


def provider(server_url, browser, storage):
    return OAuthClientProvider(
        server_url=server_url,
        client_metadata=OAuthClientMetadata(
            client_name="trainar-mcp oauth test",
            redirect_uris=[REDIRECT],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
        ),
        storage=storage,
        redirect_handler=browser.redirect,
        callback_handler=browser.callback,
    )


def text(result):
    return "".join(getattr(c, "text", "") for c in result.content)


async def flow(name, server_url, connect):
    tag = f"[{name}]"
    browser, storage = Browser(), Memory()
    auth = provider(server_url, browser, storage)
    async with Client(connect(auth), mode="legacy") as client:
        check(browser.result is not None, f"{tag} the client went through the authorization endpoint")
        check(storage.client is not None and storage.client.client_id.startswith("cli_"),
              f"{tag} the client registered itself (RFC 7591)")
        tokens = storage.tokens
        check(tokens.access_token.startswith("tat_") and tokens.refresh_token.startswith("tar_"),
              f"{tag} the code was exchanged for an access and a refresh token")
        check("manage:billing" in tokens.scope.split(), f"{tag} an admin granted every requested scope")
        tools = (await client.list_tools()).tools
        check(len(tools) > 10, f"{tag} tools/list with the access token lists {len(tools)} tools")
        result = await client.call_tool("list_tasks", {"limit": 2})
        check(not result.is_error, f"{tag} tools/call with the access token: {text(result)[:80]}")
        first_access, first_refresh = tokens.access_token, tokens.refresh_token
        # Treat the access token as expired: the provider refreshes before its next request.
        auth.context.token_expiry_time = time.time() - 1
        result = await client.call_tool("get_account", {})
        check(not result.is_error, f"{tag} tools/call after a refresh, in the same session")
        check(storage.tokens.access_token != first_access, f"{tag} the refresh brought a new access token")
        check(storage.tokens.refresh_token != first_refresh, f"{tag} the refresh token was rotated")
    async with httpx2.AsyncClient(timeout=30) as http:
        metadata = (await http.get(f"{BASE}/.well-known/oauth-protected-resource")).json()
        issuer = metadata["authorization_servers"][0]
        reused = await http.post(f"{issuer}/oauth/token", data={
            "grant_type": "refresh_token", "refresh_token": first_refresh,
            "client_id": storage.client.client_id,
        })
        check(reused.status_code == 400 and reused.json()["error"] == "invalid_grant",
              f"{tag} the rotated-out refresh token is refused (invalid_grant)")


async def main():
    await flow("streamable", f"{BASE}/mcp",
               lambda auth: streamable_http_client(f"{BASE}/mcp", http_client=httpx2.AsyncClient(auth=auth, timeout=30)))
    await flow("sse", f"{BASE}/sse", lambda auth: sse_client(f"{BASE}/sse", auth=auth))
    print("all checks passed")


anyio.run(main)
