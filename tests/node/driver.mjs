// The vector driver for JavaScript runtimes: the policy through its wasm-bindgen API, records
// from an in-memory store built from the vector's state, the KDF step through WebCrypto.
// It mirrors tests/src/driver.rs, which drives the native and wasmtime runtimes.

const CLIENT_SECRET_KEY = new TextEncoder().encode('granted-vectors-client-secret-key');
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

async function seal(policy, state, iterations) {
  const key = b64(CLIENT_SECRET_KEY);
  const clients = [];
  for (const app of state.apps ?? []) {
    const { secrets = {}, ...rest } = app;
    for (const [clientId, secret] of Object.entries(secrets)) {
      const { secret_hmac } = policy.hashClientSecret({ key, secret });
      clients.push({ client_id: clientId, secret_hmac, app: rest });
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
        passwordHash = policy.hashPassword({ password, salt: b64(salt), iterations }).hash;
      }
      users.push({ tenant: tenant.tenant, record: { ...rest, password_hash: passwordHash } });
    }
    for (const token of refresh_tokens) {
      const { token: clear, ...rest } = token;
      refreshTokens.push({ status: 'active', ...rest, tenant: tenant.tenant, token_sha256: await refreshHash(clear) });
    }
  }
  return {
    lookup(lookup) {
      const records = {
        tenant: tenants.find((t) => t.tenant === lookup.tenant) ?? null,
        client: clients.find((c) => c.client_id === lookup.client_id) ?? null,
      };
      if (lookup.username != null) {
        records.user = users.find((u) => u.tenant === lookup.tenant && u.record.username === lookup.username)?.record ?? null;
      }
      if (lookup.refresh_token_sha256 != null) {
        records.refresh_token = refreshTokens.find((r) => r.token_sha256 === lookup.refresh_token_sha256) ?? null;
      }
      return records;
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

async function runToken(policy, vector, iterations, kdfInModule) {
  const store = await seal(policy, vector.state, iterations);
  const entropy = new Uint8Array(await crypto.subtle.digest('SHA-512', new TextEncoder().encode(vector.name)));
  const input = {
    request: httpRequest(vector.token_request),
    context: {
      now: vector.now,
      issuer: 'https://granted.test',
      signing_key: SIGNING,
      client_secret_key: b64(CLIENT_SECRET_KEY),
      kdf_iterations: iterations,
      kdf_in_module: kdfInModule,
      entropy: b64(entropy),
      ...(vector.sunset ? { sunset: vector.sunset } : {}),
    },
    records: {},
  };
  for (let i = 0; i < 6; i++) {
    const step = policy.token(input);
    if (step.step === 'need_records') input.records = store.lookup(step.lookup);
    else if (step.step === 'need_kdf') input.kdf = { derived: b64(await webCryptoKdf(step.kdf, step.password)) };
    else if (step.step === 'need_signature') input.signature = await sign(step);
    else if (step.step === 'done') return step;
    else throw new Error(`unknown step ${JSON.stringify(step)}`);
  }
  throw new Error('token did not finish in 6 steps');
}

function check(out, what, expected, actual) {
  if (expected === undefined) return;
  if (JSON.stringify(expected) !== JSON.stringify(actual)) {
    out.push(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  }
}

/** Runs one vector; answers the list of mismatches (empty: it passed). */
export async function runVector(policy, vector, { iterations = 1000, kdfInModule = false } = {}) {
  const kinds = ['token_request', 'edit', 'create'].filter((k) => vector[k] !== undefined);
  if (kinds.length !== 1) throw new Error('a vector has exactly one of token_request, edit and create');
  const expect = vector.expect ?? {};
  const out = [];
  if (vector.token_request) {
    const step = await runToken(policy, vector, iterations, kdfInModule);
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
    check(out, 'cause', expect.cause, audit.cause);
    check(out, 'rule', expect.rule, audit.rule);
    check(out, 'www_authenticate', expect.www_authenticate, (header('www-authenticate') ?? '').startsWith('Basic realm='));
    if (expect.error_description_contains !== undefined && !(body.error_description ?? '').includes(expect.error_description_contains)) {
      out.push(`error_description ${JSON.stringify(body.error_description)} does not contain ${JSON.stringify(expect.error_description_contains)}`);
    }
    check(out, 'effects', expect.effects, step.effects.map((e) => e.effect));
    if (typeof body.access_token === 'string' && !(await signedByRunner(body.access_token))) {
      out.push(`access token not signed by the runner's key: ${body.access_token}`);
    }
  } else {
    const input = { state: vector.state, now: vector.now };
    if (vector.sunset) input.sunset = vector.sunset;
    if (vector.edit) input.edit = vector.edit;
    if (vector.create) input.create = vector.create;
    const preview = policy.preview(input);
    check(out, 'accepted', expect.accepted, preview.accepted);
    check(out, 'reason', expect.reason, preview.reason);
    check(out, 'password_eligible_after', expect.password_eligible_after, preview.password_eligible_after);
    check(out, 'tenants_losing_password_on_update', expect.tenants_losing_password_on_update, preview.tenants_losing_password_on_update);
    check(out, 'irreversible', expect.irreversible, preview.irreversible);
    check(out, 'rule', expect.rule, preview.rule);
  }
  return out;
}
