// Signs in to trainar-mcp with the official TypeScript MCP SDK's OAuth client provider, headlessly
// (scripts/typescript-oauth installs @modelcontextprotocol/sdk@1.32 and runs this).
//
// usage: node oauth_flow.mjs BASE_URL   (a `serve` with --auth-cache-secs 0)
// Over Streamable HTTP and SSE: connect → 401 → the SDK discovers, registers (RFC 7591) and sends
// the user to the authorization URL (redirectToAuthorization below signs in as the demo admin and
// allows, as a person would) → finishAuth(code) → tools/list, tools/call → the access token is
// revoked, so the next call's 401 makes the SDK refresh (rotation) and retry.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';

const BASE = process.argv[2];
const REDIRECT = 'http://127.0.0.1:9/callback';

function check(condition, what) {
  if (!condition) {
    console.log(`FAILED: ${what}`);
    process.exit(1);
  }
  console.log(`ok  ${what}`);
}

const unescape = (s) => s.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
const inputs = (page, kinds) =>
  [...page.matchAll(new RegExp(`<input type="(?:${kinds})" name="([^"]+)" value="([^"]*)"`, 'g'))].map((m) => [unescape(m[1]), unescape(m[2])]);

// What the person does in the browser: sign in as the admin, allow what is offered.
async function consent(url) {
  const signIn = await (await fetch(url)).text();
  const admin = signIn.match(/name="user" value="([^"]+)"[^>]*>[^<]*admin<\/label>/)[1];
  const query = new URLSearchParams([...inputs(signIn, 'hidden'), ['user', admin]]);
  const page = await (await fetch(new URL(`/oauth/authorize?${query}`, url))).text();
  const form = new URLSearchParams([...inputs(page, 'hidden|checkbox'), ['decision', 'allow']]);
  const answer = await fetch(new URL('/oauth/authorize', url), { method: 'POST', body: form, redirect: 'manual' });
  check(answer.status === 303, 'the consent form redirects to the client');
  const location = new URL(answer.headers.get('location'));
  check(location.href.startsWith(REDIRECT), 'to its registered redirect URI');
  return location.searchParams.get('code');
}

class Provider {
  constructor() {
    this.info = undefined;
    this.saved = undefined;
    this.verifier = undefined;
    this.code = undefined;
  }
  get redirectUrl() { return REDIRECT; }
  get clientMetadata() {
    return { client_name: 'trainar-mcp ts test', redirect_uris: [REDIRECT], grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none' };
  }
  clientInformation() { return this.info; }
  saveClientInformation(info) { this.info = info; }
  tokens() { return this.saved; }
  saveTokens(tokens) { this.saved = tokens; }
  saveCodeVerifier(verifier) { this.verifier = verifier; }
  codeVerifier() { return this.verifier; }
  async redirectToAuthorization(url) {
    check(url.searchParams.get('code_challenge_method') === 'S256', 'the SDK asks with PKCE S256');
    check(url.searchParams.get('resource')?.startsWith(BASE), 'and names this server as the resource');
    this.code = await consent(url);
  }
}

async function flow(name, transportFor) {
  const tag = `[${name}]`;
  const provider = new Provider();
  const first = transportFor(provider);
  try {
    await new Client({ name: 'ts-oauth', version: '1' }).connect(first);
    check(false, `${tag} connecting without a token is refused`);
  } catch (error) {
    check(error instanceof UnauthorizedError, `${tag} the 401 sends the SDK to sign in`);
  }
  check(provider.info?.client_id?.startsWith('cli_'), `${tag} the SDK registered itself (RFC 7591)`);
  await first.finishAuth(provider.code);
  check(provider.saved?.access_token?.startsWith('tat_'), `${tag} finishAuth got an access token`);
  const client = new Client({ name: 'ts-oauth', version: '1' });
  await client.connect(transportFor(provider));
  const { tools } = await client.listTools();
  check(tools.length > 10, `${tag} tools/list with the token lists ${tools.length} tools`);
  const listed = await client.callTool({ name: 'list_tasks', arguments: { limit: 2 } });
  check(!listed.isError, `${tag} tools/call with the token`);
  const { access_token: access, refresh_token: refresh } = provider.saved;
  const metadata = await (await fetch(`${BASE}/.well-known/oauth-protected-resource`)).json();
  const revoked = await fetch(`${metadata.authorization_servers[0]}/oauth/revoke`, {
    method: 'POST',
    body: new URLSearchParams({ token: access, client_id: provider.info.client_id }),
  });
  check(revoked.status === 200, `${tag} the access token is revoked`);
  const again = await client.callTool({ name: 'get_account', arguments: {} });
  check(!again.isError, `${tag} the next call refreshed on its 401 and went through`);
  check(provider.saved.refresh_token !== refresh, `${tag} the refresh token was rotated`);
  await client.close();
}

await flow('streamable', (provider) => new StreamableHTTPClientTransport(new URL(`${BASE}/mcp`), { authProvider: provider }));
await flow('sse', (provider) => new SSEClientTransport(new URL(`${BASE}/sse`), { authProvider: provider }));
console.log('all checks passed');
