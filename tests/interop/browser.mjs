// The user's side of an authorization: a real headless Chromium (Debian's, driven by
// playwright-core) opens the authorization URL a client produced, signs in on the authorization
// server's login page, approves on its consent page, and stops at the client's loopback callback,
// whose full URL (code, state, iss) it returns. The callback address is the `redirect_uri` of the
// authorization URL; a tiny HTTP listener on that loopback address, open for the length of the
// flow, receives the browser's request and answers it, as a desktop client's listener would.
//
// Used as a module by the TypeScript SDK checks, and as a command by the Python SDK checks:
//   node browser.mjs --username alice --password password123 'http://localhost:8999/authorize?...'
// prints the callback URL on stdout.

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

/** A fresh browser profile: no cookies, so the user has to sign in. */
export async function newUserAgent(browser) {
  return browser.newContext({ viewport: { width: 720, height: 760 }, deviceScaleFactor: 1 });
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
 * `authorizationUrl`. Returns { callbackUrl, pages } where pages lists what the user saw
 * ('login', 'consent'). With `screenshotDir`, writes login.png and consent.png there.
 */
export async function authorizeInBrowser(context, authorizationUrl, { username, password, screenshotDir } = {}) {
  const listener = await callbackListener(authorizationUrl);
  const page = await context.newPage();
  const pages = [];
  const settle = async (action) => {
    await Promise.all([page.waitForEvent('load', { timeout: 20000 }), action()]);
  };
  const shoot = async (name) => {
    if (!screenshotDir) return;
    mkdirSync(screenshotDir, { recursive: true });
    await page.screenshot({ path: path.join(screenshotDir, `${name}.png`), fullPage: true });
  };
  try {
    await page.goto(authorizationUrl, { timeout: 20000 });
    for (let step = 0; step < 6 && listener.url === null; step++) {
      if (await page.$('input[name=username]')) {
        if (pages.includes('login')) {
          const why = await visibleText(page, '.error');
          throw new Error(`the login page came back after signing in as ${username}: ${why || 'no message'}`);
        }
        pages.push('login');
        await shoot('login');
        await page.fill('input[name=username]', username);
        await page.fill('input[name=password]', password);
        await settle(() => page.click('form:has(input[name=username]) button[type=submit]'));
      } else if (await page.$('button[name=decision][value=approve]')) {
        if (pages.includes('consent')) throw new Error('the consent page came back after approving');
        pages.push('consent');
        await shoot('consent');
        await settle(() => page.click('button[name=decision][value=approve]'));
      } else {
        const title = await page.title();
        const why = await visibleText(page, '.error');
        throw new Error(`unexpected page at ${page.url()}: "${title}" ${why}`.trim());
      }
    }
    if (listener.url === null) throw new Error(`the browser never reached the callback (at ${page.url()})`);
    return { callbackUrl: listener.url, pages };
  } finally {
    await page.close();
    listener.close();
  }
}

async function main() {
  const args = process.argv.slice(2);
  const opts = {};
  let url = null;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--username') opts.username = args[++i];
    else if (args[i] === '--password') opts.password = args[++i];
    else if (args[i] === '--screenshots') opts.screenshotDir = args[++i];
    else url = args[i];
  }
  if (!url || !opts.username || !opts.password) {
    console.error('usage: node browser.mjs --username U --password P [--screenshots DIR] AUTHORIZATION_URL');
    process.exit(2);
  }
  const browser = await launchBrowser();
  try {
    const context = await newUserAgent(browser);
    const { callbackUrl, pages } = await authorizeInBrowser(context, url, opts);
    console.error(`browser: ${opts.username} saw ${pages.join(', ') || 'no page'}`);
    console.log(callbackUrl);
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
