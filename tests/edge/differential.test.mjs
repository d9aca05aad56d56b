// The same 500 generated requests to `granted serve` and to the edge handler (www/edge/serve.mjs
// on Node) loaded with the same state, keys and clock: for every one, the same status, error
// and audit reason. Requests are valid, malformed, with wrong secrets and passwords, every
// sunset case, refresh rotation and reuse, revocation; they go in the same order to both, one
// at a time (lockouts count the same way).
//
// GRANTED_BIN: the `granted` binary (cargo xtask test passes it).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { freePort, waitFor } from '../support/net.mjs';
import { fileURLToPath } from 'node:url';
import { dirname, join, resolve } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const granted = process.env.GRANTED_BIN ?? join(root, 'target/debug/granted');
const NOW = '2026-11-25T12:00:00Z';
const TOKEN = 'differential-admin-token-0123456789abcdef';
const ISSUER = 'https://granted.test';
const COUNT = 500;

let dir;
let host;
let edge;
const children = [];



before(async () => {
  assert.ok(existsSync(granted), `no granted binary at ${granted}`);
  dir = mkdtempSync(join(tmpdir(), 'granted-differential-'));
  const db = join(dir, 'granted.db');
  execFileSync(granted, ['import', '--kdf-iterations', '1000', '--db', db, join(root, 'tests/demo/state.json')], { stdio: 'ignore' });
  execFileSync(granted, ['export', '--db', db, '--edge', join(dir, 'snapshot.json'), '--edge-secrets', join(dir, 'secrets.json')], { stdio: 'ignore' });
  const hostPort = await freePort();
  const edgePort = await freePort();
  host = `http://127.0.0.1:${hostPort}`;
  edge = `http://127.0.0.1:${edgePort}`;
  children.push(spawn(granted, ['serve', '--db', db, '--listen', `127.0.0.1:${hostPort}`, '--kdf-iterations', '1000',
    '--issuer', ISSUER, '--fixed-now', NOW], {
    // The edge does not throttle by source address (see www/edge/README.md); the host's
    // throttles are set out of reach so that the two answer the same requests, and every
    // refusal is audited on its own (no aggregation) so that the two logs line up.
    env: { ...process.env, GRANTED_ADMIN_TOKEN: TOKEN, GRANTED_THROTTLE_FAILURES: '1000000',
      GRANTED_THROTTLE_SOURCE_FAILURES: '1000000', GRANTED_AUDIT_AGGREGATE_SECONDS: '0', GRANTED_LOG: 'warn' },
    stdio: 'ignore',
  }));
  children.push(spawn(process.execPath, [join(root, 'www/edge/serve.mjs'), '--snapshot', join(dir, 'snapshot.json'),
    '--secrets', join(dir, 'secrets.json'), '--listen', `127.0.0.1:${edgePort}`, '--issuer', ISSUER,
    '--kdf-iterations', '1000', '--fixed-now', NOW, '--audit-log', join(dir, 'edge-audit.jsonl')], { stdio: 'ignore' }));
  await waitFor(`${host}/healthz`);
  await waitFor(`${edge}/healthz`);
});

after(() => {
  for (const child of children) child.kill();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// --- the requests ------------------------------------------------------------------------------

/** A small deterministic PRNG (mulberry32), so every run sends the same requests. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const basic = (id, secret) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
const FORM = 'application/x-www-form-urlencoded';
const form = (fields) => Object.entries(fields).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');

const CLIENTS = {
  crm: ['crm-1', 'crm-1-secret'],
  reportsOld: ['reports-1', 'reports-1-secret'],
  reportsNew: ['reports-2', 'reports-2-secret'],
  sync: ['sync-1', 'sync-1-secret'],
};
const USERS = {
  acme: [['alice', 'correct horse battery']],
  globex: [['bob', 'tr0ub4dor&3']],
  initech: [['peter', 'anything-at-all']],
};

/** One request: its kind, and how to build it for a server (refresh tokens differ per server). */
function generate(count) {
  const rand = prng(20261125);
  const pick = (list) => list[Math.floor(rand() * list.length)];
  const out = [];
  for (let i = 0; i < count; i += 1) {
    const tenant = pick(['acme', 'acme', 'globex', 'initech', 'nowhere']);
    const client = pick(Object.values(CLIENTS));
    const [username, password] = pick([...USERS[tenant] ?? [['alice', 'x']], ['mallory', 'guess'], ['alice', 'wrong']]);
    const kind = pick(['password', 'password', 'password', 'client_credentials', 'client_credentials', 'refresh', 'refresh',
      'reuse', 'revoke', 'malformed', 'wrong_secret', 'unknown_client', 'scope', 'post_credentials']);
    const scope = pick([undefined, 'read', 'read write', 'admin', 'bad"scope']);
    out.push({ i, kind, tenant, client, username, password, scope, malformed: Math.floor(rand() * 8), earlier: Math.floor(rand() * Math.max(1, i)) });
  }
  return out;
}

/** What to send; `tokens` holds the refresh tokens this server gave, by request index. */
function build(spec, tokens) {
  const request = buildRequest(spec, tokens);
  return { client: spec.client, tenant: spec.tenant, ...request };
}

function buildRequest(spec, tokens) {
  const [id, secret] = spec.client;
  const headers = { Authorization: basic(id, secret), 'Content-Type': FORM };
  const path = `/tenants/${encodeURIComponent(spec.tenant)}/connect/token`;
  const withScope = (fields) => (spec.scope ? { ...fields, scope: spec.scope } : fields);
  switch (spec.kind) {
    case 'password':
      return { path, headers, body: form(withScope({ grant_type: 'password', username: spec.username, password: spec.password })) };
    case 'client_credentials':
    case 'scope':
      return { path, headers, body: form(withScope({ grant_type: 'client_credentials' })) };
    case 'refresh':
    case 'reuse':
    case 'revoke': {
      const earlier = Object.keys(tokens).map(Number).filter((k) => k <= spec.earlier).pop();
      const token = earlier === undefined ? 'no-such-token' : tokens[earlier].token;
      const holder = earlier === undefined ? spec.client : tokens[earlier].client;
      const auth = { Authorization: basic(holder[0], holder[1]), 'Content-Type': FORM };
      const tenantPath = earlier === undefined ? path : `/tenants/${tokens[earlier].tenant}/connect/token`;
      const tenant = earlier === undefined ? spec.tenant : tokens[earlier].tenant;
      if (spec.kind === 'revoke') {
        return { path: tenantPath.replace(/token$/, 'revocation'), headers: auth, body: form({ token, token_type_hint: 'refresh_token' }), client: holder, tenant };
      }
      return { path: tenantPath, headers: auth, body: form({ grant_type: 'refresh_token', refresh_token: token }), client: holder, tenant };
    }
    case 'wrong_secret':
      return { path, headers: { ...headers, Authorization: basic(id, `${secret}-wrong`) }, body: form({ grant_type: 'client_credentials' }) };
    case 'unknown_client':
      return { path, headers: { ...headers, Authorization: basic('nobody', 'nothing') }, body: form({ grant_type: 'password', username: spec.username, password: spec.password }) };
    case 'post_credentials':
      return { path, headers: { 'Content-Type': FORM }, body: form({ grant_type: 'client_credentials', client_id: id, client_secret: secret }) };
    default: {
      // Malformed, eight ways.
      const cases = [
        { path, headers, body: '' },
        { path, headers, body: form({ username: 'alice' }) },
        { path, headers, body: 'grant_type=password&grant_type=password&username=a&password=b' },
        { path, headers: { ...headers, Authorization: 'Basic !!!not-base64' }, body: form({ grant_type: 'client_credentials' }) },
        { path, headers, body: form({ grant_type: 'client_credentials', client_id: id, client_secret: secret }) },
        { path, headers: { ...headers, 'Content-Type': 'application/json' }, body: '{"grant_type":"password"}' },
        { path, headers, body: form({ grant_type: 'urn:ietf:params:oauth:grant-type:device_code' }) },
        { path, headers, body: Buffer.from([0x67, 0x72, 0x61, 0x6e, 0x74, 0x3d, 0xff, 0xfe]) },
      ];
      return cases[spec.malformed];
    }
  }
}

async function send(base, request) {
  const response = await fetch(base + request.path, { method: 'POST', headers: request.headers, body: request.body });
  const text = await response.text();
  let body = {};
  try { body = text ? JSON.parse(text) : {}; } catch { body = { unparsed: text }; }
  return { status: response.status, body };
}

test(`the same ${COUNT} requests get the same status, error and audit reason from the host and the edge`, async () => {
  const specs = generate(COUNT);
  const answers = { host: [], edge: [] };
  const tokens = { host: {}, edge: {} };
  for (const spec of specs) {
    for (const [name, base] of [['host', host], ['edge', edge]]) {
      const request = build(spec, tokens[name]);
      const answer = await send(base, request);
      answers[name].push(answer);
      if (typeof answer.body.refresh_token === 'string') {
        tokens[name][spec.i] = { token: answer.body.refresh_token, client: request.client, tenant: request.tenant };
      }
    }
  }
  // The audit reasons, in request order: the host's from its admin API, the edge's from its log.
  const hostAudit = [];
  let cursor = null;
  for (;;) {
    const page = await (await fetch(`${host}/admin/api/v1/audit?limit=1000${cursor ? `&cursor=${cursor}` : ''}`, {
      headers: { Authorization: `Bearer ${TOKEN}` },
    })).json();
    hostAudit.push(...page.entries.filter((e) => e.kind !== 'admin').map((e) => e.entry));
    if (!page.next_cursor) break;
    cursor = page.next_cursor;
  }
  hostAudit.reverse();
  const edgeAudit = readFileSync(join(dir, 'edge-audit.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(hostAudit.length, COUNT, 'one host audit entry per request');
  assert.equal(edgeAudit.length, COUNT, 'one edge audit entry per request');

  const differences = [];
  const kinds = {};
  for (let i = 0; i < COUNT; i += 1) {
    const h = answers.host[i];
    const e = answers.edge[i];
    const seen = [h.status, h.body.error ?? null, hostAudit[i].reason];
    const other = [e.status, e.body.error ?? null, edgeAudit[i].reason];
    kinds[`${specs[i].kind} → ${seen.join(' ')}`] = (kinds[`${specs[i].kind} → ${seen.join(' ')}`] ?? 0) + 1;
    if (JSON.stringify(seen) !== JSON.stringify(other)) {
      differences.push(`#${i} ${specs[i].kind}: host ${JSON.stringify(seen)}, edge ${JSON.stringify(other)}`);
    }
  }
  assert.deepEqual(differences, []);
  // The mix really covers what it claims: successes, each failure kind, refresh reuse.
  const outcomes = new Set(hostAudit.map((a) => a.reason));
  for (const reason of ['issued', 'malformed_request', 'invalid_client', 'client_not_installed', 'invalid_credentials',
    'grant_type_mismatch', 'unsupported_grant_type', 'invalid_scope', 'refresh_token_reused', 'refresh_token_invalid']) {
    assert.ok(outcomes.has(reason), `no request ended in ${reason}: ${[...outcomes].join(', ')}`);
  }
  console.log(`# ${COUNT} requests, identical on host and edge; outcomes: ${[...outcomes].sort().join(', ')}`);
});
