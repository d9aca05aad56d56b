// The vector driver for JavaScript runtimes: the policy through its wasm-bindgen API, records
// from an in-memory store built from the vector's state, the KDF step through WebCrypto.
// It mirrors tests/src/driver.rs, which drives the native and wasmtime runtimes. The policy's
// calls are awaited, so a runtime may answer them asynchronously (the browser runner).

export const CLIENT_SECRET_KEY = new TextEncoder().encode('granted-vectors-client-secret-key');
// An HS256 key as a JWK, for tests that give the edge handler a key of their own.
export const SIGNING_KEY = { kty: 'oct', kid: 'vectors-1', alg: 'HS256', k: Buffer.from('granted-vectors-signing-key-32-bytes!!').toString('base64url') };
// The runner's access-token signing key: ES256 through WebCrypto, as the edge signs. The module
// only ever sees its kid and algorithm.
const SIGNING = { kid: 'vectors-1', alg: 'ES256' };
const ECDSA = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
let signingPair;
async function signingKeys() {
  signingPair ??= await crypto.subtle.generateKey(ECDSA, false, ['sign', 'verify']);
  return signingPair;
}

/** The host's answer to `need_signature`: the runner's signature, base64url. */
async function sign(step) {
  if (step.kid !== SIGNING.kid || step.alg !== SIGNING.alg) throw new Error(`a signature by another key: ${JSON.stringify(step)}`);
  const { privateKey } = await signingKeys();
  return b64url(new Uint8Array(await crypto.subtle.sign(ECDSA, privateKey, new TextEncoder().encode(step.signing_input))));
}

/** Whether `token` carries the runner key's valid signature over its header and claims. */
async function signedByRunner(token) {
  const at = token.lastIndexOf('.');
  const { publicKey } = await signingKeys();
  return crypto.subtle.verify(ECDSA, publicKey, Buffer.from(token.slice(at + 1), 'base64url'),
    new TextEncoder().encode(token.slice(0, at)));
}

export const b64 = (bytes) => Buffer.from(bytes).toString('base64');
const b64url = (bytes) => Buffer.from(bytes).toString('base64url');
const fromB64 = (text) => new Uint8Array(Buffer.from(text, 'base64'));

/** `application/x-www-form-urlencoded` encoding, as a client does it. */
export function formEncode(text) {
  let out = '';
  for (const byte of new TextEncoder().encode(text)) {
    const c = String.fromCharCode(byte);
    if (/[A-Za-z0-9*\-._]/.test(c)) out += c;
    else if (c === ' ') out += '+';
    else out += '%' + byte.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
}

/** How a store keys refresh tokens: SHA-256, base64url without padding. */
export async function refreshHash(token) {
  return b64url(await sha256(new TextEncoder().encode(token)));
}

/** The host's KDF step, with WebCrypto's PBKDF2. */
export async function webCryptoKdf(params, password) {
  const hash = { 'pbkdf2-sha256': 'SHA-256', 'pbkdf2-sha512': 'SHA-512' }[params.algorithm];
  if (!hash) throw new Error(`unknown KDF ${params.algorithm}`);
  const key = await crypto.subtle.importKey('raw', new TextEncoder().encode(password), 'PBKDF2', false, ['deriveBits']);
  const bits = await crypto.subtle.deriveBits(
    { name: 'PBKDF2', hash, salt: fromB64(params.salt), iterations: params.iterations },
    key,
    params.length * 8,
  );
  return new Uint8Array(bits);
}

/** Entropy for one request, from `seed` so that runs repeat: SHA-512, then half a SHA-256
 *  (80 bytes, the module's ENTROPY_BYTES). */
export async function entropy(seed) {
  const bytes = new TextEncoder().encode(seed);
  const long = new Uint8Array(await crypto.subtle.digest('SHA-512', bytes));
  const short = (await sha256(bytes)).slice(0, 16);
  const out = new Uint8Array(long.length + short.length);
  out.set(long);
  out.set(short, long.length);
  return out;
}

function plusSeconds(instant, seconds) {
  return new Date(Date.parse(instant) + seconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The records a host would hold after loading `state`: secrets and passwords hashed. */
export async function sealState(policy, state, iterations) {
  const key = b64(CLIENT_SECRET_KEY);
  const clients = [];
  for (const app of state.apps ?? []) {
    const { secrets = {}, ...rest } = app;
    for (const [clientId, secret] of Object.entries(secrets)) {
      const { secret_hmac } = await policy.hashClientSecret({ key, secret });
      clients.push({ client_id: clientId, secret_hmac, app: rest });
    }
    // A `client_id` with no secret (a public client's) is stored without one.
    for (const revision of app.revisions ?? []) {
      if (!clients.some((c) => c.client_id === revision.client_id)) {
        clients.push({ client_id: revision.client_id, secret_hmac: '', app: rest });
      }
    }
  }
  const tenants = [];
  const users = [];
  const refreshTokens = [];
  for (const tenant of state.tenants ?? []) {
    const { users: tenantUsers = [], refresh_tokens = [], ...record } = tenant;
    tenants.push(record);
    for (const user of tenantUsers) {
      const { password, ...rest } = user;
      let passwordHash = user.password_hash ?? null;
      if (passwordHash === null && typeof password === 'string') {
        const salt = (await sha256(new TextEncoder().encode(`${tenant.tenant}/${user.username}`))).slice(0, 16);
        passwordHash = (await policy.hashPassword({ password, salt: b64(salt), iterations })).hash;
      }
      users.push({ tenant: tenant.tenant, record: { ...rest, password_hash: passwordHash } });
    }
    for (const token of refresh_tokens) {
      const { token: clear, ...rest } = token;
      refreshTokens.push({ status: 'active', ...rest, tenant: tenant.tenant, token_sha256: await refreshHash(clear) });
    }
  }
  const codes = [];
  for (const code of state.codes ?? []) {
    const { code: clear, ...rest } = code;
    codes.push({ ...rest, code_sha256: await refreshHash(clear) });
  }
  return { tenants, clients, users, refreshTokens, codes };
}

async function seal(policy, state, iterations) {
  const { tenants, clients, users, refreshTokens, codes } = await sealState(policy, state, iterations);
  const consents = [];
  // Failed logins and locks by tenant and name (known users or not), as a host's store keeps them.
  const locks = new Map();
  const lockKey = (tenant, username) => JSON.stringify([tenant, username]);
  for (const { tenant, record } of users) {
    if (record.locked_until) locks.set(lockKey(tenant, record.username), { failures: 0, locks: 1, until: record.locked_until });
  }
  const findUser = (tenant, username) => users.find((u) => u.tenant === tenant && u.record.username === username)?.record;
  return {
    lookup(lookup) {
      const records = {
        tenant: tenants.find((t) => t.tenant === lookup.tenant) ?? null,
        client: clients.find((c) => c.client_id === lookup.client_id) ?? null,
      };
      if (lookup.username != null) {
        const user = findUser(lookup.tenant, lookup.username);
        const lock = locks.get(lockKey(lookup.tenant, lookup.username));
        records.user = user ? { ...user, ...(lock || 'locked_until' in user ? { locked_until: lock?.until ?? null } : {}) } : null;
      }
      if (lookup.refresh_token_sha256 != null) {
        records.refresh_token = refreshTokens.find((r) => r.token_sha256 === lookup.refresh_token_sha256) ?? null;
      }
      if (lookup.code_sha256 != null) {
        records.code = codes.find((c) => c.code_sha256 === lookup.code_sha256) ?? null;
      }
      if (lookup.consent_app_id != null) {
        records.consent = consents.find((c) => c.tenant === lookup.tenant && c.username === (lookup.username ?? '')
          && c.app_id === lookup.consent_app_id) ?? null;
      }
      return records;
    },
    /** A decision's effects, applied as a host's store applies them: it counts and stores what
     *  the module says; a lock's length comes from the effect's schedule. */
    apply(effects, at) {
      for (const effect of effects) {
        const k = lockKey(effect.tenant, effect.username);
        switch (effect.effect) {
          case 'record_login_failure': {
            const lock = locks.get(k) ?? { failures: 0, locks: 0, until: null };
            const { lock_after: lockAfter, lock_seconds: lengths } = effect.lockout;
            lock.failures += 1;
            if (lock.failures >= lockAfter) {
              lock.until = plusSeconds(at, lengths[Math.min(lock.locks, lengths.length - 1)]);
              lock.failures = 0;
              lock.locks += 1;
            }
            locks.set(k, lock);
            break;
          }
          case 'reset_login_failures':
            locks.delete(k);
            break;
          case 'store_password_hash': {
            const user = findUser(effect.tenant, effect.username);
            if (user && user.password_hash === effect.replaces) user.password_hash = effect.hash;
            break;
          }
          case 'store_refresh_token':
            refreshTokens.push(effect.record);
            break;
          case 'store_code':
            codes.push(effect.record);
            break;
          case 'consume_code':
            for (const c of codes) if (c.code_sha256 === effect.code_sha256) c.used = true;
            break;
          case 'store_consent': {
            const r = effect.record;
            const kept = consents.find((c) => c.tenant === r.tenant && c.username === r.username && c.app_id === r.app_id);
            if (kept) kept.scopes = [...kept.scopes, ...r.scopes.filter((x) => !kept.scopes.includes(x))];
            else consents.push({ ...r, scopes: [...r.scopes] });
            break;
          }
          case 'change_password': {
            const user = findUser(effect.tenant, effect.username);
            if (user && user.password_hash === effect.replaces) {
              user.password_hash = effect.hash;
              user.password_changed_at = effect.changed_at;
            }
            break;
          }
          case 'consume_refresh_token':
            for (const t of refreshTokens) if (t.token_sha256 === effect.token_sha256) t.status = 'used';
            break;
          case 'revoke_refresh_family':
            for (const t of refreshTokens) if (t.family_id === effect.family_id && t.status === 'active') t.status = 'revoked';
            break;
          default:
            throw new Error(`unknown effect ${effect.effect}`);
        }
      }
    },
    /** The end of the lock in force on (tenant, username) at `at`, or null. */
    lockedUntil(tenant, username, at) {
      const until = locks.get(lockKey(tenant, username))?.until;
      return until && Date.parse(until) > Date.parse(at) ? until : null;
    },
  };
}

/** The HTTP request a client would send for a vector's `token_request`. */
export function httpRequest(spec) {
  if (spec.raw) {
    const headers = [];
    for (const [name, value] of Object.entries(spec.raw.headers ?? {})) {
      for (const v of Array.isArray(value) ? value : [value]) headers.push([name, v]);
    }
    const body = spec.raw.body_base64 ?? b64(new TextEncoder().encode(spec.raw.body ?? ''));
    return { method: spec.raw.method ?? 'POST', tenant: spec.tenant, headers, body_base64: body };
  }
  const form = { ...spec.form };
  const headers = [['Content-Type', 'application/x-www-form-urlencoded']];
  if (spec.auth === 'basic') {
    const pair = `${formEncode(form.client_id ?? '')}:${formEncode(form.client_secret ?? '')}`;
    delete form.client_id;
    delete form.client_secret;
    headers.push(['Authorization', `Basic ${b64(new TextEncoder().encode(pair))}`]);
  } else if (spec.auth !== 'body' && spec.auth !== undefined) {
    throw new Error(`auth is basic or body, not ${spec.auth}`);
  }
  // Sorted by name, as the Rust driver sends them.
  const body = Object.keys(form).sort().map((k) => `${formEncode(k)}=${formEncode(form[k])}`).join('&');
  return { method: 'POST', tenant: spec.tenant, headers, body_base64: b64(new TextEncoder().encode(body)) };
}

/** The `context` a host sends with an entry point's first call: the vector's clock, the test
 *  keys, the KDF settings, the entropy drawn from `seed`, the vector's sunset and lockout. */
async function moduleContext(vector, now, seed, iterations, kdfInModule) {
  return {
    now,
    issuer: 'https://granted.test',
    signing_key: SIGNING,
    client_secret_key: b64(CLIENT_SECRET_KEY),
    kdf_iterations: iterations,
    kdf_in_module: kdfInModule,
    entropy: b64(await entropy(seed)),
    ...(vector.sunset ? { sunset: vector.sunset } : {}),
    ...(vector.lockout ? { lockout: vector.lockout } : {}),
  };
}

/** Drives one entry point (`token` or `authorization`) through its steps as a host does, each
 *  answer added to the input of the next call: the `done` step. */
async function drive(policy, entry, input, store, maxSteps) {
  for (let i = 0; i < maxSteps; i++) {
    const step = await policy[entry](input);
    if (step.step === 'need_records') input.records = store.lookup(step.lookup);
    else if (step.step === 'need_kdf') {
      // A `rehash` step's output goes to rehash_kdf, a verification's to kdf.
      const derived = { derived: b64(await webCryptoKdf(step.kdf, step.password)) };
      if (step.purpose === 'rehash') input.rehash_kdf = derived;
      else input.kdf = derived;
    } else if (step.step === 'need_signature') {
      if (step.purpose === 'id_token') input.id_token_signature = await sign(step);
      else input.signature = await sign(step);
    } else if (step.step === 'done') return step;
    else throw new Error(`${entry}: unknown step ${JSON.stringify(step)}`);
  }
  throw new Error(`${entry} did not finish in ${maxSteps} steps`);
}

/** One token request through the module's steps as a host drives them: the `done` step. */
async function decide(policy, vector, store, spec, now, seed, iterations, kdfInModule) {
  const input = {
    request: httpRequest(spec),
    context: await moduleContext(vector, now, seed, iterations, kdfInModule),
    records: {},
  };
  return drive(policy, 'token', input, store, 6);
}

/** One page action through the `authorization` entry point's steps, as a host drives them: the
 *  `done` step. */
async function authorize(policy, vector, store, request, action, signedIn, now, seed, iterations, kdfInModule) {
  const input = {
    request,
    action,
    signed_in: signedIn,
    context: await moduleContext(vector, now, seed, iterations, kdfInModule),
    records: {},
  };
  return drive(policy, 'authorization', input, store, 8);
}

/** A parameter of a URL's query, decoded. */
export function locationParam(location, name) {
  const query = location.split('?')[1];
  if (query === undefined) return null;
  return new URLSearchParams(query).get(name);
}

/** Compares a page decision ({page, audit, effects}) with a step's `expect`. */
export function checkPage(expect, decision) {
  const out = [];
  const { page, audit } = decision;
  const location = page.location ?? null;
  check(out, 'redirect', expect.redirect, page.page === 'redirect');
  check(out, 'page', expect.page, page.page);
  check(out, 'error', expect.error, location ? locationParam(location, 'error') : page.error ?? null);
  check(out, 'reason', expect.reason, audit.reason);
  check(out, 'cause', expect.cause, audit.cause);
  check(out, 'rule', expect.rule, audit.rule);
  check(out, 'effects', expect.effects, decision.effects.map((e) => e.effect));
  // RFC 9207: every response at the redirect URI names its issuer.
  if (location && locationParam(location, 'iss') === null) out.push(`redirect without \`iss\`: ${location}`);
  return out;
}

/** An ID token carries the authorization request's `nonce`, and none when none was sent. */
function checkNonce(step, nonce) {
  const token = JSON.parse(step.response.body).id_token;
  if (typeof token !== 'string') return [];
  const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
  return (claims.nonce ?? null) === nonce ? [] : [`id_token nonce: expected ${JSON.stringify(nonce)}, got ${JSON.stringify(claims.nonce)}`];
}

/** A flow vector: the pages' actions and the exchanges on one store, `signed_in` carried from
 *  answer to answer, as tests/src/code_flow.rs runs it. */
async function runFlow(policy, vector, store, iterations, kdfInModule) {
  const out = [];
  const { authorize_request: request, steps } = vector.flow;
  const nonce = (request.query ?? []).find(([k]) => k === 'nonce')?.[1] ?? null;
  let at = vector.now;
  let signedIn = null;
  let code = null;
  for (const [i, step] of steps.entries()) {
    if (step.at) at = step.at;
    const seed = `${vector.name}#${i + 1}`;
    let mismatches;
    let effects;
    if (step.action && !step.exchange) {
      const decision = await authorize(policy, vector, store, request, step.action, signedIn, at, seed, iterations, kdfInModule);
      mismatches = checkPage(step.expect ?? {}, decision);
      signedIn = decision.signed_in ?? null;
      if (decision.page.location) code = locationParam(decision.page.location, 'code') ?? code;
      effects = decision.effects;
    } else if (step.exchange && !step.action) {
      const form = { ...step.exchange.form };
      for (const [k, v] of Object.entries(form)) {
        if (v === '{code}') {
          if (code === null) throw new Error(`step ${i + 1}: {code} before any code was issued`);
          form[k] = code;
        }
      }
      const done = await decide(policy, vector, store, { ...step.exchange, form }, at, seed, iterations, kdfInModule);
      mismatches = [...checkToken(step.expect ?? {}, done), ...checkNonce(done, nonce)];
      const { access_token: token } = JSON.parse(done.response.body);
      if (typeof token === 'string' && !(await signedByRunner(token))) mismatches.push('access token not signed by the runner\'s key');
      effects = done.effects;
    } else {
      throw new Error(`step ${i + 1}: a flow step has exactly one of action and exchange`);
    }
    store.apply(effects, at);
    for (const m of mismatches) out.push(`step ${i + 1} (${step.name ?? ''}): ${m}`);
  }
  return out;
}

/** The request a sequence's step sends: the sequence's, with the step's form changes. */
export function stepRequest(sequence, step) {
  return { ...sequence.token_request, form: { ...sequence.token_request.form, ...(step.form ?? {}) } };
}

/** Runs a sequence vector against `runtime`: `decide(spec, at, seed)` answers a done step
 *  ({response, audit, effects}) with its effects applied to the runtime's store, and
 *  `lockedUntil(tenant, username, at)` reads the lock in force from that store. Answers the
 *  mismatches. */
export async function runSequence(vector, runtime) {
  const out = [];
  let at = vector.now;
  let sent = 0;
  for (const [i, step] of vector.sequence.steps.entries()) {
    if (step.at) at = step.at;
    const spec = stepRequest(vector.sequence, step);
    const repeat = step.repeat ?? 1;
    for (let n = 1; n <= repeat; n += 1) {
      sent += 1;
      const done = await runtime.decide(spec, at, `${vector.name}#${sent}`);
      const mismatches = checkToken(step.expect ?? {}, done);
      if (n === repeat && step.locked_until !== undefined) {
        const lock = await runtime.lockedUntil(spec.tenant, spec.form?.username ?? '', at);
        check(mismatches, 'locked_until', step.locked_until, lock);
      }
      for (const m of mismatches) out.push(`step ${i + 1} (${step.name ?? ''}) #${n}: ${m}`);
    }
  }
  return out;
}

function check(out, what, expected, actual) {
  if (expected === undefined) return;
  if (JSON.stringify(expected) !== JSON.stringify(actual)) {
    out.push(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  }
}

/** Compares a done step ({response: {status, headers, body}, audit, effects}) with a token
 *  request's `expect`; answers the mismatches. */
export function checkToken(expect, step) {
  const out = [];
  const { response, audit } = step;
  const body = JSON.parse(response.body);
  const header = (name) => response.headers.find(([n]) => n.toLowerCase() === name)?.[1];
  if (header('cache-control') !== 'no-store') out.push('response: `Cache-Control: no-store` is missing');
  if (header('pragma') !== 'no-cache') out.push('response: `Pragma: no-cache` is missing');
  if (response.status !== 200 && (typeof body.error !== 'string' || typeof body.error_description !== 'string')) {
    out.push(`error body lacks error or error_description: ${response.body}`);
  }
  check(out, 'status', expect.status, response.status);
  check(out, 'error', expect.error, body.error ?? null);
  check(out, 'reason', expect.reason, audit.reason);
  check(out, 'scope', expect.scope, body.scope ?? null);
  check(out, 'refresh_token', expect.refresh_token, typeof body.refresh_token === 'string');
  check(out, 'id_token', expect.id_token, typeof body.id_token === 'string');
  check(out, 'cause', expect.cause, audit.cause);
  check(out, 'rule', expect.rule, audit.rule);
  check(out, 'www_authenticate', expect.www_authenticate, (header('www-authenticate') ?? '').startsWith('Basic realm='));
  if (expect.error_description_contains !== undefined && !(body.error_description ?? '').includes(expect.error_description_contains)) {
    out.push(`error_description ${JSON.stringify(body.error_description)} does not contain ${JSON.stringify(expect.error_description_contains)}`);
  }
  check(out, 'effects', expect.effects, step.effects.map((e) => e.effect));
  return out;
}

/** Runs one vector; answers the list of mismatches (empty: it passed). */
export async function runVector(policy, vector, { iterations = 1000, kdfInModule = false } = {}) {
  const kinds = ['token_request', 'edit', 'create', 'sequence', 'authorize_request', 'flow'].filter((k) => vector[k] !== undefined);
  if (kinds.length !== 1) throw new Error('a vector has exactly one of token_request, edit, create, sequence, authorize_request and flow');
  const expect = vector.expect ?? {};
  const out = [];
  if (vector.token_request) {
    const store = await seal(policy, vector.state, iterations);
    const step = await decide(policy, vector, store, vector.token_request, vector.now, vector.name, iterations, kdfInModule);
    out.push(...checkToken(expect, step));
    const { access_token: token } = JSON.parse(step.response.body);
    if (typeof token === 'string' && !(await signedByRunner(token))) {
      out.push(`access token not signed by the runner's key: ${token}`);
    }
  } else if (vector.authorize_request) {
    const store = await seal(policy, vector.state, iterations);
    const decision = await authorize(policy, vector, store, vector.authorize_request, { action: 'authorize' }, null,
      vector.now, vector.name, iterations, kdfInModule);
    out.push(...checkPage(expect, decision));
  } else if (vector.flow) {
    const store = await seal(policy, vector.state, iterations);
    out.push(...await runFlow(policy, vector, store, iterations, kdfInModule));
  } else if (vector.sequence) {
    const store = await seal(policy, vector.state, iterations);
    out.push(...await runSequence(vector, {
      async decide(spec, at, seed) {
        const step = await decide(policy, vector, store, spec, at, seed, iterations, kdfInModule);
        store.apply(step.effects, at);
        return step;
      },
      lockedUntil: (tenant, username, at) => store.lockedUntil(tenant, username, at),
    }));
  } else {
    const input = { state: vector.state, now: vector.now };
    if (vector.sunset) input.sunset = vector.sunset;
    if (vector.edit) input.edit = vector.edit;
    if (vector.create) input.create = vector.create;
    const preview = await policy.preview(input);
    check(out, 'accepted', expect.accepted, preview.accepted);
    check(out, 'reason', expect.reason, preview.reason);
    check(out, 'password_eligible_after', expect.password_eligible_after, preview.password_eligible_after);
    check(out, 'tenants_losing_password_on_update', expect.tenants_losing_password_on_update, preview.tenants_losing_password_on_update);
    check(out, 'irreversible', expect.irreversible, preview.irreversible);
    check(out, 'rule', expect.rule, preview.rule);
  }
  return out;
}
