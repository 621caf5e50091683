// The MCP conformance tool (@modelcontextprotocol/conformance) against the resource server.
//
// The tool's server mode connects as a plain MCP client and has no option for credentials, while
// every request to our RS needs a bearer token. So this script puts a loopback proxy in front of
// the RS that adds `Authorization: Bearer <token>` (alice's token, obtained by the TypeScript SDK
// check through the real flow) to each request and forwards everything else unchanged, Host and
// Origin included, so the DNS-rebinding scenario still reaches the RS's own checks.
//
// Runs under Node 22 (the tool needs it), one tool run per scenario, and prints one
// `PASS conformance <scenario>` / `FAIL conformance <scenario>: reason` line each. Which scenarios
// run and why the others are skipped: README.md beside this file.
//
// Environment: MCP_URL, SCRATCH (holds alice-access-token; results go under it).

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const TOOL = path.join(HERE, 'node_modules/@modelcontextprotocol/conformance/dist/index.js');
const MCP_URL = new URL(process.env.MCP_URL ?? 'http://localhost:8990/mcp');
const SCRATCH = process.env.SCRATCH ?? path.join(HERE, '.scratch');

// The server scenarios that apply to a server with the tools greet and whoami and no resources,
// prompts, logging or completions.
export const SCENARIOS = [
  'server-initialize',
  'ping',
  'tools-list',
  'dns-rebinding-protection',
  'server-sse-multiple-streams',
];

function pass(name) {
  console.log(`PASS ${name}`);
}
function fail(name, reason) {
  console.log(`FAIL ${name}: ${String(reason).replace(/\s+/g, ' ').slice(0, 400)}`);
}

/** A loopback proxy to the RS that adds the bearer token. */
function startProxy(token) {
  const server = http.createServer((req, res) => {
    const headers = { ...req.headers };
    if (!headers.authorization) headers.authorization = `Bearer ${token}`;
    const upstream = http.request(
      { host: MCP_URL.hostname, port: MCP_URL.port, method: req.method, path: req.url, headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    // A client that goes away (an SSE stream it stops reading) ends the upstream request too.
    res.on('close', () => upstream.destroy());
    upstream.on('error', (err) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`proxy: ${err.message}`);
    });
    req.pipe(upstream);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

function run(args) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [TOOL, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

function findChecks(dir) {
  if (!existsSync(dir)) return null;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isFile() && entry.name === 'checks.json') return full;
    if (entry.isDirectory()) {
      const found = findChecks(full);
      if (found) return found;
    }
  }
  return null;
}

async function main() {
  const tokenFile = path.join(SCRATCH, 'alice-access-token');
  if (!existsSync(tokenFile)) {
    for (const s of SCENARIOS) fail(`conformance ${s}`, 'no access token: the TypeScript SDK flow for alice did not finish');
    return;
  }
  const token = readFileSync(tokenFile, 'utf8').trim();
  const proxy = await startProxy(token);
  // "localhost", as the RS's own URL: the DNS-rebinding scenario insists on a loopback name.
  const url = `http://localhost:${proxy.address().port}${MCP_URL.pathname}`;
  try {
    for (const scenario of SCENARIOS) {
      const name = `conformance ${scenario}`;
      const out = path.join(SCRATCH, 'conformance', scenario);
      mkdirSync(out, { recursive: true });
      const { code, output } = await run(['server', '--url', url, '--scenario', scenario, '-o', out]);
      const checksFile = findChecks(out);
      if (!checksFile) {
        fail(name, `no checks.json (exit ${code}): ${output.trim().split('\n').slice(-3).join(' ')}`);
        continue;
      }
      const checks = JSON.parse(readFileSync(checksFile, 'utf8'));
      const failed = checks.filter((c) => c.status === 'FAILURE');
      const warned = checks.filter((c) => c.status === 'WARNING');
      for (const w of warned) console.error(`conformance ${scenario}: WARNING ${w.id}: ${w.errorMessage ?? ''}`);
      if (checks.length === 0) fail(name, 'the tool recorded no check');
      else if (failed.length > 0 || code !== 0) {
        const why = failed.map((c) => `${c.id}: ${c.errorMessage ?? c.description}`).join('; ');
        fail(name, why || `the tool exited ${code}`);
      } else pass(name);
    }
  } finally {
    proxy.closeAllConnections();
    proxy.close();
  }
}

main()
  .then(() => process.exit(0))
  .catch((err) => {
    console.log(`FAIL conformance: ${err.message}`);
    process.exit(1);
  });
