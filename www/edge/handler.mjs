// The edge handler: the token endpoint, revocation and metadata of a Granted server, for
// serverless runtimes that call `fetch(request, env, ctx)`. It runs the very `_bg.wasm` the host
// embeds (through the wasm-bindgen glue) and uses only web-standard APIs: Request, Response,
// crypto.subtle (PBKDF2 at native speed), TextEncoder. No Node built-ins.
//
// env (see www/edge/README.md):
//   GRANTED_STORE              the store: get(key), put(key, value), increment(key) (atomic)
//   GRANTED_SIGNING_KEY        a private JWK with `kid` and `alg` (ES256, EdDSA, RS256 or HS256):
//                              signs access tokens through WebCrypto (JSON text or object)
//   GRANTED_VERIFICATION_KEYS  [JWK]: every key whose tokens may still be live, public halves
//                              (the JWKS served; optional: the signing key's public half)
//   GRANTED_CLIENT_SECRET_KEY  base64: the key client secrets are HMACed under
//   GRANTED_ISSUER             this server's base URL
//   GRANTED_WASM               the module (a WebAssembly.Module, or its bytes); else fetched
//                              next to the glue
//   GRANTED_KDF_ITERATIONS, GRANTED_SUNSET, GRANTED_ACCESS_TOKEN_TTL, GRANTED_REFRESH_TOKEN_TTL,
//   GRANTED_LOCKOUT_THRESHOLD, GRANTED_LOCKOUT_FIRST_SECONDS, GRANTED_LOCKOUT_MAX_SECONDS,
//   GRANTED_FIXED_NOW (tests), GRANTED_AUDIT (a function given each decision's audit record),
//   GRANTED_RECORD_DECISION (tests: a function given each decision's audit record and effects)

import init, { TokenFlow, callJson } from '../pkg/granted_policy.js';

/** The largest request body read. */
export const MAX_BODY = 64 * 1024;

const encoder = new TextEncoder();

function b64(bytes) {
  let text = '';
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text);
}

function unb64(text) {
  const raw = atob(text);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i += 1) out[i] = raw.charCodeAt(i);
  return out;
}

async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return [...digest].map((b) => b.toString(16).padStart(2, '0')).join('');
}

function json(status, body, headers = {}) {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/json;charset=UTF-8', 'Cache-Control': 'no-store', ...headers },
  });
}

function oauthError(status, error, description, headers = {}) {
  return json(status, { error, error_description: description }, headers);
}

function unavailable(description) {
  return oauthError(503, 'temporarily_unavailable', description, { 'Retry-After': '1' });
}

/** The operations a store must have; without the atomic counter, lockouts and refresh
 *  rotation cannot be kept, so such a store is refused. */
export function checkStore(store) {
  if (!store) throw new Error('env.GRANTED_STORE is missing: the edge needs a store (see www/edge/README.md)');
  for (const op of ['get', 'put', 'increment']) {
    if (typeof store[op] !== 'function') {
      throw new Error(`env.GRANTED_STORE has no ${op}(): lockout counters and refresh-token rotation need get, put and an atomic increment; a store without them is refused`);
    }
  }
}

function parsed(value) {
  if (value === undefined || value === null || value === '') return undefined;
  return typeof value === 'string' ? JSON.parse(value) : value;
}

function number(value, fallback) {
  if (value === undefined || value === null || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`not a whole number: ${value}`);
  return n;
}

/** Settings from env, checked once per env object. */
const prepared = new WeakMap();
let moduleReady = null;
let moduleDigest = null;

/** How WebCrypto imports and signs with a key of each JWS algorithm. */
const SIGNING_ALGORITHMS = {
  ES256: { import: { name: 'ECDSA', namedCurve: 'P-256' }, sign: { name: 'ECDSA', hash: 'SHA-256' } },
  EdDSA: { import: { name: 'Ed25519' }, sign: { name: 'Ed25519' } },
  RS256: { import: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, sign: { name: 'RSASSA-PKCS1-v1_5' } },
  HS256: { import: { name: 'HMAC', hash: 'SHA-256' }, sign: { name: 'HMAC' } },
};

/** The public half of a JWK for the JWKS; null for a symmetric (HS256) key, never published. */
function publicJwk(jwk) {
  if (!jwk || jwk.kty === 'oct') return null;
  const { d, p, q, dp, dq, qi, k, oth, key_ops, ...rest } = jwk;
  return { ...rest, use: 'sig' };
}

/** The host's part of `need_signature`: the signature over the signing input, base64url. */
async function sign(settings, step) {
  const { signing } = settings;
  if (step.kid !== signing.kid || step.alg !== signing.alg) throw new Error(`the module asked for a signature by key ${step.kid}`);
  const signature = new Uint8Array(await crypto.subtle.sign(signing.algorithm.sign, signing.key, encoder.encode(step.signing_input)));
  return b64(signature).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export async function ready(env) {
  if (prepared.has(env)) return prepared.get(env);
  checkStore(env.GRANTED_STORE);
  if (!moduleReady) {
    moduleReady = (async () => {
      let source = env.GRANTED_WASM;
      if (source === undefined) source = await (await fetch(new URL('../pkg/granted_policy_bg.wasm', import.meta.url))).arrayBuffer();
      if (!(source instanceof WebAssembly.Module)) {
        moduleDigest = await sha256Hex(source);
      }
      await init({ module_or_path: source });
    })();
  }
  await moduleReady;
  const jwk = parsed(env.GRANTED_SIGNING_KEY);
  const algorithm = SIGNING_ALGORITHMS[jwk?.alg];
  if (!jwk?.kid || !algorithm) throw new Error('env.GRANTED_SIGNING_KEY must be a private JWK with `kid` and `alg` (ES256, EdDSA, RS256 or HS256)');
  // Imported once, not extractable: the private key stays in WebCrypto, never in the module.
  const signing = {
    kid: jwk.kid,
    alg: jwk.alg,
    algorithm,
    key: await crypto.subtle.importKey('jwk', { ...jwk, key_ops: ['sign'] }, algorithm.import, false, ['sign']),
  };
  const published = (parsed(env.GRANTED_VERIFICATION_KEYS) ?? [jwk]).map(publicJwk).filter(Boolean);
  if (!env.GRANTED_CLIENT_SECRET_KEY) throw new Error('env.GRANTED_CLIENT_SECRET_KEY is missing');
  if (!env.GRANTED_ISSUER) throw new Error('env.GRANTED_ISSUER is missing');
  const settings = {
    store: env.GRANTED_STORE,
    signing,
    // The JWKS, and the keys the revocation endpoint's context names (`kid` and `alg` only).
    jwks: { keys: published },
    verification: (parsed(env.GRANTED_VERIFICATION_KEYS) ?? [jwk]).map((k) => ({ kid: k.kid, alg: k.alg })),
    clientSecretKey: env.GRANTED_CLIENT_SECRET_KEY,
    issuer: String(env.GRANTED_ISSUER).replace(/\/+$/, ''),
    kdfIterations: number(env.GRANTED_KDF_ITERATIONS, 600000),
    accessTtl: number(env.GRANTED_ACCESS_TOKEN_TTL, 3600),
    refreshTtl: number(env.GRANTED_REFRESH_TOKEN_TTL, 30 * 24 * 3600),
    sunset: env.GRANTED_SUNSET || undefined,
    // The token context's lockout settings; the module turns them into each failure's schedule.
    lockout: {
      threshold: Math.max(1, number(env.GRANTED_LOCKOUT_THRESHOLD, 5)),
      first_seconds: Math.max(1, number(env.GRANTED_LOCKOUT_FIRST_SECONDS, 60)),
      max_seconds: Math.max(1, number(env.GRANTED_LOCKOUT_MAX_SECONDS, 3600)),
    },
    fixedNow: env.GRANTED_FIXED_NOW || undefined,
    audit: typeof env.GRANTED_AUDIT === 'function' ? env.GRANTED_AUDIT : null,
    // Tests: every decision's audit record and effects, as the host's `record_decisions`.
    decisions: typeof env.GRANTED_RECORD_DECISION === 'function' ? env.GRANTED_RECORD_DECISION : null,
  };
  prepared.set(env, settings);
  return settings;
}

function now(settings) {
  const at = settings.fixedNow ? new Date(settings.fixedNow) : new Date();
  return at.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function plusSeconds(instant, seconds) {
  return new Date(Date.parse(instant) + seconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

// --- the store's keys --------------------------------------------------------------------------

const key = {
  tenant: (t) => `tenant:${t}`,
  client: (c) => `client:${c}`,
  user: (t, u) => `user:${t}:${u}`,
  refresh: (sha) => `refresh:${sha}`,
  consumed: (sha) => `refresh-consumed:${sha}`,
  familyRevoked: (f) => `family-revoked:${f}`,
  failures: (t, u) => `failures:${t}:${u}`,
  locks: (t, u) => `locks:${t}:${u}`,
  lockedUntil: (t, u) => `locked-until:${t}:${u}`,
};

/** Every record of a snapshot (`granted export --edge`) as the store's entries. */
export function snapshotEntries(snapshot) {
  if (snapshot?.format !== 'granted-edge-snapshot/1') throw new Error('not a granted edge snapshot (granted-edge-snapshot/1)');
  const entries = [];
  for (const [t, tenant] of Object.entries(snapshot.tenants)) entries.push([key.tenant(t), tenant]);
  for (const [c, client] of Object.entries(snapshot.clients)) entries.push([key.client(c), client]);
  for (const [t, users] of Object.entries(snapshot.users)) {
    for (const [u, user] of Object.entries(users)) {
      const { locked_until: until, ...record } = user;
      entries.push([key.user(t, u), { ...record, locked_until: null }]);
      if (until) entries.push([key.lockedUntil(t, u), until]);
    }
  }
  for (const [sha, token] of Object.entries(snapshot.refresh_tokens)) entries.push([key.refresh(sha), token]);
  return entries;
}

async function lockedUntil(store, tenant, username, at) {
  const until = await store.get(key.lockedUntil(tenant, username));
  return until && Date.parse(until) > Date.parse(at) ? until : null;
}

/** The records a `need_records` step asks for. */
async function records(store, lookup, at) {
  const out = {
    tenant: (await store.get(key.tenant(lookup.tenant))) ?? null,
    client: (await store.get(key.client(lookup.client_id))) ?? null,
  };
  if (lookup.username !== null && lookup.username !== undefined) {
    const user = await store.get(key.user(lookup.tenant, lookup.username));
    out.user = user ? { ...user, locked_until: await lockedUntil(store, lookup.tenant, lookup.username, at) } : null;
  }
  if (lookup.refresh_token_sha256 !== null && lookup.refresh_token_sha256 !== undefined) {
    const sha = lookup.refresh_token_sha256;
    const token = await store.get(key.refresh(sha));
    if (token && token.status === 'active' && (await store.get(key.consumed(sha))) >= 1) {
      // Consumed by a request whose record update has not landed yet.
      out.refresh_token = { ...token, status: 'used' };
    } else if (token && token.status === 'active' && await store.get(key.familyRevoked(token.family_id))) {
      out.refresh_token = { ...token, status: 'revoked' };
    } else {
      out.refresh_token = token ?? null;
    }
  }
  // The edge serves no sign-in pages, so it issued no authorization code and keeps no consent:
  // an exchange here finds no code (X1), as the module then says.
  if (lookup.code_sha256 !== null && lookup.code_sha256 !== undefined) out.code = null;
  if (lookup.consent_app_id !== null && lookup.consent_app_id !== undefined) out.consent = null;
  return out;
}

/** Applies a decision's effects; 'race' when it must be decided again (a refresh token used by a
 *  concurrent request, or a success meeting a lock set meanwhile). */
async function apply(settings, effects, at) {
  const { store } = settings;
  for (const effect of effects) {
    if (effect.effect === 'reset_login_failures' && await lockedUntil(store, effect.tenant, effect.username, at)) {
      return 'race';
    }
  }
  for (const effect of effects) {
    switch (effect.effect) {
      case 'consume_refresh_token': {
        const n = await store.increment(key.consumed(effect.token_sha256));
        const record = await store.get(key.refresh(effect.token_sha256));
        if (n !== 1) {
          if (record) await store.put(key.familyRevoked(record.family_id), true);
          return 'race';
        }
        if (record) await store.put(key.refresh(effect.token_sha256), { ...record, status: 'used' });
        break;
      }
      case 'store_refresh_token':
        await store.put(key.refresh(effect.record.token_sha256), effect.record);
        break;
      case 'revoke_refresh_family':
        await store.put(key.familyRevoked(effect.family_id), true);
        break;
      case 'record_login_failure': {
        // The module says what the count means (effect.lockout: lock_after, lock_seconds); the
        // store only counts. The counter is never set back at a lock, so a lock falls on every
        // lock_after-th failure, and each lock takes the next length of the schedule (the last
        // one for every later lock). Both counters are atomic: concurrent failures all count.
        const { lock_after: lockAfter, lock_seconds: lengths } = effect.lockout;
        const n = await store.increment(key.failures(effect.tenant, effect.username));
        if (n % lockAfter === 0) {
          const locks = await store.increment(key.locks(effect.tenant, effect.username));
          const seconds = lengths[Math.min(locks, lengths.length) - 1];
          await store.put(key.lockedUntil(effect.tenant, effect.username), plusSeconds(at, seconds));
        }
        break;
      }
      case 'store_password_hash': {
        // A hash at the current parameters in place of the one that verified, unless it changed.
        const user = await store.get(key.user(effect.tenant, effect.username));
        if (user && user.password_hash === effect.replaces) {
          await store.put(key.user(effect.tenant, effect.username), { ...user, password_hash: effect.hash });
        }
        break;
      }
      case 'reset_login_failures':
        await store.put(key.failures(effect.tenant, effect.username), 0);
        await store.put(key.locks(effect.tenant, effect.username), 0);
        break;
      default:
        throw new Error(`unknown effect ${effect.effect}`);
    }
  }
  return 'done';
}

/** PBKDF2 through WebCrypto, with the module's parameters. */
export async function pbkdf2(params, password) {
  const hash = { 'pbkdf2-sha256': 'SHA-256', 'pbkdf2-sha512': 'SHA-512' }[params.algorithm];
  if (!hash) throw new Error(`unknown KDF ${params.algorithm}`);
  const keyMaterial = await crypto.subtle.importKey('raw', encoder.encode(password), 'PBKDF2', false, ['deriveBits']);
  const bits = await crypto.subtle.deriveBits(
    { name: 'PBKDF2', hash, salt: unb64(params.salt), iterations: params.iterations },
    keyMaterial,
    params.length * 8,
  );
  return b64(new Uint8Array(bits));
}

async function rawRequest(request, tenant) {
  const length = Number(request.headers.get('content-length') ?? '0');
  if (length > MAX_BODY) return { tooLarge: true };
  const body = new Uint8Array(await request.arrayBuffer());
  if (body.length > MAX_BODY) return { tooLarge: true };
  const headers = [];
  request.headers.forEach((value, name) => {
    // The Fetch API joins a repeated header into one value with ", ". Credentials never hold
    // ", ", so a joined Authorization header is split back, and the module sees it repeated
    // (RFC 6749 §3.2: invalid_request), as the host does.
    if (name === 'authorization' && /^[^\s,]+ [^\s,]+(, [^\s,]+ [^\s,]+)+$/.test(value)) {
      for (const one of value.split(', ')) headers.push([name, one]);
    } else {
      headers.push([name, value]);
    }
  });
  return { raw: { method: request.method, tenant, headers, body_base64: b64(body) } };
}

function respond(response) {
  return new Response(response.body, { status: response.status, headers: response.headers });
}

/** Bytes of entropy a token request needs (the module's ENTROPY_BYTES). */
const ENTROPY_BYTES = 80;

function entropy() {
  return b64(crypto.getRandomValues(new Uint8Array(ENTROPY_BYTES)));
}

function auditEntry(kind, audit, at) {
  return {
    at, kind, decision: audit.decision, rule: audit.rule, reason: audit.reason, cause: audit.cause,
    grant_type: audit.grant_type, tenant: audit.tenant, app_id: audit.app_id,
    client_id: audit.client_id ?? null, username: audit.username ?? null, pinned_rev: audit.pinned_rev ?? null,
    policy_sha256: moduleDigest,
  };
}

/** Hands an audit record to env.GRANTED_AUDIT: after the answer when the runtime can wait for
 *  it (ctx.waitUntil), else before. */
async function record(settings, entry, ctx) {
  if (!settings.audit) return;
  if (typeof ctx?.waitUntil === 'function') ctx.waitUntil(Promise.resolve().then(() => settings.audit(entry)));
  else await settings.audit(entry);
}

/** One token request through the module's flow; null when it must be decided again. */
async function decideToken(settings, raw, ctx) {
  const at = now(settings);
  const context = {
    now: at, issuer: settings.issuer, access_token_ttl: settings.accessTtl, refresh_token_ttl: settings.refreshTtl,
    signing_key: { kid: settings.signing.kid, alg: settings.signing.alg }, client_secret_key: settings.clientSecretKey,
    kdf_iterations: settings.kdfIterations, lockout: settings.lockout, entropy: entropy(),
  };
  if (settings.sunset) context.sunset = settings.sunset;
  const flow = new TokenFlow({ request: raw, context });
  try {
    let step = flow.step();
    for (let i = 0; i < 6; i += 1) {
      if (step.step === 'need_records') {
        step = flow.resume({ records: await records(settings.store, step.lookup, at) });
      } else if (step.step === 'need_kdf') {
        // `rehash`: the password verified against an outdated hash and is hashed again.
        const derived = { derived: await pbkdf2(step.kdf, step.password) };
        step = flow.resume(step.purpose === 'rehash' ? { rehash_kdf: derived } : { kdf: derived });
      } else if (step.step === 'need_signature') {
        const signature = await sign(settings, step);
        step = flow.resume(step.purpose === 'id_token' ? { id_token_signature: signature } : { signature });
      } else if (step.step === 'done') {
        if (await apply(settings, step.effects, at) === 'race') return null;
        settings.decisions?.({ audit: step.audit, effects: step.effects });
        const entry = auditEntry('token', step.audit, at);
        await record(settings, entry, ctx);
        return respond(step.response);
      } else {
        throw new Error(`unknown step ${step.step}`);
      }
    }
    throw new Error('the module did not finish in 6 steps');
  } finally {
    flow.free();
  }
}

function call(entry, input) {
  const answer = JSON.parse(callJson(entry, JSON.stringify(input)));
  if (answer.error) throw new Error(`the policy module refused the input: ${answer.error.message}`);
  return answer.ok;
}

async function decideRevocation(settings, raw, ctx) {
  const at = now(settings);
  const input = {
    request: raw,
    context: { now: at, client_secret_key: settings.clientSecretKey, verification_keys: settings.verification },
    records: {},
  };
  for (let i = 0; i < 3; i += 1) {
    const step = call('revocation', input);
    if (step.step === 'need_records') {
      input.records = await records(settings.store, step.lookup, at);
    } else if (step.step === 'done') {
      await apply(settings, step.effects, at);
      settings.decisions?.({ audit: step.audit, effects: step.effects });
      const entry = auditEntry('revocation', step.audit, at);
      await record(settings, entry, ctx);
      return respond(step.response);
    } else {
      throw new Error(`unknown step ${step.step}`);
    }
  }
  throw new Error('the module did not finish in 3 steps');
}

async function metadata(settings, tenant) {
  if (!(await settings.store.get(key.tenant(tenant)))) return oauthError(404, 'not_found', 'no such tenant');
  const issuer = `${settings.issuer}/tenants/${tenant}`;
  return json(200, {
    issuer,
    token_endpoint: `${issuer}/connect/token`,
    revocation_endpoint: `${issuer}/connect/revocation`,
    jwks_uri: `${issuer}/.well-known/jwks.json`,
    grant_types_supported: ['password', 'client_credentials', 'refresh_token'],
    token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
    revocation_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
    response_types_supported: [],
  });
}

function tenantOf(segment) {
  try { return decodeURIComponent(segment); } catch { return null; }
}

export default {
  async fetch(request, env, ctx) {
    let settings;
    try {
      settings = await ready(env);
    } catch (e) {
      console.error(`granted edge: not started: ${e.message}`);
      return unavailable('the token service is not configured; see its logs');
    }
    const path = new URL(request.url).pathname;
    if (path === '/healthz') return json(200, { status: 'ok', policy_sha256: moduleDigest, runtime: 'edge' });
    let m = path.match(/^\/tenants\/([^/]+)\/connect\/(token|revocation)$/);
    if (m) {
      const tenant = tenantOf(m[1]);
      if (tenant === null) return oauthError(400, 'invalid_request', 'the tenant in the path is not valid');
      const { raw, tooLarge } = await rawRequest(request, tenant);
      if (tooLarge) return oauthError(413, 'invalid_request', 'the request body is over 64 KiB');
      try {
        for (let i = 0; i < 2; i += 1) {
          const response = m[2] === 'token' ? await decideToken(settings, raw, ctx) : await decideRevocation(settings, raw, ctx);
          if (response) return response;
        }
        return unavailable('the request could not be decided; try again');
      } catch (e) {
        console.error(`granted edge: ${e.message}`);
        return unavailable('the token service could not answer; try again');
      }
    }
    m = path.match(/^\/tenants\/([^/]+)\/\.well-known\/jwks\.json$/);
    if (m && request.method === 'GET') {
      const tenant = tenantOf(m[1]);
      if (tenant === null || !(await settings.store.get(key.tenant(tenant)))) return oauthError(404, 'not_found', 'no such tenant');
      return json(200, settings.jwks);
    }
    m = path.match(/^\/tenants\/([^/]+)\/\.well-known\/oauth-authorization-server$/)
      ?? path.match(/^\/\.well-known\/oauth-authorization-server\/tenants\/([^/]+)$/);
    if (m && request.method === 'GET') {
      const tenant = tenantOf(m[1]);
      return tenant === null ? oauthError(404, 'not_found', 'no such tenant') : metadata(settings, tenant);
    }
    return oauthError(404, 'not_found', 'no such endpoint');
  },
};
