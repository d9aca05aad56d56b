// The edge handler and `granted serve` sharing one database's keys (`granted export
// --edge-secrets`: the signing key as a private JWK): for each asymmetric algorithm, panva/jose
// (a library we did not write) verifies the tokens of both against the edge's JWKS and the
// host's, which list the same keys, and the host's introspection agrees on every token.
//
// GRANTED_BIN: the `granted` binary (cargo xtask test passes it).

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { dirname, join, resolve } from 'node:path';
import { createLocalJWKSet, createRemoteJWKSet, jwtVerify } from 'jose';
import { freePort, waitFor } from '../support/net.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const granted = process.env.GRANTED_BIN ?? join(root, 'target/debug/granted');
const ISSUER = 'https://granted.test';
const children = [];
const dirs = [];

after(() => {
  for (const child of children) child.kill();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

const basic = `Basic ${Buffer.from('sync-1:sync-1-secret').toString('base64')}`;
const FORM = { 'content-type': 'application/x-www-form-urlencoded', authorization: basic };

async function token(base) {
  const response = await fetch(`${base}/tenants/acme/connect/token`, { method: 'POST', headers: FORM, body: 'grant_type=client_credentials' });
  assert.equal(response.status, 200, await response.clone().text());
  return (await response.json()).access_token;
}

async function introspect(base, token) {
  const response = await fetch(`${base}/tenants/acme/connect/introspect`, {
    method: 'POST', headers: FORM, body: `token=${encodeURIComponent(token)}`,
  });
  return response.json();
}

const verify = (token, keys) => jwtVerify(token, keys, {
  issuer: `${ISSUER}/tenants/acme`, audience: ISSUER, algorithms: ['ES256', 'EdDSA', 'RS256'], typ: 'at+jwt',
});

for (const alg of ['ES256', 'EdDSA', 'RS256']) {
  test(`${alg}: tokens of the edge and of the host verify under the same JWKS`, async () => {
    assert.ok(existsSync(granted), `no granted binary at ${granted}`);
    const dir = mkdtempSync(join(tmpdir(), `granted-jose-${alg}-`));
    dirs.push(dir);
    const db = join(dir, 'granted.db');
    const env = { ...process.env, GRANTED_SIGNING_ALG: alg, GRANTED_LOG: 'warn' };
    execFileSync(granted, ['import', '--kdf-iterations', '1000', '--db', db, join(root, 'tests/demo/state.json')], { stdio: 'ignore', env });
    const secrets = join(dir, 'secrets.json');
    execFileSync(granted, ['export', '--db', db, '--edge', join(dir, 'snapshot.json'), '--edge-secrets', secrets], { stdio: 'ignore', env });
    assert.equal(statSync(secrets).mode & 0o777, 0o600, 'the edge secrets file is owner-only');
    const signing = JSON.parse(readFileSync(secrets, 'utf8')).GRANTED_SIGNING_KEY;
    assert.equal(signing.alg, alg);
    const [hostPort, edgePort] = [await freePort(), await freePort()];
    const host = `http://127.0.0.1:${hostPort}`;
    const edge = `http://127.0.0.1:${edgePort}`;
    children.push(spawn(granted, ['serve', '--db', db, '--listen', `127.0.0.1:${hostPort}`, '--kdf-iterations', '1000', '--issuer', ISSUER],
      { env, stdio: 'ignore' }));
    children.push(spawn(process.execPath, [join(root, 'www/edge/serve.mjs'), '--snapshot', join(dir, 'snapshot.json'),
      '--secrets', secrets, '--listen', `127.0.0.1:${edgePort}`, '--issuer', ISSUER, '--kdf-iterations', '1000'], { stdio: 'ignore' }));
    await waitFor(`${host}/healthz`);
    await waitFor(`${edge}/healthz`);

    const jwksOf = async (base) => (await fetch(`${base}/tenants/acme/.well-known/jwks.json`)).json();
    const [hostJwks, edgeJwks] = [await jwksOf(host), await jwksOf(edge)];
    assert.deepEqual(edgeJwks.keys.map((k) => k.kid), hostJwks.keys.map((k) => k.kid));
    for (const key of edgeJwks.keys) {
      for (const member of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']) assert.equal(key[member], undefined, `${member} in the edge's JWKS`);
    }
    const metadata = await (await fetch(`${edge}/tenants/acme/.well-known/oauth-authorization-server`)).json();
    assert.equal(metadata.jwks_uri, `${ISSUER}/tenants/acme/.well-known/jwks.json`);

    const fromEdge = await token(edge);
    const fromHost = await token(host);
    for (const keys of [createLocalJWKSet(edgeJwks), createRemoteJWKSet(new URL(`${host}/tenants/acme/.well-known/jwks.json`))]) {
      for (const t of [fromEdge, fromHost]) {
        const { payload, protectedHeader } = await verify(t, keys);
        assert.equal(protectedHeader.alg, alg);
        // Introspection at the host agrees with the library, claim by claim.
        const seen = await introspect(host, t);
        assert.equal(seen.active, true, JSON.stringify(seen));
        for (const claim of ['sub', 'client_id', 'scope', 'iss', 'aud', 'iat', 'exp', 'jti']) assert.deepEqual(seen[claim], payload[claim], claim);
      }
    }
    // A token whose signature does not hold is refused by both.
    const forged = fromEdge.slice(0, fromEdge.lastIndexOf('.') + 1) + fromHost.slice(fromHost.lastIndexOf('.') + 1);
    await assert.rejects(verify(forged, createLocalJWKSet(edgeJwks)));
    assert.equal((await introspect(host, forged)).active, false);
  });
}
