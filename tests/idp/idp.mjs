#!/usr/bin/env node
// Palisade test identity provider.
//
// A real OpenID provider (npm `oidc-provider` 9.x, OpenID Certified) that issues
// real signed JWT access tokens through the client-credentials grant, plus a few
// loopback-only `/test/*` control endpoints (key rotation, JWKS fetch counter,
// simulated outage). With --console-redirect it also signs people in for Palisade's
// web console (authorization code flow, oidc-provider's own login pages), as one of
// the test users (--user). For end-to-end tests only. See README.md in this directory.
//
//   node tests/idp/idp.mjs [--issuer URL] [--port N] [--keys DIR] [--ttl SECONDS]
//                          [--console-redirect URI] [--user LOGIN:EMAIL[:GROUP,...]]...
//
// When ready it prints exactly one JSON line on stdout, e.g.
//   {"issuer": "https://idp.local/auth/realms/ML", "url": "http://127.0.0.1:40123",
//    "jwks_uri": "http://127.0.0.1:40123/jwks", "token_endpoint": "http://127.0.0.1:40123/token"}
// Everything else goes to stderr.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';

// stdout is reserved for the single ready line. oidc-provider prints its
// NOTICEs with console.info (stdout!), so route every console method to stderr
// before the library is loaded (it is imported dynamically below for that reason).
const toStderr = (...args) => console.error(...args);
console.log = toStderr;
console.info = toStderr;
console.debug = toStderr;
console.warn = toStderr;

const log = (...args) => console.error('[idp]', ...args);

// ---------------------------------------------------------------------------
// Command line

function usage(code) {
  console.error(`usage: node idp.mjs [--issuer URL] [--port N] [--keys DIR] [--ttl SECONDS]
  --issuer URL     issuer (iss claim, discovery "issuer"); default http://127.0.0.1:<port>
  --port N         port on 127.0.0.1; 0 (default) picks a free port
  --keys DIR       load signing keys from DIR/*.json (JWK or JWKS with private parts);
                   if DIR has no .json file, generate keys and write DIR/jwks.json
  --ttl SECONDS    default access token lifetime (default 600)
  --console-redirect URI
                   register the authorization-code client palisade-console with this
                   redirect URI, and turn on the login pages (any password)
  --user LOGIN:EMAIL[:GROUP,...]
                   a person who can log in (repeatable); default person_a and person_c`);
  process.exit(code);
}

function parseArgs(argv) {
  const opts = { issuer: undefined, port: 0, keys: undefined, ttl: 600, consoleRedirect: undefined, users: [] };
  for (let i = 0; i < argv.length; i += 1) {
    let arg = argv[i];
    let value;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq !== -1) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const next = () => {
      if (value !== undefined) return value;
      i += 1;
      if (i >= argv.length) {
        console.error(`missing value for ${arg}`);
        usage(2);
      }
      return argv[i];
    };
    switch (arg) {
      case '--issuer': opts.issuer = next(); break;
      case '--port': opts.port = Number(next()); break;
      case '--keys': opts.keys = next(); break;
      case '--ttl': opts.ttl = Number(next()); break;
      case '--console-redirect': opts.consoleRedirect = next(); break;
      case '--user': {
        const [login, email, groups] = next().split(':');
        if (!login || !email) {
          console.error('--user takes LOGIN:EMAIL[:GROUP,...]');
          usage(2);
        }
        opts.users.push({ login, email, groups: groups ? groups.split(',').filter(Boolean) : [] });
        break;
      }
      case '-h':
      case '--help': usage(0); break;
      default:
        console.error(`unknown argument: ${arg}`);
        usage(2);
    }
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    console.error('--port must be an integer in 0..65535');
    usage(2);
  }
  if (!Number.isInteger(opts.ttl) || opts.ttl <= 0) {
    console.error('--ttl must be a positive integer');
    usage(2);
  }
  if (opts.issuer !== undefined) {
    try {
      const u = new URL(opts.issuer);
      if (u.search || u.hash) throw new Error('issuer must not have a query or fragment');
    } catch (err) {
      console.error(`invalid --issuer: ${err.message}`);
      usage(2);
    }
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));

// ---------------------------------------------------------------------------
// Clients. Fixed ids/secrets, documented in README.md (never printed).

const CLIENTS = [
  { id: 'ml-rs256', secret: 'ml-rs256-secret', alg: 'RS256', claims: {} },
  { id: 'ml-es256', secret: 'ml-es256-secret', alg: 'ES256', claims: {} },
  {
    id: 'ml-person-a',
    secret: 'ml-person-a-secret',
    alg: 'RS256',
    claims: { email: 'person_a@company.com', email_verified: true, groups: ['fraud-analysts'] },
  },
  {
    id: 'ml-person-c',
    secret: 'ml-person-c-secret',
    alg: 'RS256',
    claims: { email: 'person_c@company.com', email_verified: true, groups: ['marketing'] },
  },
  {
    id: 'ml-unverified',
    secret: 'ml-unverified-secret',
    alg: 'RS256',
    claims: { email: 'person_a@company.com', email_verified: false },
  },
];
const CLIENT_BY_ID = new Map(CLIENTS.map((c) => [c.id, c]));

// The web console's client (authorization code flow), registered with --console-redirect.
const CONSOLE_CLIENT = { id: 'palisade-console', secret: 'palisade-console-secret' };

// People who can log in through the login pages, by login name (any password).
const USERS = new Map(
  (opts.users.length
    ? opts.users
    : [
      { login: 'person_a', email: 'person_a@company.com', groups: ['fraud-analysts'] },
      { login: 'person_c', email: 'person_c@company.com', groups: ['marketing'] },
    ]).map((u) => [u.login, u]),
);

async function findAccount(ctx, id) {
  const user = USERS.get(id);
  if (!user) return undefined;
  return {
    accountId: id,
    async claims() {
      return { sub: id, email: user.email, email_verified: true, groups: user.groups, name: user.login };
    },
  };
}

// Scopes a token may carry (only when the caller asks for them with `scope=`).
const SCOPES = 'predict admin';

// Resource indicator -> audience. oidc-provider requires `resource` to be an
// absolute URI, but the platform expects the bare audience `ml`, so:
//   urn:<name>  -> aud "<name>"    (urn:ml -> "ml", urn:other -> "other")
//   any other absolute URI         -> aud is that URI unchanged
const DEFAULT_RESOURCE = 'urn:ml';
function audienceFor(resource) {
  if (typeof resource === 'string' && resource.startsWith('urn:') && resource.length > 4) {
    return resource.slice(4);
  }
  return resource;
}

// ---------------------------------------------------------------------------
// Keys

function newKid(kty) {
  return `${kty.toLowerCase()}-${crypto.randomBytes(6).toString('hex')}`;
}

function generateKey(kty) {
  let jwk;
  if (kty === 'RSA') {
    ({ privateKey: jwk } = crypto.generateKeyPairSync('rsa', {
      modulusLength: 2048,
      publicKeyEncoding: { type: 'spki', format: 'jwk' },
      privateKeyEncoding: { type: 'pkcs8', format: 'jwk' },
    }));
    jwk.alg = 'RS256';
  } else if (kty === 'EC') {
    ({ privateKey: jwk } = crypto.generateKeyPairSync('ec', {
      namedCurve: 'P-256',
      publicKeyEncoding: { type: 'spki', format: 'jwk' },
      privateKeyEncoding: { type: 'pkcs8', format: 'jwk' },
    }));
    jwk.alg = 'ES256';
  } else {
    throw new Error(`unsupported kty ${kty}`);
  }
  return { kid: newKid(kty), use: 'sig', ...jwk };
}

function normalizeLoadedKey(jwk, file) {
  if (!jwk || typeof jwk !== 'object' || !jwk.kty) throw new Error(`${file}: not a JWK`);
  if (jwk.kty !== 'oct' && !jwk.d && !jwk.priv) throw new Error(`${file}: key ${jwk.kid ?? ''} has no private part`);
  const key = { ...jwk };
  if (!key.alg) {
    if (key.kty === 'RSA') key.alg = 'RS256';
    else if (key.kty === 'EC' && key.crv === 'P-256') key.alg = 'ES256';
  }
  key.use ??= 'sig';
  key.kid ??= newKid(key.kty);
  return key;
}

function loadOrCreateKeys(dir) {
  if (dir) {
    const files = fs.existsSync(dir)
      ? fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort()
      : [];
    if (files.length) {
      const keys = [];
      for (const f of files) {
        const file = path.join(dir, f);
        const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
        for (const jwk of Array.isArray(doc.keys) ? doc.keys : [doc]) {
          keys.push(normalizeLoadedKey(jwk, file));
        }
      }
      const kids = new Set();
      for (const k of keys) {
        if (kids.has(k.kid)) throw new Error(`duplicate kid ${k.kid} in ${dir}`);
        kids.add(k.kid);
      }
      log(`loaded ${keys.length} key(s) from ${dir}: ${keys.map((k) => k.kid).join(', ')}`);
      return keys;
    }
  }
  const keys = [generateKey('RSA'), generateKey('EC')];
  if (dir) {
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, 'jwks.json');
    fs.writeFileSync(file, `${JSON.stringify({ keys }, null, 2)}\n`, { mode: 0o600 });
    log(`generated keys written to ${file}`);
  }
  return keys;
}

// Newest first: for a given alg, oidc-provider signs with the first matching key.
let signingKeys = loadOrCreateKeys(opts.keys);

// ---------------------------------------------------------------------------
// Provider

// Imported only now so that anything the library prints at load time already
// goes to stderr. Note: `errors` is a named export; `Provider.errors` is undefined.
const { default: Provider, errors } = await import('oidc-provider');

function buildProvider(issuer) {
  const clients = CLIENTS.map((c) => ({
    client_id: c.id,
    client_secret: c.secret,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    // oidc-provider 9 accepts both client_secret_basic and client_secret_post
    // for a client registered with either of the two.
    token_endpoint_auth_method: 'client_secret_basic',
    scope: SCOPES,
  }));
  if (opts.consoleRedirect) {
    clients.push({
      client_id: CONSOLE_CLIENT.id,
      client_secret: CONSOLE_CLIENT.secret,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: [opts.consoleRedirect],
      token_endpoint_auth_method: 'client_secret_basic',
    });
  }
  const provider = new Provider(issuer, {
    clients,
    jwks: { keys: signingKeys },
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    scopes: ['openid', 'email', 'profile', 'groups', ...SCOPES.split(' ')],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], groups: ['groups'] },
    // The console reads who signed in from the ID token itself.
    conformIdTokenClaims: false,
    findAccount,
    // Every authorization code needs PKCE here (oidc-provider asks it of public clients
    // only by default): a console that stopped sending it would fail its tests.
    pkce: { required: () => true },
    responseTypes: ['none', 'code'],
    features: {
      // oidc-provider's own login and consent pages, for the console's sign-in only.
      devInteractions: { enabled: Boolean(opts.consoleRedirect) },
      clientCredentials: { enabled: true },
      introspection: { enabled: false },
      revocation: { enabled: false },
      resourceIndicators: {
        enabled: true,
        // Without a resource (explicit or default) the access token is opaque; the
        // console's sign-in needs none (it reads the ID token).
        defaultResource: (ctx, client) => (client?.clientId === CONSOLE_CLIENT.id ? undefined : DEFAULT_RESOURCE),
        useGrantedResource: () => true,
        getResourceServerInfo(ctx, resourceIndicator, client) {
          const alg = CLIENT_BY_ID.get(client.clientId)?.alg ?? 'RS256';
          return {
            scope: SCOPES,
            audience: audienceFor(resourceIndicator),
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg } },
          };
        },
      },
    },
    // Extra claims go into the JWT payload (the standard claims win on conflict).
    extraTokenClaims(ctx, token) {
      const c = CLIENT_BY_ID.get(token.clientId);
      return c && Object.keys(c.claims).length ? structuredClone(c.claims) : undefined;
    },
    ttl: {
      // Per-request override: a `ttl=<seconds>` form field on the token request.
      // It is not a registered token-endpoint parameter, so it is read from the
      // raw parsed body.
      ClientCredentials(ctx) {
        const raw = ctx?.oidc?.body?.ttl;
        if (raw !== undefined) {
          const n = Number(raw);
          if (Number.isInteger(n) && n > 0) return n;
          throw new errors.InvalidRequest('ttl must be a positive integer (seconds)');
        }
        return opts.ttl;
      },
    },
    renderError(ctx, out, error) {
      ctx.type = 'json';
      ctx.body = out;
    },
  });
  provider.on('server_error', (ctx, err) => log('server_error', err));
  provider.on('grant.error', (ctx, err) => log('token error:', err.message, err.error_description ?? ''));
  return { provider, handler: provider.callback() };
}

// ---------------------------------------------------------------------------
// HTTP server: /test/* control endpoints, /jwks accounting, then oidc-provider.

let current; // { provider, handler }
let jwksFetches = 0;
let downUntil = 0; // epoch ms; /jwks answers 503 until then
let issuerPath = ''; // path part of the issuer, e.g. /auth/realms/ML

function sendJson(res, status, body) {
  const data = `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(data),
    'cache-control': 'no-store',
  });
  res.end(data);
}

function isLoopback(addr) {
  return addr === '127.0.0.1' || addr === '::1' || addr === '::ffff:127.0.0.1';
}

function publicJwks() {
  return signingKeys.map((k) => ({ kid: k.kid, kty: k.kty, alg: k.alg }));
}

function handleTest(req, res, url) {
  if (!isLoopback(req.socket.remoteAddress)) {
    sendJson(res, 403, { error: 'forbidden' });
    return;
  }
  const route = `${req.method} ${url.pathname}`;
  switch (route) {
    case 'POST /test/rotate': {
      const kty = (url.searchParams.get('kty') || 'RSA').toUpperCase();
      if (kty !== 'RSA' && kty !== 'EC') {
        sendJson(res, 400, { error: 'kty must be RSA or EC' });
        return;
      }
      const dropOld = ['1', 'true', 'yes'].includes(url.searchParams.get('drop_old') ?? '');
      const key = generateKey(kty);
      const kept = dropOld ? signingKeys.filter((k) => k.kty !== kty) : signingKeys;
      signingKeys = [key, ...kept];
      // oidc-provider fixes its keystore at construction, so rotation swaps in
      // a new Provider instance (same issuer, same clients) behind the same
      // listening socket.
      current = buildProvider(current.provider.issuer);
      log(`rotated: new ${kty} key ${key.kid}${dropOld ? ' (older keys of that type dropped)' : ''}`);
      sendJson(res, 200, { kid: key.kid, keys: publicJwks() });
      return;
    }
    case 'GET /test/keys':
      sendJson(res, 200, { keys: publicJwks() });
      return;
    case 'GET /test/jwks-fetches':
      sendJson(res, 200, { count: jwksFetches });
      return;
    case 'POST /test/reset-counters':
      jwksFetches = 0;
      sendJson(res, 200, { count: jwksFetches });
      return;
    case 'POST /test/down': {
      const seconds = Number(url.searchParams.get('seconds') ?? '30');
      if (!Number.isFinite(seconds) || seconds < 0) {
        sendJson(res, 400, { error: 'seconds must be a non-negative number' });
        return;
      }
      downUntil = Date.now() + seconds * 1000;
      log(`/jwks down for ${seconds}s`);
      sendJson(res, 200, { down_for_seconds: seconds });
      return;
    }
    case 'POST /test/up':
      downUntil = 0;
      sendJson(res, 200, { down_for_seconds: 0 });
      return;
    default:
      sendJson(res, 404, { error: `no such test endpoint: ${route}` });
  }
}

function onRequest(req, res) {
  let url;
  try {
    url = new URL(req.url, 'http://127.0.0.1');
  } catch {
    sendJson(res, 400, { error: 'bad request target' });
    return;
  }
  if (url.pathname === '/test' || url.pathname.startsWith('/test/')) {
    handleTest(req, res, url);
    return;
  }

  // Also serve everything under the issuer's path, so that
  // http://127.0.0.1:PORT/auth/realms/ML/.well-known/openid-configuration works
  // like it would on the real IdP. Mimics an Express mount: req.originalUrl keeps
  // the full path, which oidc-provider uses to build the endpoint URLs.
  let routePath = url.pathname;
  if (issuerPath && (routePath === issuerPath || routePath.startsWith(`${issuerPath}/`))) {
    req.originalUrl = req.url;
    req.url = req.url.slice(issuerPath.length) || '/';
    routePath = routePath.slice(issuerPath.length) || '/';
  }

  if (routePath === '/jwks') {
    jwksFetches += 1;
    if (Date.now() < downUntil) {
      log(`/jwks fetch #${jwksFetches} -> 503 (simulated outage)`);
      sendJson(res, 503, { error: 'temporarily_unavailable', error_description: 'simulated IdP outage' });
      return;
    }
    log(`/jwks fetch #${jwksFetches}`);
  }
  current.handler(req, res);
}

const server = http.createServer(onRequest);
server.keepAliveTimeout = 5000;

server.on('error', (err) => {
  log('server error:', err.message);
  process.exit(1);
});

server.listen(opts.port, '127.0.0.1', () => {
  const { port } = server.address();
  const url = `http://127.0.0.1:${port}`;
  const issuer = opts.issuer ?? url;
  issuerPath = new URL(issuer).pathname.replace(/\/+$/, '');
  current = buildProvider(issuer);

  // jwks_uri and token_endpoint are the loopback URLs on purpose, even when the
  // issuer names another host (e.g. https://idp.local/auth/realms/ML): that host
  // does not resolve in tests, so tests point Palisade's jwksUri (and their token
  // requests) at where this process actually listens, while the tokens' `iss`
  // and the discovery document still carry the configured issuer.
  const ready = {
    issuer,
    url,
    jwks_uri: `${url}/jwks`,
    token_endpoint: `${url}/token`,
  };
  const line = `{${Object.entries(ready).map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`).join(', ')}}\n`;
  process.stdout.write(line);
  log(`listening on ${url}, issuer ${issuer}, keys ${signingKeys.map((k) => k.kid).join(', ')}`);
});

// ---------------------------------------------------------------------------
// Clean shutdown

let stopping = false;
function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  log(`${signal} received, shutting down`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
