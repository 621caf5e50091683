// The user's side of an authorization: a real headless Chromium (Debian's, driven by
// playwright-core) opens the authorization URL a client produced, signs in on the authorization
// server's login page, approves on its consent page, and stops at the client's loopback callback,
// whose full URL (code, state, iss) it returns. The callback address is the `redirect_uri` of the
// authorization URL; a tiny HTTP listener on that loopback address, open for the length of the
// flow, receives the browser's request and answers it, as a desktop client's listener would.
//
// Instead of the password form, the user may sign in through an upstream identity provider: the
// `upstream` option clicks that provider's button on the login page ("Sign in with ..."), signs
// in on the upstream OP's login form (oidc-provider's development pages: any login name, any
// password), passes its consent prompt ("Continue"), and goes on at our consent page as after a
// password sign-in. With `abort`, the user cancels at the OP's login page instead, and the flow
// ends on the page our server shows for the OP's error answer (its status, address and text).
//
// Used as a module by the TypeScript SDK checks, and as a command by the Python SDK checks:
//   node browser.mjs --username alice --password password123 'http://localhost:8999/authorize?...'
// prints the callback URL on stdout;
//   node browser.mjs --upstream-button 'Sign in with Local OP' --upstream-login carol URL
// signs carol in at the upstream OP, and with --upstream-abort prints the final page as JSON
// ({"status", "url", "text"}) instead.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

// Without the networking flags Chromium keeps calling home, and this machine's closed network
// refuses every such connection; --no-sandbox because CI runs as root.
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

export async function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

const LOOPBACK_HOSTS = new Set(['localhost', '[::1]']);
function isLoopback(url) {
  return LOOPBACK_HOSTS.has(url.hostname) || /^127\.\d+\.\d+\.\d+$/.test(url.hostname);
}

/**
 * A fresh browser profile: no cookies, so the user has to sign in. Every server of the suite is
 * on the loopback; a request for any other host (a page's web font, say) is refused in the
 * browser, so that none leaves the machine.
 */
export async function newUserAgent(browser) {
  const context = await browser.newContext({ viewport: { width: 720, height: 760 }, deviceScaleFactor: 1 });
  await context.route((url) => !isLoopback(url), (route) => route.abort('blockedbyclient'));
  return context;
}

/** A loopback port nobody listens on now, for a client's redirect URI. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Listens on the redirect URI's loopback address; `url` is set by the first request to its path. */
async function callbackListener(authorizationUrl) {
  const redirect = new URL(authorizationUrl).searchParams.get('redirect_uri');
  if (!redirect) throw new Error('the authorization URL has no redirect_uri');
  const target = new URL(redirect);
  const listener = { url: null };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, target.origin);
    if (url.pathname === target.pathname && listener.url === null) listener.url = url.href;
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>Authorized</title><p>Authorized. You can close this window.</p>');
  });
  const host = target.hostname.replace(/^\[|\]$/g, '');
  await new Promise((resolve, reject) => {
    server.on('error', reject);
    server.listen(Number(target.port || 80), host === 'localhost' ? '127.0.0.1' : host, resolve);
  });
  listener.close = () => {
    server.closeAllConnections();
    server.close();
  };
  return listener;
}

async function visibleText(page, selector) {
  const el = await page.$(selector);
  return el ? (await el.innerText()).trim() : '';
}

/**
 * Signs `username` in and approves, in `context` (a browser profile), starting at
 * `authorizationUrl`. Returns { callbackUrl, pages, urls } where pages lists what the user saw
 * ('login', 'upstream login', 'upstream consent', 'consent') and urls where each was. With
 * `screenshotDir`, writes login.png and consent.png there.
 *
 * With `upstream` ({ button, login, password, abort }), signs in at the upstream OP through the
 * login page's button labelled `button` instead of with `username` and `password`. With
 * `upstream.abort`, cancels at the OP's login page and returns { callbackUrl, pages, urls,
 * final: { status, url, text } }, the page the browser ends on (callbackUrl is null unless our
 * server sent the browser on to the client anyway).
 */
export async function authorizeInBrowser(context, authorizationUrl, { username, password, screenshotDir, upstream } = {}) {
  const listener = await callbackListener(authorizationUrl);
  const page = await context.newPage();
  const pages = [];
  const urls = [];
  // The last document the main frame received that was not a redirect: its status is the one
  // of the page shown.
  let shown = null;
  page.on('response', (response) => {
    const status = response.status();
    if (response.request().isNavigationRequest() && response.frame() === page.mainFrame() && (status < 300 || status >= 400)) {
      shown = response;
    }
  });
  const settle = async (action) => {
    await Promise.all([page.waitForEvent('load', { timeout: 20000 }), action()]);
  };
  const shoot = async (name) => {
    if (!screenshotDir) return;
    mkdirSync(screenshotDir, { recursive: true });
    await page.screenshot({ path: path.join(screenshotDir, `${name}.png`), fullPage: true });
  };
  const saw = (name) => {
    if (pages.includes(name)) return false;
    pages.push(name);
    urls.push(page.url());
    return true;
  };
  try {
    await page.goto(authorizationUrl, { timeout: 20000 });
    for (let step = 0; step < 8 && listener.url === null; step++) {
      if (await page.$('input[name=username]')) {
        if (!saw('login')) {
          const why = await visibleText(page, '.error');
          const who = upstream ? `${upstream.login} at the upstream OP` : username;
          throw new Error(`the login page came back after signing in as ${who}: ${why || 'no message'}`);
        }
        await shoot('login');
        if (upstream) {
          const button = page.getByRole('button', { name: upstream.button, exact: true });
          if ((await button.count()) === 0) {
            throw new Error(`the login page at ${page.url()} has no "${upstream.button}" button`);
          }
          await settle(() => button.click());
        } else {
          await page.fill('input[name=username]', username);
          await page.fill('input[name=password]', password);
          await settle(() => page.click('form:has(input[name=username]) button[type=submit]'));
        }
      } else if (upstream && (await page.$('input[name=prompt][value=login]'))) {
        // oidc-provider's development login form: `login` (the subject), `password` (not
        // checked), and a "[ Cancel ]" link to /interaction/<uid>/abort below the form.
        if (!saw('upstream login')) throw new Error('the upstream OP asked for the login again');
        if (upstream.abort) {
          await settle(() => page.click('a[href$="/abort"]'));
          return {
            callbackUrl: listener.url,
            pages,
            urls,
            final: { status: shown?.status() ?? null, url: page.url(), text: await visibleText(page, 'body') },
          };
        }
        await page.fill('input[name=login]', upstream.login);
        await page.fill('input[name=password]', upstream.password ?? 'any password');
        await settle(() => page.click('form:has(input[name=prompt][value=login]) button[type=submit]'));
      } else if (upstream && (await page.$('input[name=prompt][value=consent]'))) {
        // Its consent prompt: one "Continue" button grants the scopes asked for.
        if (!saw('upstream consent')) throw new Error('the upstream OP asked for consent again');
        await settle(() => page.click('form:has(input[name=prompt][value=consent]) button[type=submit]'));
      } else if (await page.$('button[name=decision][value=approve]')) {
        if (!saw('consent')) throw new Error('the consent page came back after approving');
        await shoot('consent');
        await settle(() => page.click('button[name=decision][value=approve]'));
      } else {
        const title = await page.title();
        const why = (await visibleText(page, '.error')) || (await visibleText(page, 'body')).slice(0, 300);
        throw new Error(`unexpected page (status ${shown?.status() ?? '?'}) at ${page.url()}: "${title}" ${why}`.trim());
      }
    }
    if (listener.url === null) throw new Error(`the browser never reached the callback (at ${page.url()})`);
    return { callbackUrl: listener.url, pages, urls };
  } finally {
    await page.close();
    listener.close();
  }
}

async function main() {
  const args = process.argv.slice(2);
  const opts = {};
  const upstream = {};
  let url = null;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--username') opts.username = args[++i];
    else if (args[i] === '--password') opts.password = args[++i];
    else if (args[i] === '--screenshots') opts.screenshotDir = args[++i];
    else if (args[i] === '--upstream-button') upstream.button = args[++i];
    else if (args[i] === '--upstream-login') upstream.login = args[++i];
    else if (args[i] === '--upstream-password') upstream.password = args[++i];
    else if (args[i] === '--upstream-abort') upstream.abort = true;
    else url = args[i];
  }
  if (upstream.button) opts.upstream = upstream;
  const signsIn = opts.upstream ? upstream.login || upstream.abort : opts.username && opts.password;
  if (!url || !signsIn) {
    console.error(
      'usage: node browser.mjs --username U --password P [--screenshots DIR] AUTHORIZATION_URL\n' +
        '       node browser.mjs --upstream-button LABEL (--upstream-login U [--upstream-password P] | --upstream-abort) AUTHORIZATION_URL',
    );
    process.exit(2);
  }
  const browser = await launchBrowser();
  try {
    const context = await newUserAgent(browser);
    const result = await authorizeInBrowser(context, url, opts);
    const who = opts.upstream ? `${upstream.login ?? 'the user'} (upstream)` : opts.username;
    console.error(`browser: ${who} saw ${result.pages.join(', ') || 'no page'}`);
    if (result.final) console.log(JSON.stringify(result.final));
    else console.log(result.callbackUrl);
  } finally {
    await browser.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err) => {
    console.error(`browser: ${err.message}`);
    process.exit(1);
  });
}
