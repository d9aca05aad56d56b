// Every vector through the _bg.wasm under Node, through the wasm-bindgen API.
// VECTORS_DIR (one or more directories, `:`-separated) picks the vectors; default: ours and the shared ones.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { dirname, join, resolve } from 'node:path';
import * as policy from '../../www/pkg/granted_policy.js';
import { runVector, webCryptoKdf, b64 } from './driver.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const wasmPath = join(here, '../../www/pkg/granted_policy_bg.wasm');
const wasm = readFileSync(wasmPath);
policy.initSync({ module: wasm });

const defaults = [
  join(here, '../vectors'), join(here, '../../spec/vectors'),
  join(here, '../vectors-code'), join(here, '../../spec/vectors-code'),
];
const dirs = process.env.VECTORS_DIR ? process.env.VECTORS_DIR.split(':').map((d) => resolve(d)) : defaults;

const number = (name) => { const m = /^\d+/.exec(name); return m ? Number(m[0]) : Infinity; };

test('the module loaded is the one `cargo xtask wasm` wrote', () => {
  const digest = createHash('sha256').update(wasm).digest('hex');
  const recorded = readFileSync(`${wasmPath}.sha256`, 'utf8').trim();
  assert.equal(digest, recorded);
  assert.equal(policy.info().abi_version, 2);
});

test('WebCrypto PBKDF2 and the in-module PBKDF2 give the same bytes', async () => {
  // RFC 7914 §11 (PBKDF2-HMAC-SHA256), c = 1, and ours at 1000 iterations.
  const cases = [
    { password: 'passwd', salt: b64(Buffer.from('salt')), iterations: 1, length: 64,
      hex: '55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783' },
    { password: 'correct horse battery ✓', salt: b64(Buffer.from('granted-salt')), iterations: 1000, length: 32 },
  ];
  for (const c of cases) {
    const params = { algorithm: 'pbkdf2-sha256', salt: c.salt, iterations: c.iterations, length: c.length };
    const fast = Buffer.from(await webCryptoKdf(params, c.password)).toString('hex');
    const slow = Buffer.from(policy.pbkdf2({ ...params, password: c.password }).derived, 'base64').toString('hex');
    assert.equal(slow, fast);
    if (c.hex) assert.equal(fast, c.hex);
  }
});

test('a refusal throws an Error with a stable code', () => {
  assert.throws(() => policy.preview({ state: {}, now: 'yesterday' }), (e) => e.code === 'invalid_input');
});

for (const dir of dirs) {
  const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort((a, b) => number(a) - number(b) || a.localeCompare(b));
  test(`vectors in ${dir}`, async (t) => {
    assert.ok(files.length > 0, `no vector files in ${dir}`);
    for (const file of files) {
      await t.test(file, async () => {
        const vector = JSON.parse(readFileSync(join(dir, file), 'utf8'));
        const mismatches = await runVector(policy, vector);
        assert.deepEqual(mismatches, [], mismatches.join('; '));
      });
    }
  });
  // The path of a runtime with no fast PBKDF2: the module derives the key itself.
  test(`vectors in ${dir}, KDF inside the module`, async () => {
    const failures = [];
    for (const file of files) {
      const vector = JSON.parse(readFileSync(join(dir, file), 'utf8'));
      const mismatches = await runVector(policy, vector, { kdfInModule: true });
      if (mismatches.length) failures.push(`${file}: ${mismatches.join('; ')}`);
    }
    assert.deepEqual(failures, []);
  });
}
