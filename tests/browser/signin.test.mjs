// The sign-in pages of the authorization code flow in headless Chromium (Debian's `chromium`,
// driven by playwright-core) against a real `granted serve` with the demo state, at 390 px wide
// and with the keyboard: sign-in with an expired password, its change on the page, consent, and
// the landing on a local callback with a code that exchanges for tokens (with the nonce in the
// ID token). The pages run no script: Chromium's console stays clean under their CSP.
// Screenshots go to target/browser-artifacts/.
//
// GRANTED_BIN: the `granted` binary (cargo xtask test passes it); CHROMIUM: the browser.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { freePort } from '../support/net.mjs';
import { artifacts, startDemo, stopDemo } from './demo.mjs';

let demo;
let base;
let browser;
let callback;
let callbackPort;
const arrivals = [];

before(async () => {
  // The real clock: the exchanged tokens are checked by time like any client would.
  demo = await startDemo({ prefix: 'granted-signin-' });
  ({ base, browser } = demo);
  // The app's callback: a loopback redirect URI may differ from the registered one in port only
  // (RFC 8252 §7.3).
  callbackPort = await freePort();
  callback = createServer((req, res) => {
    // Only the redirects: the browser also asks this origin for its /favicon.ico, at a moment
    // of its own (CI at stop 28 read that request instead of the landing).
    const url = new URL(req.url, `http://127.0.0.1:${callbackPort}`);
    if (url.pathname === '/callback') arrivals.push(url);
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end('signed in');
  });
  await new Promise((ok) => callback.listen(callbackPort, '127.0.0.1', ok));
});

after(async () => {
  callback?.close();
  await stopDemo(demo);
});

const b64url = (bytes) => Buffer.from(bytes).toString('base64url');

/** An authorization URL of the demo's `notes` app in globex, with a fresh PKCE pair. */
function authorization() {
  const verifier = b64url(randomBytes(48));
  const nonce = b64url(randomBytes(12));
  const state = b64url(randomBytes(12));
  const redirectUri = `http://127.0.0.1:${callbackPort}/callback`;
  const url = new URL(`${base}/tenants/globex/connect/authorize`);
  url.search = new URLSearchParams({
    response_type: 'code', client_id: 'notes-1', redirect_uri: redirectUri, scope: 'openid read',
    state, nonce, code_challenge: b64url(createHash('sha256').update(verifier).digest()), code_challenge_method: 'S256',
  }).toString();
  return { url: url.toString(), verifier, nonce, state, redirectUri };
}

/** A page at `width`, collecting console errors (a CSP violation shows there). */
async function page(width) {
  const context = await browser.newContext({ viewport: { width, height: 800 } });
  const p = await context.newPage();
  p.problems = [];
  // A status page's own answer (401 after a wrong password, the browser's favicon 404) is logged
  // as "Failed to load resource"; a CSP violation or a script error is what counts here.
  p.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) p.problems.push(m.text());
  });
  p.on('pageerror', (e) => p.problems.push(e.message));
  return p;
}

/** The page fits its width: nothing scrolls sideways. */
async function fits(p, width) {
  const scroll = await p.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(scroll <= width, `the page is ${scroll} px wide at ${width} px`);
}

test('an expired password is changed on the page, consent is given, and the code exchanges for tokens (390 px, keyboard)', async () => {
  const flow = authorization();
  const p = await page(390);
  await p.goto(flow.url);
  await p.getByRole('heading', { name: 'Sign in' }).waitFor();
  assert.match(await p.textContent('main'), /notes[\s\S]*globex/);
  await fits(p, 390);
  await p.screenshot({ path: join(artifacts, 'signin-390.png'), fullPage: true });

  // A wrong password: the one message, the form again.
  await p.getByLabel('Username').fill('carol');
  await p.getByLabel('Password').fill('not her password');
  await p.keyboard.press('Enter');
  await p.getByRole('alert').waitFor();
  const message = await p.getByRole('alert').textContent();

  // An unknown user gets exactly the same message.
  await p.getByLabel('Username').fill('nobody-here');
  await p.getByLabel('Password').fill('whatever-it-is');
  await p.keyboard.press('Enter');
  await p.getByRole('alert').waitFor();
  assert.equal(await p.getByRole('alert').textContent(), message);

  // carol's password is older than globex's 90 days: she must choose a new one.
  await p.getByLabel('Username').fill('carol');
  await p.getByLabel('Password').fill('an old passw0rd');
  await p.keyboard.press('Enter');
  await p.getByRole('heading', { name: 'Your password has expired' }).waitFor();
  await fits(p, 390);
  await p.screenshot({ path: join(artifacts, 'change-password-390.png'), fullPage: true });
  // With the keyboard only: the new password's field has the focus.
  await p.keyboard.type('a brand new passw0rd');
  await p.keyboard.press('Tab');
  await p.keyboard.type('a brand new passw0rd');
  await p.keyboard.press('Enter');

  await p.getByRole('heading', { name: /Allow notes/ }).waitFor();
  await fits(p, 390);
  await p.screenshot({ path: join(artifacts, 'consent-390.png'), fullPage: true });
  await p.getByRole('button', { name: 'Allow' }).click();
  await p.waitForURL((u) => u.pathname === '/callback');

  const landed = arrivals.at(-1);
  assert.equal(landed.searchParams.get('state'), flow.state);
  assert.equal(landed.searchParams.get('iss'), `${base}/tenants/globex`);
  const code = landed.searchParams.get('code');
  assert.ok(code, 'the callback has a code');
  assert.deepEqual(p.problems, [], 'no console errors: the pages need no script and break no CSP');

  const answer = await fetch(`${base}/tenants/globex/connect/token`, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/x-www-form-urlencoded',
      Authorization: `Basic ${Buffer.from('notes-1:notes-1-secret').toString('base64')}`,
    },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: flow.redirectUri, code_verifier: flow.verifier }),
  });
  const tokens = await answer.json();
  assert.equal(answer.status, 200, JSON.stringify(tokens));
  const claims = JSON.parse(Buffer.from(tokens.id_token.split('.')[1], 'base64url').toString());
  assert.equal(claims.nonce, flow.nonce);
  assert.equal(claims.aud, 'notes-1');
  await p.context().close();
});

test('a cross-site form post is refused with the page, and the sign-in goes on from the app', async () => {
  const flow = authorization();
  const p = await page(1280);
  // Another site's page posting a sign-in form to the authorization endpoint: no transaction
  // cookie goes with it (SameSite=Lax), no CSRF token is in it.
  const attacker = createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end(`<form method="post" action="${flow.url.replace(/"/g, '&quot;')}">
      <input name="action" value="sign_in"><input name="username" value="bob">
      <input name="password" value="tr0ub4dor&amp;3"><button>go</button></form>`);
  });
  const attackerPort = await freePort();
  await new Promise((ok) => attacker.listen(attackerPort, '127.0.0.1', ok));
  try {
    await p.goto(flow.url);
    await p.goto(`http://localhost:${attackerPort}/`);
    await p.getByRole('button', { name: 'go' }).click();
    await p.getByRole('heading', { name: 'This sign-in cannot go on' }).waitFor();
    assert.match(await p.textContent('main'), /expired or did not come from this sign-in/);
  } finally {
    attacker.close();
  }
  await p.context().close();
});
