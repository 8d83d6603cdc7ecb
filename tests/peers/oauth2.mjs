// A real OAuth2 authorization server for wasp's tests: the npm package
// `oauth2-mock-server` (8.2.3, pinned by .ci/run), driven through its library
// API rather than its command line (whose /introspect answers active:true to
// anything). tests/common/oauth2.rs starts it; it can also be run by hand.
//
//   node tests/peers/oauth2.mjs [PORT]      PORT 0 (the default) = a free port
//
// Listens on 127.0.0.1 only, prints one line `ready <port>` on stdout once it
// accepts connections, and runs until killed or until its stdin closes (so a
// test process that dies, even without running destructors, takes it along;
// by hand: `sleep infinity | node tests/peers/oauth2.mjs`). The issuer is
// `http://127.0.0.1:<port>` (the package would say `localhost`).
//
// The package is loaded from `$WASP_TEST_NODE_MODULES` (default
// `~/.cache/wasp/node/node_modules`): it lives outside the clone, and it is
// ESM-only, so NODE_PATH cannot find it; it is resolved there and imported by
// file URL.
//
// The package's own endpoints, unchanged except where noted:
//   GET  /.well-known/openid-configuration
//   GET  /jwks                 one key per algorithm (RS256, ES256, EdDSA at
//                              start); counted; can fail or be slow on demand
//   POST /token                the package's grants (client_credentials, ...);
//                              it picks the signing key round-robin, so
//                              successive tokens use RS256, ES256, EdDSA, ...
//   POST /introspect           RFC 7662, form `token=...` (or JSON): this
//                              script answers it (the package alone says
//                              active:true to anything): active with the
//                              token's claims for a token this server signed,
//                              not deactivated, not expired and not before its
//                              nbf; else {"active":false}. Counted; the last
//                              Authorization header is kept; can fail or be
//                              slow on demand
//   POST /revoke               RFC 7009, form `token=...`: also deactivates
//   /authorize, /userinfo, /endsession as the package has them
//
// Test controls on the same port (JSON in and out; 400 on bad input):
//   POST /test/token       {"alg":"ES256","claims":{..},"expires_in":300,
//                           "header":{..}}  ->  {"access_token":"...","kid":"..."}
//                          alg defaults to RS256, expires_in to 3600 (negative:
//                          already expired). The package sets iss, iat,
//                          exp = iat + expires_in and nbf = iat - 10; `claims`
//                          are then merged over them, a null deleting the claim
//                          ({"exp":null}: no exp). `header` likewise over
//                          {typ:"JWT", kid}; alg always names the key's.
//   POST /test/rotate      {"alg":"RS256"}  ->  {"kid":"<new kid>"}: a new key
//                          for that algorithm replaces the old one, whose kid
//                          leaves /jwks (tokens it signed stay introspectable).
//                          Another algorithm the package supports (RS384, PS256,
//                          ES384, ...) gets its first key this way.
//   GET  /test/keys        {"RS256":"<kid>","ES256":"<kid>","EdDSA":"<kid>"}
//   POST /test/deactivate  {"token":"..."}  ->  {"ok":true}
//   GET  /test/stats       {"jwks":N,"introspect":M,"token":T,
//                           "introspect_auth":"Basic ..."|null,
//                           "introspect_token":"..."|null}
//                          requests that reached /jwks, /introspect and /token
//                          (failed or delayed ones too), and the Authorization
//                          header and token of the last /introspect request
//   POST /test/jwks-status        {"status":503,"delay_ms":0}
//   POST /test/introspect-status  {"status":503,"delay_ms":0}
//                          each field given replaces the current one, others
//                          stay: status 0 or 200 answers normally again, any
//                          other status is answered with {"error":"injected"};
//                          delay_ms waits that long before answering -> the
//                          current {"status":S,"delay_ms":D}
//   POST /test/reset-stats {}  ->  {"ok":true}: counters to zero
//
// Keys are generated at start with kids like `rs256-1-3f9a0c2b` (algorithm,
// generation, random).

import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';

const modulesDir =
  process.env.WASP_TEST_NODE_MODULES || join(homedir(), '.cache', 'wasp', 'node', 'node_modules');

let lib;
try {
  const entry = createRequire(join(modulesDir, 'noop.js')).resolve('oauth2-mock-server');
  lib = await import(pathToFileURL(entry).href);
} catch (e) {
  process.stderr.write(
    `oauth2.mjs: cannot load oauth2-mock-server from ${modulesDir} (${e.message}); ` +
      `install it with \`npm install --prefix ~/.cache/wasp/node oauth2-mock-server@8.2.3\` ` +
      `(.ci/run installs it) or point WASP_TEST_NODE_MODULES at a node_modules that has it\n`,
  );
  process.exit(2);
}
const { OAuth2Issuer, OAuth2Service } = lib;

const port = Number(process.argv[2] ?? 0);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`oauth2.mjs: bad port ${process.argv[2]}\n`);
  process.exit(2);
}

// ---- state -----------------------------------------------------------------

let issuerUrl; // http://127.0.0.1:<port>, once listening
let issuer; // the package's OAuth2Issuer (holds the keys)
let service; // the package's OAuth2Service (the express app)
const currentKid = new Map(); // alg -> kid of its current key
let generation = 0;
const issued = new Map(); // access token -> { claims, clientId }
const deactivated = new Set();
const stats = { jwks: 0, introspect: 0, token: 0, introspect_auth: null, introspect_token: null };
const faults = { jwks: { status: 0, delay_ms: 0 }, introspect: { status: 0, delay_ms: 0 } };

function newKid(alg) {
  generation += 1;
  return `${alg.toLowerCase()}-${generation}-${randomBytes(4).toString('hex')}`;
}

// The package's key store can add keys but not remove one, and the service
// keeps its issuer for life: a rotation builds a new issuer and service from
// the keys that stay (their private JWKs) plus a new one.
async function build(keep, fresh) {
  const iss = new OAuth2Issuer();
  iss.url = issuerUrl;
  for (const jwk of keep) await iss.keys.add(jwk);
  for (const alg of fresh) {
    const jwk = await iss.keys.generate(alg, { kid: newKid(alg) });
    currentKid.set(alg, jwk.kid);
  }
  const svc = new OAuth2Service(iss);
  // Tokens from /token are remembered, for /introspect, with the client that
  // asked (Basic auth or client_id in the form).
  svc.on('beforeResponse', (response, req) => {
    const token = response.body?.access_token;
    if (typeof token !== 'string') return;
    let clientId = req.body?.client_id;
    const auth = req.headers.authorization;
    if (typeof auth === 'string' && /^basic /i.test(auth)) {
      const decoded = Buffer.from(auth.slice(6).trim(), 'base64').toString();
      clientId = decodeURIComponent(decoded.split(':')[0]);
    }
    remember(token, clientId);
  });
  svc.on('beforeIntrospect', (response, req) => {
    response.statusCode = 200;
    response.body = introspect(req.body?.token);
  });
  svc.on('beforeRevoke', (_response, req) => {
    if (typeof req.body?.token === 'string') deactivated.add(req.body.token);
  });
  issuer = iss;
  service = svc;
}

function payloadOf(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
}

function remember(token, clientId) {
  const claims = payloadOf(token);
  issued.set(token, { claims, clientId: claims.client_id ?? claims.azp ?? clientId });
}

// RFC 7662 section 2.2: the token's claims, `active`, `client_id` and
// `token_type`; anything not active is just {"active":false}.
function introspect(token) {
  if (typeof token !== 'string' || deactivated.has(token)) return { active: false };
  const entry = issued.get(token);
  if (entry === undefined) return { active: false };
  const now = Math.floor(Date.now() / 1000);
  const { claims, clientId } = entry;
  if (typeof claims.exp === 'number' && claims.exp <= now) return { active: false };
  if (typeof claims.nbf === 'number' && claims.nbf > now) return { active: false };
  const body = { active: true, ...claims, token_type: 'Bearer' };
  if (clientId !== undefined && body.client_id === undefined) body.client_id = clientId;
  body.active = true;
  return body;
}

function merge(target, overrides) {
  for (const [k, v] of Object.entries(overrides ?? {})) {
    if (v === null) delete target[k];
    else target[k] = v;
  }
}

async function signToken({ alg = 'RS256', claims = {}, expires_in = 3600, header = {} }) {
  const kid = currentKid.get(alg);
  if (kid === undefined) throw new BadRequest(`no key for alg ${alg}; have ${[...currentKid.keys()].join(', ')}`);
  if (!Number.isFinite(expires_in)) throw new BadRequest('expires_in must be a number');
  if (!isObject(claims) || !isObject(header)) throw new BadRequest('claims and header must be objects');
  const token = await issuer.buildToken({
    kid,
    expiresIn: expires_in,
    scopesOrTransform: (h, p) => {
      merge(p, claims);
      merge(h, header);
    },
  });
  remember(token);
  return { access_token: token, kid };
}

async function rotate(alg) {
  if (typeof alg !== 'string') throw new BadRequest('alg missing');
  const old = currentKid.get(alg);
  const keep = issuer.keys.toJSON(true).filter((k) => k.kid !== old);
  try {
    await build(keep, [alg]);
  } catch (e) {
    throw new BadRequest(`cannot make a ${alg} key: ${e.message}`);
  }
  return { kid: currentKid.get(alg) };
}

// ---- HTTP ------------------------------------------------------------------

class BadRequest extends Error {}

const isObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString()));
    req.on('error', reject);
  });
}

// A form when it says so and `form` allows it (/introspect, /revoke), else JSON
// (the /test/ controls take JSON whatever the Content-Type).
function parseBody(req, text, form) {
  if (text === '') return {};
  const type = req.headers['content-type'] ?? '';
  if (form && type.includes('application/x-www-form-urlencoded')) {
    return Object.fromEntries(new URLSearchParams(text));
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new BadRequest('body is not JSON');
  }
}

function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function setFault(which, body) {
  if (!isObject(body)) throw new BadRequest('body must be an object');
  for (const field of ['status', 'delay_ms']) {
    if (body[field] === undefined) continue;
    const v = body[field];
    if (!Number.isInteger(v) || v < 0 || (field === 'status' && v !== 0 && (v < 100 || v > 599))) {
      throw new BadRequest(`bad ${field}`);
    }
    faults[which][field] = v;
  }
  return faults[which];
}

async function control(method, path, body) {
  const route = `${method} ${path}`;
  switch (route) {
    case 'POST /test/token':
      if (!isObject(body)) throw new BadRequest('body must be an object');
      return signToken(body);
    case 'POST /test/rotate':
      return rotate(body?.alg);
    case 'GET /test/keys':
      return Object.fromEntries(currentKid);
    case 'POST /test/deactivate':
      if (typeof body?.token !== 'string') throw new BadRequest('token missing');
      deactivated.add(body.token);
      return { ok: true };
    case 'GET /test/stats':
      return stats;
    case 'POST /test/reset-stats':
      stats.jwks = stats.introspect = stats.token = 0;
      return { ok: true };
    case 'POST /test/jwks-status':
      return setFault('jwks', body);
    case 'POST /test/introspect-status':
      return setFault('introspect', body);
    default:
      return undefined;
  }
}

async function handle(req, res) {
  const path = new URL(req.url, 'http://x').pathname;
  if (path.startsWith('/test/')) {
    const body = parseBody(req, await readBody(req), false);
    const answer = await control(req.method, path, body);
    if (answer === undefined) send(res, 404, { error: `no ${req.method} ${path}` });
    else send(res, 200, answer);
    return;
  }
  let fault;
  if (path === '/jwks') {
    stats.jwks += 1;
    fault = faults.jwks;
  } else if (path === '/introspect') {
    stats.introspect += 1;
    stats.introspect_auth = req.headers.authorization ?? null;
    fault = faults.introspect;
  } else if (path === '/token') {
    stats.token += 1;
  }
  // The package parses JSON bodies only (and forms on /token): read the form
  // of /introspect and /revoke here. A request read to its end counts as
  // parsed for the package's body parser, which then leaves req.body alone.
  if (req.method === 'POST' && (path === '/introspect' || path === '/revoke')) {
    req.body = parseBody(req, await readBody(req), true);
    if (path === '/introspect') stats.introspect_token = req.body?.token ?? null;
  }
  if (fault) {
    if (fault.delay_ms > 0) await sleep(fault.delay_ms);
    if (fault.status !== 0 && fault.status !== 200) {
      send(res, fault.status, { error: 'injected' });
      return;
    }
  }
  service.requestHandler(req, res);
}

const server = createServer((req, res) => {
  handle(req, res).catch((e) => {
    if (!res.headersSent) send(res, e instanceof BadRequest ? 400 : 500, { error: e.message });
    else res.destroy();
  });
});

await build([], ['RS256', 'ES256', 'EdDSA']);
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, '127.0.0.1', resolve);
});
const bound = server.address().port;
issuerUrl = `http://127.0.0.1:${bound}`;
issuer.url = issuerUrl;

process.stdin.on('data', () => {});
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
process.stdout.write(`ready ${bound}\n`);
