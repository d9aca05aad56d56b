// The edge handler refuses a store without atomic operations at start, and its in-memory store
// loads a snapshot.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import handler, { checkStore, ready, snapshotEntries } from '../../www/edge/handler.mjs';
import { MemoryStore } from '../../www/edge/memory-store.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const wasm = readFileSync(join(here, '../../www/pkg/granted_policy_bg.wasm'));
const keys = {
  GRANTED_SIGNING_KEY: JSON.stringify({ kty: 'oct', kid: 'k1', alg: 'HS256', k: Buffer.from('signing-key-signing-key-32-bytes').toString('base64url') }),
  GRANTED_CLIENT_SECRET_KEY: Buffer.from('client-secret-key').toString('base64'),
  GRANTED_ISSUER: 'https://edge.test',
  GRANTED_WASM: wasm,
};

test('a store without get, put or an atomic increment is refused, naming what it lacks', async () => {
  assert.throws(() => checkStore(undefined), /GRANTED_STORE is missing/);
  const kv = { get: async () => null, put: async () => {} };
  assert.throws(() => checkStore(kv), /no increment\(\)/);
  await assert.rejects(ready({ ...keys, GRANTED_STORE: kv }), /atomic increment/);
  // Served anyway, it answers 503 and changes nothing.
  const response = await handler.fetch(new Request('https://edge.test/tenants/acme/connect/token', { method: 'POST' }), { ...keys, GRANTED_STORE: kv }, {});
  assert.equal(response.status, 503);
  assert.equal(response.headers.get('retry-after'), '1');
});

test('missing keys are refused at start', async () => {
  const store = new MemoryStore();
  await assert.rejects(ready({ ...keys, GRANTED_STORE: store, GRANTED_SIGNING_KEY: undefined }), /GRANTED_SIGNING_KEY/);
  await assert.rejects(ready({ ...keys, GRANTED_STORE: store, GRANTED_CLIENT_SECRET_KEY: '' }), /GRANTED_CLIENT_SECRET_KEY/);
});

test('the in-memory store counts atomically and keeps copies, not references', async () => {
  const store = new MemoryStore();
  const counts = await Promise.all(Array.from({ length: 100 }, () => store.increment('n')));
  assert.deepEqual([...counts].sort((a, b) => a - b), Array.from({ length: 100 }, (_, i) => i + 1));
  const value = { a: 1 };
  await store.put('v', value);
  value.a = 2;
  assert.deepEqual(await store.get('v'), { a: 1 });
  assert.equal(await store.get('missing'), null);
});

test('a snapshot of another format is refused', () => {
  assert.throws(() => snapshotEntries({ format: 'something-else' }), /not a granted edge snapshot/);
});
