// Every sequence vector (tests/vectors, `sequence`: token requests on one store, each decision's
// effects applied before the next) through the edge handler itself: its fetch() on a
// MemoryStore loaded with the vector's state as an edge snapshot, one env per step for its
// instant (GRANTED_FIXED_NOW), the decisions read through GRANTED_RECORD_DECISION, the lock
// read from the edge's store. The same checks as the Node runner (tests/node/driver.mjs).
//
// VECTORS_DIR (one or more directories, `:`-separated) picks the vectors; default: ours.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join, resolve } from 'node:path';
import * as policy from '../../www/pkg/granted_policy.js';
import handler from '../../www/edge/handler.mjs';
import { MemoryStore } from '../../www/edge/memory-store.mjs';
import { b64, CLIENT_SECRET_KEY, SIGNING_KEY, httpRequest, runSequence, sealState } from '../node/driver.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const wasm = readFileSync(join(here, '../../www/pkg/granted_policy_bg.wasm'));
policy.initSync({ module: wasm });

const defaults = [join(here, '../vectors')].filter(existsSync);
const dirs = process.env.VECTORS_DIR ? process.env.VECTORS_DIR.split(':').map((d) => resolve(d)) : defaults;
const ITERATIONS = 1000;

/** The vector's state as `granted export --edge` writes it (hashed secrets only). */
async function snapshot(state) {
  const { tenants, clients, users, refreshTokens } = await sealState(policy, state, ITERATIONS);
  const byTenant = {};
  for (const { tenant, record } of users) (byTenant[tenant] ??= {})[record.username] = { locked_until: null, ...record };
  return {
    format: 'granted-edge-snapshot/1',
    tenants: Object.fromEntries(tenants.map((t) => [t.tenant, t])),
    clients: Object.fromEntries(clients.map((c) => [c.client_id, c])),
    users: byTenant,
    refresh_tokens: Object.fromEntries(refreshTokens.map((r) => [r.token_sha256, r])),
  };
}

/** The edge as a sequence runtime: each request through fetch() with the step's clock. */
async function edgeRuntime(vector) {
  const store = new MemoryStore(await snapshot(vector.state));
  const base = {
    GRANTED_STORE: store,
    GRANTED_SIGNING_KEY: SIGNING_KEY,
    GRANTED_CLIENT_SECRET_KEY: b64(CLIENT_SECRET_KEY),
    GRANTED_ISSUER: 'https://granted.test',
    GRANTED_WASM: wasm,
    GRANTED_KDF_ITERATIONS: String(ITERATIONS),
    ...(vector.sunset ? { GRANTED_SUNSET: vector.sunset } : {}),
    ...(vector.lockout?.threshold !== undefined ? { GRANTED_LOCKOUT_THRESHOLD: String(vector.lockout.threshold) } : {}),
    ...(vector.lockout?.first_seconds !== undefined ? { GRANTED_LOCKOUT_FIRST_SECONDS: String(vector.lockout.first_seconds) } : {}),
    ...(vector.lockout?.max_seconds !== undefined ? { GRANTED_LOCKOUT_MAX_SECONDS: String(vector.lockout.max_seconds) } : {}),
  };
  return {
    async decide(spec, at) {
      const decisions = [];
      const env = { ...base, GRANTED_FIXED_NOW: at, GRANTED_RECORD_DECISION: (d) => decisions.push(d) };
      const raw = httpRequest(spec);
      const request = new Request(`https://granted.test/tenants/${encodeURIComponent(spec.tenant)}/connect/token`, {
        method: raw.method,
        headers: raw.headers,
        body: Buffer.from(raw.body_base64, 'base64'),
      });
      const response = await handler.fetch(request, env, {});
      const body = await response.text();
      assert.equal(decisions.length, 1, `the edge recorded ${decisions.length} decisions for one request: ${body}`);
      const [{ audit, effects }] = decisions;
      return { response: { status: response.status, headers: [...response.headers], body }, audit, effects };
    },
    async lockedUntil(tenant, username, at) {
      const until = await store.get(`locked-until:${tenant}:${username}`);
      return until && Date.parse(until) > Date.parse(at) ? until : null;
    },
  };
}

const number = (name) => { const m = /^\d+/.exec(name); return m ? Number(m[0]) : Infinity; };

for (const dir of dirs) {
  const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort((a, b) => number(a) - number(b) || a.localeCompare(b));
  const sequences = files.map((file) => ({ file, vector: JSON.parse(readFileSync(join(dir, file), 'utf8')) }))
    .filter(({ vector }) => vector.sequence);
  test(`sequence vectors in ${dir}, through the edge handler`, async (t) => {
    assert.ok(sequences.length > 0, `no sequence vectors in ${dir}`);
    for (const { file, vector } of sequences) {
      await t.test(file, async () => {
        const mismatches = await runSequence(vector, await edgeRuntime(vector));
        assert.deepEqual(mismatches, [], mismatches.join('; '));
      });
    }
  });
}

test('concurrent failed logins on the edge all count: five at once lock the user', async () => {
  const vector = JSON.parse(readFileSync(join(here, '../vectors/150-t8-lockout-five-failures-lock-for-a-minute-the-next-lock-doubles-a-success-starts-again.json'), 'utf8'));
  const runtime = await edgeRuntime(vector);
  const spec = { ...vector.sequence.token_request, form: { ...vector.sequence.token_request.form, password: 'guess' } };
  const answers = await Promise.all(Array.from({ length: 5 }, (_, i) => runtime.decide(spec, vector.now, `concurrent#${i}`)));
  assert.deepEqual(answers.map((a) => a.audit.cause), Array(5).fill('wrong_password'));
  assert.equal(await runtime.lockedUntil('acme', 'alice', vector.now), '2026-11-25T12:01:00Z');
});
