// What the browser tests share (not a test file itself): the `granted` binary and Debian's Chromium (both checked), a
// fresh database with the demo state, `granted serve` on a free loopback port, and the browser.
//
// GRANTED_BIN: the `granted` binary (cargo xtask test passes it); CHROMIUM: the browser
// (/usr/bin/chromium by default); ARTIFACTS_DIR: where screenshots go.
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { dirname, join, resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { freePort, waitFor } from '../support/net.mjs';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const granted = process.env.GRANTED_BIN ?? join(root, 'target/debug/granted');
export const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
export const artifacts = process.env.ARTIFACTS_DIR ?? join(root, 'target/browser-artifacts');
export const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run'];

/** Imports the demo state into a new database under a temporary folder named from `prefix`,
 *  starts `granted serve` on it (1,000 PBKDF2 iterations, `serveArgs` added, `env` added to the
 *  environment) and Chromium: `{ server, base, dir, browser }`. */
export async function startDemo({ prefix, serveArgs = [], env = {} }) {
  assert.ok(existsSync(granted), `no granted binary at ${granted}`);
  assert.ok(existsSync(executablePath), `no browser at ${executablePath} (Debian: apt-get install chromium)`);
  mkdirSync(artifacts, { recursive: true });
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const db = join(dir, 'granted.db');
  execFileSync(granted, ['import', '--kdf-iterations', '1000', '--db', db, join(root, 'tests/demo/state.json')], { stdio: 'ignore' });
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const server = spawn(granted, ['serve', '--kdf-iterations', '1000', '--db', db, '--listen', `127.0.0.1:${port}`, ...serveArgs],
    { env: { ...process.env, GRANTED_LOG: 'warn', ...env }, stdio: 'ignore' });
  await waitFor(`${base}/healthz`);
  const browser = await chromium.launch({ executablePath, args: FLAGS, headless: true });
  return { server, base, dir, browser };
}

/** Closes what [`startDemo`] started and removes its folder. */
export async function stopDemo(demo) {
  await demo?.browser?.close();
  demo?.server?.kill();
  if (demo?.dir) rmSync(demo.dir, { recursive: true, force: true });
}
