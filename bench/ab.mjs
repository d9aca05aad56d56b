// A/B of two `granted` builds in one run: the same database copy for each, the same wrk load,
// in alternating rounds (A, B, B, A, A, B, …) so that the machine's slow phases fall on both.
//
//   node bench/ab.mjs --a /path/to/granted-before --b /path/to/granted-after
//     [--rounds 6] [--seconds 5] [--connections 16,64] [--grant client_credentials|refresh_token]
//     [--postgres target/debug/granted [--delay-us 500] [--hosts 2]]
//
// With --postgres (a `granted` built with the `testing` feature, as `cargo test` builds it), the
// servers run on PostgreSQL instead of SQLite: a throwaway server on this machine (`fsync` off,
// as for tests), one database imported once, and a copy of it (`CREATE DATABASE … TEMPLATE`) per
// server. With --delay-us, the servers reach that database through the delay proxy
// (`host/examples/delay_proxy.rs`, `--delay-proxy` names its binary), every byte held that long
// in each direction, as if it ran on another machine. With --hosts N, each build runs as N hosts
// on one copy of the database, each host under the connections (and, for refresh_token, as
// many chains) of its own wrk, their answers/s summed: the scale-out rows of `cargo xtask bench`.
//
// Prints, per connection count, each round's answers/s and the median of the rounds for A and
// B, and their ratio B/A (the statistic a change is judged on). Nothing is written.

import { spawn, execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { dirname, join, resolve } from 'node:path';
import { freePort, waitFor } from '../tests/support/net.mjs';
import { FORM, basic, firstLine, runChains, runWrk, together } from './wrk.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const opts = Object.fromEntries(process.argv.slice(2).reduce((pairs, arg, i, all) => (
  arg.startsWith('--') ? [...pairs, [arg.slice(2), all[i + 1]]] : pairs), []));
if (!opts.a || !opts.b) {
  console.error('usage: node bench/ab.mjs --a GRANTED --b GRANTED [--rounds N] [--seconds S] [--connections 16,64] [--grant client_credentials|refresh_token]');
  process.exit(2);
}
const builds = { A: resolve(opts.a), B: resolve(opts.b) };
const ROUNDS = Number(opts.rounds ?? 6);
const SECONDS = Number(opts.seconds ?? 5);
const CONNECTIONS = (opts.connections ?? '16,64').split(',').map(Number);
const GRANT = opts.grant ?? 'client_credentials';
const HOSTS = Number(opts.hosts ?? 1);
const DELAY_US = opts['delay-us'] === undefined ? null : Number(opts['delay-us']);
if ((HOSTS !== 1 || DELAY_US !== null) && !opts.postgres) {
  console.error('--hosts and --delay-us need --postgres: hosts share one PostgreSQL database');
  process.exit(2);
}
const ITERATIONS = 1000;
const SYNC = basic('sync-1', 'sync-1-secret');
const CRM = basic('crm-1', 'crm-1-secret');
const dir = mkdtempSync(join(tmpdir(), 'granted-ab-'));

// One database, imported once by A; each server runs on a fresh copy of it.
const pg = opts.postgres ? await throwawayPostgres(resolve(opts.postgres)) : null;
const proxy = pg && DELAY_US !== null ? await delayProxy(pg.url) : null;
const seed = pg ? pg.url : join(dir, 'seed.db');
execFileSync(builds.A, ['import', '--kdf-iterations', String(ITERATIONS), '--db', seed, join(root, 'tests/demo/state.json')], { stdio: 'ignore' });

/** A throwaway PostgreSQL server, its database `seed` at `url`. */
async function throwawayPostgres(bin) {
  const child = spawn(bin, ['throwaway-postgres', '--database', 'seed'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const url = await new Promise((ok, fail) => {
    let out = '';
    child.stdout.on('data', (d) => { out += d; if (out.includes('\n')) ok(out.split('\n')[0].trim()); });
    child.once('exit', (code) => fail(new Error(`granted throwaway-postgres exited with ${code}`)));
  });
  return { child, url };
}

/** The delay proxy in front of the database at `url`; `host` is its own address. */
async function delayProxy(url) {
  const bin = resolve(opts['delay-proxy'] ?? join(root, 'target/release/examples/delay_proxy'));
  const child = spawn(bin, ['127.0.0.1:0', new URL(url).host, String(DELAY_US)], { stdio: ['pipe', 'pipe', 'inherit'] });
  return { child, host: await firstLine(child, 'the delay proxy') };
}

/** A copy of the seed database for one server: a file, or a PostgreSQL database. */
function copyOfSeed(name) {
  if (pg) {
    const copy = name.toLowerCase().replace(/[^a-z0-9]/g, '_');
    execFileSync('psql', [pg.url, '-q', '-c', `CREATE DATABASE ${copy} TEMPLATE seed`], { stdio: 'inherit' });
    const url = new URL(pg.url.replace(/\/seed(\?|$)/, `/${copy}$1`));
    if (proxy) url.host = proxy.host;
    return url.toString();
  }
  const db = join(dir, `${name}.db`);
  copyFileSync(seed, db);
  // The import's writes may still be in its write-ahead log: the copy takes it too.
  if (existsSync(`${seed}-wal`)) copyFileSync(`${seed}-wal`, `${db}-wal`);
  return db;
}

async function serve(bin, db) {
  const port = await freePort();
  const child = spawn(bin, ['serve', '--db', db, '--listen', `127.0.0.1:${port}`, '--kdf-iterations', String(ITERATIONS)], {
    env: { ...process.env, GRANTED_CACHE_DIR: join(dir, 'cache'), GRANTED_LOG: 'error', GRANTED_THROTTLE_FAILURES: '1000000' },
    stdio: 'ignore',
  });
  const base = `http://127.0.0.1:${port}`;
  await waitFor(`${base}/healthz`);
  return { child, token: `${base}/tenants/acme/connect/token` };
}

/** `n` hosts of `bin` on one copy of the seed database. */
async function serveHosts(bin, name, n) {
  const db = copyOfSeed(name);
  const hosts = [];
  try {
    for (let i = 0; i < n; i += 1) hosts.push(await serve(bin, db));
  } catch (e) {
    await stop(hosts);
    throw e;
  }
  return hosts;
}

async function stop(hosts) {
  for (const h of hosts) {
    h.child.kill('SIGTERM');
    await new Promise((r) => h.child.once('exit', r));
  }
}

async function load(server, connections) {
  if (GRANT === 'client_credentials') {
    return runWrk(server.token, connections, { body: 'grant_type=client_credentials', auth: SYNC, seconds: SECONDS, dir });
  }
  const tokens = [];
  for (let i = 0; i < connections; i += 1) {
    const r = await fetch(server.token, { method: 'POST', headers: { Authorization: CRM, 'Content-Type': FORM },
      body: 'grant_type=password&username=alice&password=correct+horse+battery' });
    const body = await r.json();
    if (r.status !== 200) throw new Error(`no refresh token: ${r.status} ${JSON.stringify(body)}`);
    tokens.push(body.refresh_token);
  }
  return runChains(server.token, tokens, CRM, { seconds: SECONDS, dir });
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const rps = { A: {}, B: {} };
try {
  for (let round = 0; round < ROUNDS; round += 1) {
    // ABBA order: A first in even rounds, B first in odd ones.
    for (const name of round % 2 ? ['B', 'A'] : ['A', 'B']) {
      const hosts = await serveHosts(builds[name], `${name}-${round}`, HOSTS);
      try {
        for (const c of CONNECTIONS) {
          const r = together(await Promise.all(hosts.map((h) => load(h, c))));
          if (r.errors || r.non2xx) throw new Error(`${name} c=${c}: ${r.errors} errors, ${r.non2xx} non-2xx`);
          (rps[name][c] ??= []).push(r.rps);
          console.error(`round ${round + 1} ${name} ${GRANT} c=${c}: ${r.rps.toFixed(0)}/s (p99 ${r.p99.toFixed(2)} ms${r.non2xx + r.errors ? `, ${r.non2xx + r.errors} failed` : ''})`);
        }
      } finally {
        await stop(hosts);
      }
    }
  }
} finally {
  if (proxy) {
    proxy.child.stdin.end();
  }
  if (pg) {
    // Its standard input closed, it stops the server and removes its files.
    pg.child.stdin.end();
    await new Promise((r) => pg.child.once('exit', r));
  }
  rmSync(dir, { recursive: true, force: true });
}
console.log(`| ${GRANT}, connections${HOSTS > 1 ? ` per host (${HOSTS} hosts)` : ''} | A: median answers/s | B: median answers/s | B/A |`);
console.log('| --- | ---: | ---: | ---: |');
for (const c of CONNECTIONS) {
  const [a, b] = [median(rps.A[c]), median(rps.B[c])];
  console.log(`| ${c} | ${a.toFixed(0)} | ${b.toFixed(0)} | ${(b / a).toFixed(2)}× |`);
}
console.log(`\n${ROUNDS} rounds of ${SECONDS} s per build and connection count, alternating, on ${pg ? 'PostgreSQL' : 'SQLite'}${proxy ? `, ${DELAY_US} µs away each way` : ''}; A = ${builds.A}, B = ${builds.B}`);
