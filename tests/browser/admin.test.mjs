// The admin page in headless Chromium (Debian's `chromium`, driven by playwright-core) against a
// real `granted serve` with the demo state: the digest badge, sign-in, the preview of each sunset
// case, a rejected revert, saving an irreversible edit, the dashboard; every vector's edit/create
// and every sequence (lockout, rehash) through the browser build; the preview of an app
// installed by 10,000 tenants (its time is measured by `cargo xtask bench preview`, not here).
// Screenshots go to target/browser-artifacts/.
//
// GRANTED_BIN: the `granted` binary (cargo xtask test passes it); CHROMIUM: the browser
// (/usr/bin/chromium by default).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { freePort, waitFor } from '../support/net.mjs';
import { bigAppPreviewInput, BIG_APP_TENANTS } from '../support/big-app-preview.mjs';
import { join } from 'node:path';
import { artifacts, granted, root, startDemo, stopDemo } from './demo.mjs';
import { runVector } from '../node/driver.mjs';

const TOKEN = 'browser-test-admin-token-0123456789abcdef';

let demo;
let base;
let browser;
let dir;

before(async () => {
  demo = await startDemo({
    prefix: 'granted-browser-',
    serveArgs: ['--fixed-now', '2026-11-25T12:00:00Z'],
    env: { GRANTED_ADMIN_TOKEN: TOKEN },
  });
  ({ base, browser, dir } = demo);
});

after(async () => stopDemo(demo));

async function page(width = 1280) {
  const context = await browser.newContext({ viewport: { width, height: 900 } });
  const p = await context.newPage();
  const errors = [];
  p.on('pageerror', (e) => errors.push(e.message));
  p.errors = errors;
  await p.goto(`${base}/admin/`);
  return p;
}

/** The policy module in page `p` as `window.grantedPolicy`, initialised as the admin page does
 *  it (`www/admin/app.js`): the glue has no default module path, so a bare `default()` that
 *  runs before the page's own (CI at stop 28) hands `undefined` to `WebAssembly.instantiate`. */
async function policyInPage(p) {
  await p.evaluate(async () => {
    const m = await import('/admin/pkg/granted_policy.js');
    const response = await fetch('/admin/pkg/granted_policy_bg.wasm');
    if (!response.ok) throw new Error(`could not fetch the policy module: ${response.status}`);
    await m.default({ module_or_path: await response.arrayBuffer() });
    window.grantedPolicy = m;
  });
}

async function signIn(p) {
  await p.getByLabel('Admin token').fill(TOKEN);
  await p.getByRole('button', { name: 'Sign in' }).click();
  await p.locator('#apps').waitFor();
}

async function openApp(p, appId) {
  await p.getByRole('link', { name: appId, exact: true }).click();
  await p.locator('#edit').waitFor();
}

test('the digest badge shows the module before sign-in, and it is the server\'s', async () => {
  const p = await page();
  await p.locator('#digest-match').waitFor();
  const health = await (await fetch(`${base}/healthz`)).json();
  assert.equal(await p.locator('#digest-value').getAttribute('title'), health.policy_sha256);
  assert.match(await p.locator('#digest-match').textContent(), /same module/);
  assert.equal(await p.locator('#mismatch').isHidden(), true);
  assert.equal(await p.getByLabel('Admin token').isVisible(), true);
  await p.screenshot({ path: join(artifacts, 'sign-in.png') });
  assert.deepEqual(p.errors, []);
  await p.context().close();
});

test('a wrong token is refused and the token never reaches the URL', async () => {
  const p = await page();
  await p.getByLabel('Admin token').fill('not-the-token');
  await p.getByRole('button', { name: 'Sign in' }).click();
  await p.locator('#sign-in-error:not(:empty)').waitFor();
  assert.match(await p.locator('#sign-in-error').textContent(), /refused/);
  assert.ok(!p.url().includes('token'));
  await signIn(p);
  assert.ok(!p.url().includes(TOKEN));
  await p.context().close();
});

test('apps show their password-grant status', async () => {
  const p = await page();
  await signIn(p);
  const row = (app) => p.locator('#apps tr', { has: p.getByRole('link', { name: app, exact: true }) });
  assert.match(await row('crm').textContent(), /password grant available/);
  assert.match(await row('reports').textContent(), /kept by 1 tenant/);
  assert.match(await row('sync').textContent(), /never had/);
  await p.screenshot({ path: join(artifacts, 'apps-1280.png'), fullPage: true });
  await p.context().close();
});

test('the preview of each sunset case, computed in the browser', async () => {
  const p = await page();
  await signIn(p);
  await openApp(p, 'crm');
  // Leaving the password grant: accepted, irreversible, both installing tenants lose it on update.
  await p.getByLabel('Grant type').selectOption('client_credentials');
  assert.equal(await p.locator('#preview-verdict').textContent(), 'Accepted');
  assert.match(await p.locator('#preview-explanation').textContent(), /A2/);
  assert.equal(await p.locator('#preview-irreversible').isVisible(), true);
  const table = await p.locator('#preview-tenants').textContent();
  assert.match(table, /acme/);
  assert.match(table, /globex/);
  assert.match(await p.locator('#preview-tenants caption').textContent(), /2 lose/);
  // A new client_id keeps nothing either: R3.
  await p.getByLabel('Grant type').selectOption('password');
  await p.getByLabel('client_id').fill('crm-2');
  assert.equal(await p.locator('#preview-verdict').textContent(), 'Rejected: this edit cannot be saved');
  assert.equal(await p.locator('#preview-reason').textContent(), 'client_id_changed');
  assert.equal(await p.locator('#save').isDisabled(), true);
  // Only the scopes change: the password grant stays.
  await p.getByLabel('client_id').fill('crm-1');
  await p.getByLabel('Scopes').fill('read');
  assert.equal(await p.locator('#preview-verdict').textContent(), 'Accepted');
  assert.equal(await p.locator('#preview-irreversible').count(), 0);
  assert.ok(!(await p.locator('#preview').textContent()).includes('null'), 'no stray null in the preview');
  await p.screenshot({ path: join(artifacts, 'preview-crm.png'), fullPage: true });
  assert.deepEqual(p.errors, []);
  await p.context().close();
});

test('an app made after the sunset cannot move to the password grant; an SSO-only tenant is marked', async () => {
  const p = await page(390);
  await signIn(p);
  await openApp(p, 'sync');
  assert.match(await p.locator('#installs').textContent(), /initech \(SSO only\)/);
  await p.getByLabel('Grant type').selectOption('password');
  assert.equal(await p.locator('#preview-verdict').textContent(), 'Rejected: this edit cannot be saved');
  // The reason the page shows is the one the server gives for the same edit.
  const server = await (await fetch(`${base}/admin/api/v1/apps/sync/preview`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ grant_type: 'password' }),
  })).json();
  assert.equal(server.preview.accepted, false);
  assert.equal(await p.locator('#preview-reason').textContent(), server.preview.reason);
  assert.equal(await p.locator('#preview-rule').textContent(), server.preview.rule);
  assert.equal(await p.locator('#save').isDisabled(), true);
  const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the app page is wider than 390 px by ${overflow} px`);
  await p.screenshot({ path: join(artifacts, 'app-390.png'), fullPage: true });
  await p.context().close();
});

test('moving a password app to the authorization code flow previews as the way forward, and its table fits 390 pixels', async () => {
  const p = await page(390);
  await signIn(p);
  await openApp(p, 'crm');
  await p.getByLabel('Grant type').selectOption('authorization_code');
  await p.getByLabel(/Redirect URIs/).fill('https://crm.example/callback');
  await p.locator('#preview-way-forward').waitFor();
  assert.equal(await p.locator('#preview-verdict').textContent(), 'Accepted');
  assert.match(await p.locator('#preview-way-forward').textContent(), /sign in on this server's page/);
  // The same preview as the server's for the same edit.
  const server = await (await fetch(`${base}/admin/api/v1/apps/crm/preview`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ grant_type: 'authorization_code', redirect_uris: ['https://crm.example/callback'] }),
  })).json();
  assert.equal(server.preview.way_forward, 'authorization_code');
  // Nothing is clipped: not the page, not the tenants' table inside its scrolling box.
  const clipped = await p.evaluate(() => {
    const wrap = document.querySelector('#preview-tenants').parentElement;
    return { page: document.documentElement.scrollWidth - window.innerWidth, table: wrap.scrollWidth - wrap.clientWidth };
  });
  assert.ok(clipped.page <= 0 && clipped.table <= 0, `wider than 390 px: ${JSON.stringify(clipped)}`);
  await p.screenshot({ path: join(artifacts, 'way-forward-390.png'), fullPage: true });
  // A redirect URI with a fragment is refused, with the reason (A6).
  await p.getByLabel(/Redirect URIs/).fill('https://crm.example/callback#x');
  await p.locator('#preview-reason').waitFor();
  assert.equal(await p.locator('#preview-reason').textContent(), 'invalid_redirect_uri');
  await p.context().close();
});

test('the tenants view lists each user with the apps they allowed', async () => {
  const p = await page(390);
  await signIn(p);
  await p.getByRole('link', { name: 'Tenants' }).click();
  await p.getByRole('link', { name: 'globex' }).click();
  await p.locator('#users').waitFor();
  const text = await p.locator('#users').textContent();
  assert.match(text, /bob/);
  assert.match(text, /carol/);
  const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the tenant page is wider than 390 px by ${overflow} px`);
  await p.context().close();
});

test('a tenant\'s identity provider is judged as typed, checked at its discovery document and saved, at 390 pixels', async () => {
  const { createServer } = await import('node:http');
  const stub = createServer((req, res) => {
    const issuer = `http://127.0.0.1:${stub.address().port}`;
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify({
      issuer,
      authorization_endpoint: `${issuer}/authorize`,
      token_endpoint: `${issuer}/token`,
      jwks_uri: `${issuer}/jwks`,
      id_token_signing_alg_values_supported: ['RS256'],
    }));
  });
  await new Promise((resolve) => stub.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${stub.address().port}`;
  try {
    const p = await page(390);
    await signIn(p);
    await p.getByRole('link', { name: 'Tenants' }).click();
    await p.getByRole('link', { name: 'initech' }).click();
    await p.locator('#identity-provider').waitFor();
    await p.getByLabel('Issuer').fill('http://idp.example');
    await p.getByLabel('client_id at the provider').fill('granted-initech');
    assert.match(await p.locator('#idp-verdict').textContent(), /A9: rejected/);
    assert.equal(await p.locator('#idp-save').isDisabled(), true);
    await p.getByLabel('Issuer').fill(issuer);
    assert.match(await p.locator('#idp-verdict').textContent(), /A9: accepted/);
    await p.getByLabel('Client secret').fill('idp-s3cret-value');
    await p.getByRole('button', { name: 'Check provider' }).click();
    await p.locator('#idp-found dl').waitFor();
    assert.match(await p.locator('#idp-found').textContent(), new RegExp(`${issuer}/token`));
    await p.getByRole('button', { name: 'Set provider' }).click();
    await p.waitForFunction(() => /Saved/.test(document.getElementById('idp-result')?.textContent ?? ''));
    assert.match(await p.locator('#idp-result').textContent(), /version 1/);
    const unlabelled = await p.evaluate(() => [...document.querySelectorAll('input, select, textarea')]
      .filter((el) => !el.closest('[hidden]') && el.labels.length === 0 && !el.getAttribute('aria-label'))
      .map((el) => el.id || el.name));
    assert.deepEqual(unlabelled, []);
    const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the tenant page is wider than 390 px by ${overflow} px`);
    await p.screenshot({ path: join(artifacts, 'identity-provider-390.png'), fullPage: true });
    assert.deepEqual(p.errors, []);
    await p.context().close();
  } finally {
    stub.close();
  }
});

test('a new app with the password grant after the sunset is refused; one without it is created', async () => {
  const p = await page();
  await signIn(p);
  await p.getByLabel('App id').fill('late');
  await p.getByLabel('client_id').fill('late-1');
  await p.getByLabel('Grant type').selectOption('password');
  const verdict = p.locator('#new-preview #preview-verdict');
  assert.equal(await verdict.textContent(), 'Rejected: this edit cannot be saved');
  assert.equal(await p.locator('#new-preview #preview-reason').textContent(), 'app_created_after_sunset');
  assert.equal(await p.locator('#create').isDisabled(), true);
  // A client_id another app uses: A5.
  await p.getByLabel('Grant type').selectOption('client_credentials');
  await p.getByLabel('client_id').fill('crm-1');
  assert.equal(await p.locator('#new-preview #preview-reason').textContent(), 'client_id_taken');
  await p.getByLabel('client_id').fill('late-1');
  assert.equal(await verdict.textContent(), 'Accepted');
  await p.locator('#create').click();
  await p.locator('#new-secret').waitFor();
  assert.ok((await p.locator('#new-secret').textContent()).length >= 43, 'the secret, shown once');
  const row = p.locator('#apps tr', { has: p.getByRole('link', { name: 'late', exact: true }) });
  assert.match(await row.textContent(), /never had/);
  await p.screenshot({ path: join(artifacts, 'new-app.png'), fullPage: true });
  await p.context().close();
});

test('when the server decides otherwise than the preview, the page says so loudly', async () => {
  const p = await page();
  await signIn(p);
  await openApp(p, 'reports');
  // The server's answer, altered on its way to the page: its preview no longer matches.
  await p.route('**/admin/api/v1/apps/reports/revisions', async (route) => {
    const response = await route.fetch();
    const body = await response.json();
    if (body.preview) body.preview.explanation = 'something else';
    await route.fulfill({ response, json: body });
  });
  await p.getByLabel('Scopes').fill('read audit');
  assert.equal(await p.locator('#preview-verdict').textContent(), 'Accepted');
  await p.locator('#save').click();
  await p.locator('#mismatch:not([hidden])').waitFor();
  assert.match(await p.locator('#mismatch').textContent(), /decided differently/);
  await p.screenshot({ path: join(artifacts, 'server-differs.png'), fullPage: true });
  await p.context().close();
});

test('a revert to the password grant is rejected with its reason and cannot be saved', async () => {
  const p = await page();
  await signIn(p);
  await openApp(p, 'reports');
  await p.getByLabel('Grant type').selectOption('password');
  assert.equal(await p.locator('#preview-verdict').textContent(), 'Rejected: this edit cannot be saved');
  assert.match(await p.locator('#preview-rule').textContent(), /^A1$/);
  assert.match(await p.locator('#preview-explanation').textContent(), /A1/);
  assert.equal(await p.locator('#save').isDisabled(), true);
  await p.screenshot({ path: join(artifacts, 'rejected-revert.png'), fullPage: true });
  await p.context().close();
});

test('saving an irreversible edit asks for the app id, then the app\'s status changes', async () => {
  const p = await page();
  await signIn(p);
  await openApp(p, 'crm');
  await p.getByLabel('Grant type').selectOption('client_credentials');
  assert.equal(await p.locator('#save').isDisabled(), true, 'not before the app id is typed');
  await p.getByLabel(/Type the app id/).fill('crm');
  assert.equal(await p.locator('#save').isDisabled(), false);
  await p.locator('#save').click();
  await p.locator('#save-result:not(:empty)').waitFor();
  assert.match(await p.locator('#save-result').textContent(), /Saved revision 3/);
  assert.equal(await p.locator('#mismatch').isHidden(), true, 'the server decided as the preview said');
  assert.match(await p.locator('#view h2').textContent(), /kept by 2 tenant/);
  assert.equal(await p.locator('#timeline li').count(), 3);
  await p.screenshot({ path: join(artifacts, 'saved-irreversible.png'), fullPage: true });
  await p.goto(`${base}/admin/#/apps`);
  await p.locator('#apps').waitFor();
  const row = p.locator('#apps tr', { has: p.getByRole('link', { name: 'crm', exact: true }) });
  assert.match(await row.textContent(), /kept by 2 tenant/);
  await p.context().close();
});

test('the sunset dashboard charts use and lists the tenants to migrate, at 1280 and 390 pixels', async () => {
  // Some password-grant use to chart.
  const form = 'grant_type=password&username=alice&password=correct+horse+battery';
  for (let i = 0; i < 3; i += 1) {
    const r = await fetch(`${base}/tenants/acme/connect/token`, {
      method: 'POST',
      headers: { Authorization: `Basic ${Buffer.from('reports-1:reports-1-secret').toString('base64')}`, 'Content-Type': 'application/x-www-form-urlencoded' },
      body: form,
    });
    assert.equal(r.status, 200);
  }
  for (const width of [1280, 390]) {
    const p = await page(width);
    await signIn(p);
    await p.getByRole('link', { name: 'Sunset' }).click();
    await p.locator('#to-migrate').waitFor();
    const charts = p.locator('#charts svg[role="img"]');
    assert.ok(await charts.count() >= 3);
    const label = await p.locator('#charts svg[aria-label*="reports"]').getAttribute('aria-label');
    assert.match(label, /3 password-grant tokens/);
    const migrate = await p.locator('#to-migrate').textContent();
    assert.match(migrate, /reports/);
    assert.match(migrate, /takes the password grant away/);
    const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is wider than ${width} px by ${overflow} px`);
    await p.screenshot({ path: join(artifacts, `dashboard-${width}.png`), fullPage: true });
    await p.context().close();
  }
});

test('every form control has a label, and the apps list fits 390 pixels', async () => {
  const p = await page(390);
  const unlabelled = async () => p.evaluate(() => [...document.querySelectorAll('input, select, textarea')]
    .filter((el) => !el.closest('[hidden]') && el.labels.length === 0 && !el.getAttribute('aria-label'))
    .map((el) => el.id || el.name));
  assert.deepEqual(await unlabelled(), []);
  await signIn(p);
  assert.deepEqual(await unlabelled(), []);
  const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the apps list is wider than 390 px by ${overflow} px`);
  await p.screenshot({ path: join(artifacts, 'apps-390.png'), fullPage: true });
  await openApp(p, 'crm');
  assert.deepEqual(await unlabelled(), []);
  await p.context().close();
});

test('the page works by keyboard: sign in, open an app, change a field', async () => {
  const p = await page();
  await p.getByLabel('Admin token').focus();
  await p.keyboard.type(TOKEN);
  await p.keyboard.press('Enter');
  await p.locator('#apps').waitFor();
  await p.getByRole('link', { name: 'sync', exact: true }).focus();
  await p.keyboard.press('Enter');
  await p.locator('#edit').waitFor();
  await p.getByLabel('Grant type').focus();
  await p.keyboard.press('ArrowUp');
  await p.locator('#preview-verdict').waitFor();
  assert.ok((await p.locator('#preview-verdict').textContent()).length > 0);
  await p.context().close();
});

test('a page whose module is not the server\'s warns before sign-in', async () => {
  // The same module with one more custom section: another SHA-256, the same ABI.
  const wasm = readFileSync(join(root, 'www/pkg/granted_policy_bg.wasm'));
  const name = Buffer.from('granted-test');
  const section = Buffer.concat([Buffer.from([0, name.length + 1, name.length]), name]);
  const other = join(dir, 'other.wasm');
  writeFileSync(other, Buffer.concat([wasm, section]));
  const port = await freePort();
  const db = join(dir, 'other.db');
  execFileSync(granted, ['import', '--kdf-iterations', '1000', '--db', db, join(root, 'tests/demo/state.json')], { stdio: 'ignore' });
  const second = spawn(granted, ['--policy', other, 'serve', '--kdf-iterations', '1000', '--db', db, '--listen', `127.0.0.1:${port}`],
    { env: { ...process.env, GRANTED_ADMIN_TOKEN: TOKEN, GRANTED_LOG: 'warn' }, stdio: 'ignore' });
  try {
    await waitFor(`http://127.0.0.1:${port}/healthz`);
    const context = await browser.newContext();
    const p = await context.newPage();
    await p.goto(`http://127.0.0.1:${port}/admin/`);
    await p.locator('#mismatch:not([hidden])').waitFor();
    assert.match(await p.locator('#mismatch').textContent(), /not the one the server enforces/);
    assert.match(await p.locator('#digest-match').textContent(), /differs/);
    await p.screenshot({ path: join(artifacts, 'digest-mismatch.png') });
    await context.close();
  } finally {
    second.kill();
  }
});

// --- the browser as a runtime for the vectors -------------------------------------------------

const vectorDirs = [
  join(root, 'tests/vectors'), join(root, 'spec/vectors'),
  join(root, 'tests/vectors-code'), join(root, 'spec/vectors-code'),
];

test('every edit and create vector gives the expected preview in Chromium', async () => {
  const vectors = [];
  for (const d of vectorDirs) {
    for (const name of readdirSync(d).filter((n) => n.endsWith('.json')).sort()) {
      const vector = JSON.parse(readFileSync(join(d, name), 'utf8'));
      if (vector.edit || vector.create) vectors.push({ name, vector });
    }
  }
  assert.ok(vectors.length >= 28, `${vectors.length} edit/create vectors`);
  const inputs = vectors.map(({ vector }) => {
    const input = { state: vector.state, now: vector.now };
    if (vector.sunset) input.sunset = vector.sunset;
    if (vector.edit) input.edit = vector.edit;
    if (vector.create) input.create = vector.create;
    return input;
  });
  const p = await page();
  await policyInPage(p);
  const answers = await p.evaluate(async (all) => {
    const m = window.grantedPolicy;
    return all.map((input) => {
      try { return { ok: m.preview(input) }; } catch (e) { return { error: String(e.code ?? e.message) }; }
    });
  }, inputs);
  await p.context().close();
  // The same checks as the Node runner, fed the browser's answers.
  const failures = [];
  for (let i = 0; i < vectors.length; i += 1) {
    const answer = answers[i];
    if (!answer.ok) { failures.push(`${vectors[i].name}: ${answer.error}`); continue; }
    const browserPolicy = { preview: () => answer.ok };
    const mismatches = await runVector(browserPolicy, vectors[i].vector);
    if (mismatches.length) failures.push(`${vectors[i].name}: ${mismatches.join('; ')}`);
  }
  assert.deepEqual(failures, []);
  console.log(`# ${vectors.length} edit/create vectors passed in Chromium`);
});

test('every sequence vector (lockout, rehash) gives the expected answers in Chromium', async () => {
  const sequences = [];
  for (const d of vectorDirs) {
    for (const name of readdirSync(d).filter((n) => n.endsWith('.json')).sort()) {
      const vector = JSON.parse(readFileSync(join(d, name), 'utf8'));
      if (vector.sequence) sequences.push({ name, vector });
    }
  }
  assert.ok(sequences.length >= 5, `${sequences.length} sequence vectors`);
  const p = await page();
  await policyInPage(p);
  // The module's calls answered by the browser's instance; the Node runner keeps the store,
  // applies the effects and runs the KDF step (WebCrypto), as a host around the module would.
  const inPage = (entry) => (input) => p.evaluate(([e, i]) => window.grantedPolicy[e](i), [entry, input]);
  const browserPolicy = { token: inPage('token'), hashPassword: inPage('hashPassword'), hashClientSecret: inPage('hashClientSecret') };
  const failures = [];
  for (const { name, vector } of sequences) {
    const mismatches = await runVector(browserPolicy, vector);
    if (mismatches.length) failures.push(`${name}: ${mismatches.join('; ')}`);
  }
  await p.context().close();
  assert.deepEqual(failures, []);
  console.log(`# ${sequences.length} sequence vectors passed in Chromium`);
});

test('every authorization code vector (authorize request, flow through the pages) gives the expected answers in Chromium', async () => {
  const vectors = [];
  for (const d of vectorDirs) {
    for (const name of readdirSync(d).filter((n) => n.endsWith('.json')).sort()) {
      const vector = JSON.parse(readFileSync(join(d, name), 'utf8'));
      if (vector.authorize_request || vector.flow) vectors.push({ name, vector });
    }
  }
  assert.ok(vectors.length >= 20, `${vectors.length} authorization code vectors`);
  const p = await page();
  await policyInPage(p);
  // The module answers in the browser; the Node runner keeps the store and runs the KDF step.
  const inPage = (entry) => (input) => p.evaluate(([e, i]) => window.grantedPolicy[e](i), [entry, input]);
  const browserPolicy = {
    token: inPage('token'), authorization: inPage('authorization'),
    hashPassword: inPage('hashPassword'), hashClientSecret: inPage('hashClientSecret'),
  };
  const failures = [];
  for (const { name, vector } of vectors) {
    const mismatches = await runVector(browserPolicy, vector);
    if (mismatches.length) failures.push(`${name}: ${mismatches.join('; ')}`);
  }
  await p.context().close();
  assert.deepEqual(failures, []);
  console.log(`# ${vectors.length} authorization code vectors passed in Chromium`);
});

// --- one preview for an app installed by 10,000 tenants --------------------------------------------

test('the preview of one edit for an app installed by 10,000 tenants, through both faces', async () => {
  const p = await page();
  await policyInPage(p);
  const result = await p.evaluate(async (input) => {
    const m = window.grantedPolicy;
    const last = m.preview(input);
    // The same preview through the JSON face (`callJson`): text across, serde_json inside.
    const viaJson = JSON.parse(m.callJson('preview', JSON.stringify(input))).ok;
    return { losing: last.tenants_losing_password_on_update.length, same: JSON.stringify(viaJson) === JSON.stringify(last) };
  }, bigAppPreviewInput());
  await p.context().close();
  assert.equal(result.losing, BIG_APP_TENANTS, 'every tenant pins an eligible revision and would lose the grant');
  assert.equal(result.same, true, 'both faces give the same preview');
});
