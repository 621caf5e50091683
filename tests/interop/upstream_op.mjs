// An upstream OpenID provider for the "sign in through an identity provider" checks: panva's
// oidc-provider (OpenID certified) on a loopback port, with its built-in development
// interactions as the user's side: a login form that accepts any login name and any password,
// then a consent prompt ("Continue"); both pages have a "[ Cancel ]" link that ends the
// authorization with `error=access_denied`. It knows one confidential client, the
// authorization server under test, and answers every account with the claims our server reads:
//   sub = the login name, email = <login>@example.com (email_verified), name, preferred_username.
//
//   node upstream_op.mjs --port P --redirect-uri URI --client-secret S [--client-id mcp-oauth]
//
// Issuer `http://localhost:P` (discovery at /.well-known/openid-configuration), listening on
// 127.0.0.1. Prints `ready http://localhost:P` on stdout once it listens; stops on SIGTERM or
// SIGINT. Every request is logged on stderr. oidc-provider 9 wants Node 22 LTS or later: run.sh
// starts it with the Node 22 of the npm package `node`.

import Provider from 'oidc-provider';
import { generateKeyPairSync, randomBytes } from 'node:crypto';

function usage(why) {
  console.error(`upstream_op: ${why}`);
  console.error('usage: node upstream_op.mjs --port P --redirect-uri URI --client-secret S [--client-id ID]');
  process.exit(2);
}

const opts = { clientId: 'mcp-oauth' };
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const value = args[i + 1];
  if (value === undefined) usage(`${args[i]} needs a value`);
  if (args[i] === '--port') opts.port = Number(value);
  else if (args[i] === '--redirect-uri') opts.redirectUri = value;
  else if (args[i] === '--client-secret') opts.clientSecret = value;
  else if (args[i] === '--client-id') opts.clientId = value;
  else usage(`unknown argument ${args[i]}`);
  i++;
}
if (!Number.isInteger(opts.port) || opts.port <= 0) usage('--port is missing');
if (!opts.redirectUri) usage('--redirect-uri is missing');
if (!opts.clientSecret) usage('--client-secret is missing');

const ISSUER = `http://localhost:${opts.port}`;

// A signing key of its own per run (without one, oidc-provider signs with a published
// development key); the ID tokens carry its kid, the JWKS endpoint publishes it.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: randomBytes(8).toString('hex'), use: 'sig', alg: 'RS256' };

const configuration = {
  clients: [
    {
      client_id: opts.clientId,
      client_secret: opts.clientSecret,
      client_name: 'mcp-oauth',
      // A web client may use an http localhost redirect URI with the code flow (only the
      // implicit flow insists on https and a host other than localhost).
      application_type: 'web',
      redirect_uris: [opts.redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  // PKCE is optional for a confidential client by default; the server under test says it sends
  // S256 on every request, so hold it to that.
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
  },
  // By default the scope-requested claims stay out of the ID token whenever an access token is
  // issued too (the client is meant to call userinfo); put them in the ID token as well, so an
  // RP that reads the email from the ID token alone gets it.
  conformIdTokenClaims: false,
  async findAccount(ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          email: `${sub}@example.com`,
          email_verified: true,
          name: sub.charAt(0).toUpperCase() + sub.slice(1),
          preferred_username: sub,
        };
      },
    };
  },
  // Lifetimes in seconds, set so that oidc-provider does not log a notice for each default.
  ttl: { AccessToken: 3600, AuthorizationCode: 60, Grant: 3600, IdToken: 3600, Interaction: 600, Session: 3600 },
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  // The default error page prints the details only in the HTML; keep them in the log too.
  async renderError(ctx, out, error) {
    console.error(`upstream_op: error page: ${JSON.stringify(out)} ${error?.stack ?? ''}`);
    ctx.type = 'html';
    ctx.body = `<!doctype html><title>oops! something went wrong</title><h1>oops! something went wrong</h1>
<pre>${Object.entries(out).map(([k, v]) => `${k}: ${String(v).replace(/[<>&]/g, '')}`).join('\n')}</pre>`;
  },
};

const provider = new Provider(ISSUER, configuration);

// Each request on stderr; and the development pages' stylesheet imports a web font from the
// internet: drop that import, so that the browser never leaves the loopback.
provider.use(async (ctx, next) => {
  const start = Date.now();
  await next();
  if (typeof ctx.body === 'string' && ctx.type === 'text/html') {
    ctx.body = ctx.body.replace(/@import url\(https?:[^)]*\);?/g, '');
  }
  console.error(`upstream_op: ${ctx.method} ${ctx.path} -> ${ctx.status} (${Date.now() - start} ms)`);
});
provider.on('server_error', (ctx, err) => console.error(`upstream_op: server_error ${err.stack}`));
provider.on('grant.error', (ctx, err) => console.error(`upstream_op: grant.error ${err.message} ${err.error_description ?? ''}`));
provider.on('authorization.error', (ctx, err) => console.error(`upstream_op: authorization.error ${err.message} ${err.error_description ?? ''}`));

const server = provider.listen(opts.port, '127.0.0.1', () => {
  console.log(`ready ${ISSUER}`);
});
server.on('error', (err) => {
  console.error(`upstream_op: ${err.message}`);
  process.exit(1);
});

function stop() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
