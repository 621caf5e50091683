// The official TypeScript SDK client (@modelcontextprotocol/sdk) against the release servers.
// The SDK runs its own auth() flow through an OAuthClientProvider: it reads the 401 challenge,
// fetches the protected resource and authorization server metadata, registers itself
// dynamically, builds the authorization URL with PKCE (S256), and later redeems the code. The
// provider's redirectToAuthorization hands that URL to a real headless Chromium where the user
// signs in and approves (browser.mjs); the callback URL the browser lands on gives the code that
// goes to the SDK's finishAuth. Then tools/list, tools/call greet and whoami, as alice (the SDK's
// latest revision, 2025-11-25) and as bob (initialize pinned to 2025-06-18), and a step-up: a client authorized for mcp.read only calls save_note (mcp.write), and the SDK
// re-authorizes on the 403 insufficient_scope. Then carol signs in through the upstream OpenID
// provider (upstream_op.mjs) instead of with a password, and a user who cancels at that OP must
// end on our "Sign-in refused" page.
//
// Environment: MCP_URL (the RS endpoint), ISSUER, SCRATCH (a directory for the access token the
// conformance run uses), INTEROP_SCREENSHOTS=1 and SCREENSHOT_DIR to write the page screenshots;
// UPSTREAM_OP (the upstream OP's issuer, empty when it did not start), UPSTREAM_ID and
// UPSTREAM_NAME (the provider's id and name in the server's identity providers file);
// TS_SDK_FLOWS=users runs only alice's and bob's flows, and CHECK_PREFIX goes before every
// check's name (the replicas scenario, balanced.sh, runs them through haproxy).
// Prints `PASS name` / `FAIL name: reason` lines.

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { authorizeInBrowser, freePort, launchBrowser, newUserAgent } from './browser.mjs';

const MCP_URL = new URL(process.env.MCP_URL ?? 'http://localhost:8990/mcp');
const ISSUER = process.env.ISSUER ?? 'http://localhost:8999';
const SCRATCH = process.env.SCRATCH;
const SCREENSHOT_DIR = process.env.INTEROP_SCREENSHOTS === '1' ? process.env.SCREENSHOT_DIR : undefined;
const PASSWORDS = { alice: 'password123', bob: 'hunter2' };
const UPSTREAM_OP = process.env.UPSTREAM_OP ?? '';
const UPSTREAM_ID = process.env.UPSTREAM_ID ?? 'op';
const UPSTREAM_BUTTON = `Sign in with ${process.env.UPSTREAM_NAME ?? 'Local OP'}`;
const ONLY_USERS = process.env.TS_SDK_FLOWS === 'users';
const CHECK_PREFIX = process.env.CHECK_PREFIX ?? '';

function pass(name) {
  console.log(`PASS ${CHECK_PREFIX}${name}`);
}
function fail(name, reason) {
  console.log(`FAIL ${CHECK_PREFIX}${name}: ${String(reason).replace(/\s+/g, ' ').slice(0, 400)}`);
}

/**
 * An OAuthClientProvider whose user agent is a real browser. Everything the SDK stores lives in
 * memory; every authorization URL it produced and every callback the browser reached is kept
 * for the assertions.
 */
class BrowserOAuthProvider {
  constructor({ context, username, upstream, clientName, redirectUrl, firstScope, screenshotDir, grantTypes }) {
    this.grantTypes = grantTypes ?? ['authorization_code', 'refresh_token'];
    this.context = context;
    this.username = username;
    this.upstream = upstream;
    this.clientName = clientName;
    this._redirectUrl = redirectUrl;
    this.firstScope = firstScope;
    this.screenshotDir = screenshotDir;
    this.authorizations = [];
    this.pendingCallback = null;
  }
  get redirectUrl() {
    return this._redirectUrl;
  }
  get clientMetadata() {
    return {
      client_name: this.clientName,
      redirect_uris: [this._redirectUrl],
      grant_types: this.grantTypes,
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  state() {
    this._state = randomBytes(16).toString('base64url');
    return this._state;
  }
  clientInformation() {
    return this._client;
  }
  saveClientInformation(info) {
    this._client = info;
  }
  tokens() {
    return this._tokens;
  }
  saveTokens(tokens) {
    this._tokens = tokens;
  }
  saveCodeVerifier(verifier) {
    this._verifier = verifier;
  }
  codeVerifier() {
    if (!this._verifier) throw new Error('no code verifier saved');
    return this._verifier;
  }
  async redirectToAuthorization(url) {
    const asked = new URL(url);
    // The step-up check starts from a client that asks for less than the challenge named.
    if (this.firstScope && this.authorizations.length === 0) asked.searchParams.set('scope', this.firstScope);
    const { callbackUrl, pages, urls, final } = await authorizeInBrowser(this.context, asked.href, {
      username: this.username,
      password: PASSWORDS[this.username],
      upstream: this.upstream,
      screenshotDir: this.authorizations.length === 0 ? this.screenshotDir : undefined,
    });
    this.authorizations.push({ url: asked, pages, urls, final, state: this._state });
    this.pendingCallback = callbackUrl ? new URL(callbackUrl) : null;
  }
  /** The code from the callback, after checking state and the RFC 9207 issuer. */
  takeCode() {
    const cb = this.pendingCallback;
    this.pendingCallback = null;
    if (!cb) throw new Error('the SDK asked for no authorization, yet the server refused');
    const last = this.authorizations[this.authorizations.length - 1];
    const error = cb.searchParams.get('error');
    if (error) throw new Error(`authorization error ${error}: ${cb.searchParams.get('error_description') ?? ''}`);
    if (cb.searchParams.get('state') !== last.state) throw new Error('the callback state differs from the request');
    if (cb.searchParams.get('iss') !== ISSUER) {
      throw new Error(`the callback iss is ${cb.searchParams.get('iss')}, expected ${ISSUER} (RFC 9207)`);
    }
    const code = cb.searchParams.get('code');
    if (!code) throw new Error('the callback has no code');
    return code;
  }
}

/**
 * A transport for the SDK; with `pin`, the client's initialize asks for that protocol revision
 * instead of the SDK's latest (the SDK accepts any revision it supports in the answer).
 */
function transportFor(provider, pin) {
  const transport = new StreamableHTTPClientTransport(MCP_URL, { authProvider: provider });
  if (pin) {
    const send = transport.send.bind(transport);
    transport.send = (message, options) => {
      if (message.method === 'initialize') {
        message = { ...message, params: { ...message.params, protocolVersion: pin } };
      }
      return send(message, options);
    };
  }
  return transport;
}

/**
 * Connects, completing each authorization the SDK asks for in the browser (at most three: the
 * first, and one step-up the server may ask for during initialize).
 */
async function connect(client, provider, pin) {
  for (let attempt = 0; attempt < 3; attempt++) {
    const transport = transportFor(provider, pin);
    try {
      await client.connect(transport);
      return transport;
    } catch (err) {
      if (!(err instanceof UnauthorizedError)) throw err;
      await transport.finishAuth(provider.takeCode());
    }
  }
  throw new Error(`still unauthorized after ${provider.authorizations.length} authorizations`);
}

function toolText(result) {
  return (result.content ?? [])
    .filter((c) => c.type === 'text')
    .map((c) => c.text)
    .join('');
}

function checkAuthorizationRequest(provider) {
  const first = provider.authorizations[0];
  if (!first) throw new Error('the SDK never sent the user to the authorization server');
  const q = first.url.searchParams;
  if (q.get('code_challenge_method') !== 'S256' || !q.get('code_challenge')) throw new Error('no PKCE S256 challenge');
  if (!q.get('resource')) throw new Error('no resource indicator (RFC 8707)');
  if (!provider.clientInformation()?.client_id) throw new Error('no dynamically registered client_id');
  if (!first.pages.includes('login') || !first.pages.includes('consent')) {
    throw new Error(`the user saw ${first.pages.join(', ')}, expected login and consent`);
  }
  if (!provider.tokens()?.access_token) throw new Error('the SDK holds no access token');
}

async function userFlow(browser, username, revision, pin) {
  const prefix = `ts-sdk ${username} (${revision})`;
  const context = await newUserAgent(browser);
  const provider = new BrowserOAuthProvider({
    context,
    username,
    clientName: 'TypeScript SDK client',
    redirectUrl: `http://127.0.0.1:${await freePort()}/callback`,
    screenshotDir: username === 'alice' ? SCREENSHOT_DIR : undefined,
  });
  const client = new Client({ name: 'mcp-oauth-interop-ts', version: '1.0.0' });
  let transport;
  const steps = [
    [`${prefix} auth() flow with registration, PKCE, browser login and consent`, async () => {
      transport = await connect(client, provider, pin);
      checkAuthorizationRequest(provider);
      if (transport.protocolVersion !== revision) {
        throw new Error(`the session speaks ${transport.protocolVersion}, expected ${revision}`);
      }
    }],
    [`${prefix} tools/list`, async () => {
      const { tools } = await client.listTools();
      const names = tools.map((t) => t.name);
      for (const want of ['greet', 'whoami']) {
        if (!names.includes(want)) throw new Error(`tools/list lacks ${want}: ${names.join(', ')}`);
      }
    }],
    [`${prefix} tools/call greet`, async () => {
      const text = toolText(await client.callTool({ name: 'greet', arguments: { name: username } }));
      if (!text.includes(`Hello, ${username}!`)) throw new Error(`greet answered ${JSON.stringify(text)}`);
    }],
    [`${prefix} tools/call whoami names ${username}`, async () => {
      const text = toolText(await client.callTool({ name: 'whoami', arguments: {} }));
      const who = JSON.parse(text);
      if (who.sub !== username) throw new Error(`whoami answered ${text}`);
      if (who.client_id !== provider.clientInformation().client_id) throw new Error(`whoami client_id ${who.client_id}`);
    }],
    [`${prefix} session lifecycle (DELETE ends the MCP session, its id then gets 404)`, async () => {
      const sessionId = transport.sessionId;
      if (!sessionId) throw new Error('the server opened no MCP session (no Mcp-Session-Id)');
      await transport.terminateSession();
      const answer = await fetch(MCP_URL, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${provider.tokens().access_token}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'mcp-session-id': sessionId,
          'mcp-protocol-version': transport.protocolVersion,
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: 99, method: 'tools/list', params: {} }),
      });
      await answer.body?.cancel();
      if (answer.status !== 404) throw new Error(`a request on the ended session got ${answer.status}, expected 404`);
    }],
  ];
  await runSteps(steps);
  if (username === 'alice' && SCRATCH && provider.tokens()?.access_token) {
    writeFileSync(path.join(SCRATCH, 'alice-access-token'), provider.tokens().access_token);
  }
  await client.close().catch(() => {});
  await context.close();
}

async function stepUpFlow(browser) {
  const prefix = 'ts-sdk step-up';
  const context = await newUserAgent(browser);
  const provider = new BrowserOAuthProvider({
    context,
    username: 'alice',
    clientName: 'TypeScript SDK client (step-up)',
    redirectUrl: `http://127.0.0.1:${await freePort()}/callback`,
    firstScope: 'mcp.read',
    // This SDK answers a 403 insufficient_scope by refreshing when it holds a refresh token, and a
    // refresh can never widen the scope (OAuth 2.1 section 4.3.1): the retry fails. A client that
    // wants step-up with this SDK registers without the refresh_token grant, so that the SDK
    // starts a new authorization for the wider scope.
    grantTypes: ['authorization_code'],
  });
  const client = new Client({ name: 'mcp-oauth-interop-ts-step-up', version: '1.0.0' });
  const steps = [
    [`${prefix} a token with mcp.read only connects and lists save_note`, async () => {
      await connect(client, provider);
      checkAuthorizationRequest(provider);
      const granted = provider.tokens().scope ?? '';
      if (provider.authorizations.length > 1) {
        throw new Error(
          `the server refused the mcp.read token at connect and the SDK re-authorized with scope ` +
            `"${provider.authorizations[1].url.searchParams.get('scope')}": greet/whoami/initialize must need mcp.read only`,
        );
      }
      if (granted.split(' ').includes('mcp.write')) throw new Error(`the first token already has mcp.write: "${granted}"`);
      const { tools } = await client.listTools();
      const names = tools.map((t) => t.name);
      if (!names.includes('save_note')) throw new Error(`tools/list has no save_note tool: ${names.join(', ')}`);
    }],
    [`${prefix} save_note gets 403 insufficient_scope, the SDK re-authorizes for mcp.write and succeeds`, async () => {
      const before = provider.authorizations.length;
      const call = () => client.callTool({ name: 'save_note', arguments: { text: 'interop note' } });
      let result;
      try {
        result = await call();
        if (provider.authorizations.length === before) {
          throw new Error(`save_note succeeded without step-up (token scope "${provider.tokens().scope}"): ${toolText(result)}`);
        }
      } catch (err) {
        if (!(err instanceof UnauthorizedError)) throw err;
        if (provider.authorizations.length !== before + 1) throw new Error('the SDK did not re-authorize on the 403');
        const asked = provider.authorizations[before].url.searchParams.get('scope') ?? '';
        if (!asked.split(' ').includes('mcp.write')) throw new Error(`the re-authorization asked for "${asked}", not mcp.write`);
        await client.transport.finishAuth(provider.takeCode());
        result = await call();
      }
      if (result.isError) throw new Error(`save_note failed after step-up: ${toolText(result)}`);
      const asked = provider.authorizations.length;
      const whoami = await client.callTool({ name: 'whoami', arguments: {} }).catch((err) => {
        if (!(err instanceof UnauthorizedError)) throw err;
        const scope = provider.authorizations[asked]?.url.searchParams.get('scope');
        throw new Error(
          `whoami after the step-up needed yet another authorization (scope "${scope}"): the new token lost ` +
            `mcp.read; the 403 for save_note should name every scope the client needs (mcp.read mcp.write)`,
        );
      });
      const who = JSON.parse(toolText(whoami));
      if (!who.scopes?.includes('mcp.write')) throw new Error(`whoami after step-up shows scopes ${JSON.stringify(who.scopes)}`);
    }],
  ];
  await runSteps(steps);
  await client.close().catch(() => {});
  await context.close();
}

/** Throws unless the upstream OP started (run.sh leaves UPSTREAM_OP empty when it did not). */
function needUpstream() {
  if (!UPSTREAM_OP) throw new Error('the upstream OP did not start (see upstream_op.log)');
}

/** Throws unless the user saw `name` on the upstream OP (and not elsewhere). */
function checkUpstreamPage(authorization, name) {
  const i = authorization.pages.indexOf(name);
  if (i < 0) throw new Error(`the user saw ${authorization.pages.join(', ') || 'no page'}, expected the ${name} page`);
  const at = new URL(authorization.urls[i]).origin;
  if (at !== new URL(UPSTREAM_OP).origin) throw new Error(`the ${name} page was at ${at}, not at the upstream OP ${UPSTREAM_OP}`);
}

/**
 * carol signs in at the upstream OP: the login page's provider button sends the browser to the
 * OP, carol signs in and continues there, the OP sends her back to our server's callback, and she
 * approves on our consent page. The SDK's flow is the usual one (registration, PKCE, finishAuth);
 * the subject our server signs in is the OP's subject under the provider's id.
 */
async function upstreamFlow(browser) {
  const prefix = 'ts-sdk upstream (oidc-provider)';
  const username = 'carol';
  const subject = `${UPSTREAM_ID}:${username}`;
  const context = await newUserAgent(browser);
  const provider = new BrowserOAuthProvider({
    context,
    upstream: { button: UPSTREAM_BUTTON, login: username },
    clientName: 'TypeScript SDK client (upstream sign-in)',
    redirectUrl: `http://127.0.0.1:${await freePort()}/callback`,
  });
  const client = new Client({ name: 'mcp-oauth-interop-ts-upstream', version: '1.0.0' });
  const steps = [
    [`${prefix} auth() flow, ${username} signs in at the upstream OP, approves there and here`, async () => {
      needUpstream();
      await connect(client, provider);
      const first = provider.authorizations[0];
      if (!first.pages.includes('login')) throw new Error(`the user saw ${first.pages.join(', ')}, not our login page`);
      checkUpstreamPage(first, 'upstream login');
      checkUpstreamPage(first, 'upstream consent');
      if (!first.pages.includes('consent')) {
        throw new Error(`the user saw ${first.pages.join(', ')}: our consent page did not follow the upstream sign-in`);
      }
      const q = first.url.searchParams;
      if (q.get('code_challenge_method') !== 'S256' || !q.get('code_challenge')) throw new Error('no PKCE S256 challenge');
      if (!provider.tokens()?.access_token) throw new Error('the SDK holds no access token');
    }],
    [`${prefix} tools/call whoami names ${subject}`, async () => {
      const text = toolText(await client.callTool({ name: 'whoami', arguments: {} }));
      const who = JSON.parse(text);
      if (who.sub !== subject) throw new Error(`whoami answered ${text}, expected sub ${subject}`);
      if (who.client_id !== provider.clientInformation().client_id) throw new Error(`whoami client_id ${who.client_id}`);
    }],
  ];
  await runSteps(steps);
  await client.close().catch(() => {});
  await context.close();
}

/**
 * The user cancels at the upstream OP's login page: the OP sends the browser back to our
 * callback with `error=access_denied`, and our server must stop there with a 403 page that says
 * the sign-in was refused and names the OP's error, instead of signing anybody in or sending the
 * browser on to the client.
 */
async function upstreamErrorFlow(browser) {
  const name = 'upstream error (the user cancels at the OP) ends on our 403 page naming access_denied';
  const context = await newUserAgent(browser);
  const provider = new BrowserOAuthProvider({
    context,
    upstream: { button: UPSTREAM_BUTTON, abort: true },
    clientName: 'TypeScript SDK client (upstream refused)',
    redirectUrl: `http://127.0.0.1:${await freePort()}/callback`,
  });
  const client = new Client({ name: 'mcp-oauth-interop-ts-upstream-refused', version: '1.0.0' });
  await runSteps([
    [name, async () => {
      needUpstream();
      try {
        await client.connect(transportFor(provider));
        throw new Error('the client connected without any authorization');
      } catch (err) {
        if (!(err instanceof UnauthorizedError)) throw err;
      }
      const first = provider.authorizations[0];
      if (!first) throw new Error('the SDK never sent the user to the authorization server');
      checkUpstreamPage(first, 'upstream login');
      if (provider.pendingCallback) throw new Error(`the browser went on to the client's callback: ${provider.pendingCallback.href}`);
      const { status, url, text } = first.final;
      if (new URL(url).origin !== new URL(ISSUER).origin) throw new Error(`the browser ended at ${url}, not on our server`);
      if (status !== 403) throw new Error(`our page answered ${status}, expected 403: ${text.slice(0, 200)}`);
      if (!/refused/i.test(text)) throw new Error(`our page does not say "refused": ${text.slice(0, 200)}`);
      if (!text.includes('access_denied')) throw new Error(`our page does not name access_denied: ${text.slice(0, 200)}`);
    }],
  ]);
  await client.close().catch(() => {});
  await context.close();
}

/** Runs the steps in order; once one fails, the rest fail as not reached. */
async function runSteps(steps) {
  let broken = null;
  for (const [name, step] of steps) {
    if (broken) {
      fail(name, `not reached: ${broken}`);
      continue;
    }
    try {
      await step();
      pass(name);
    } catch (err) {
      broken = 'an earlier step failed';
      fail(name, err?.message ?? err);
    }
  }
}

const browser = await launchBrowser();
try {
  await userFlow(browser, 'alice', LATEST_PROTOCOL_VERSION);
  await userFlow(browser, 'bob', '2025-06-18', '2025-06-18');
  if (!ONLY_USERS) {
    await stepUpFlow(browser);
    await upstreamFlow(browser);
    await upstreamErrorFlow(browser);
  }
} finally {
  await browser.close();
}
