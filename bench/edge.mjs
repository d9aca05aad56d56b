// `cargo xtask bench edge`: the edge handler on Node against `granted serve`, in one run, on the
// demo state: cold start (process start to the first `client_credentials` answer) and
// `client_credentials` answers per second under load from `wrk` (keep-alive, fixed duration).
// Prints a Markdown table and writes bench/results/edge.md.
//
//   node bench/edge.mjs --granted target/release/granted [--seconds 10] [--connections 32]

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { freePort } from '../tests/support/net.mjs';
import { fileURLToPath } from 'node:url';
import { dirname, join, resolve } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
const opts = Object.fromEntries(process.argv.slice(2).reduce((pairs, arg, i, all) => (
  arg.startsWith('--') ? [...pairs, [arg.slice(2), all[i + 1]]] : pairs), []));
const granted = resolve(opts.granted ?? join(root, 'target/release/granted'));
const seconds = Number(opts.seconds ?? 10);
const connections = Number(opts.connections ?? 32);
const RUNS = 5;
const CC = 'grant_type=client_credentials';
const AUTH = `Basic ${Buffer.from('sync-1:sync-1-secret').toString('base64')}`;


async function firstAnswer(url) {
  for (;;) {
    try {
      const r = await fetch(url, { method: 'POST', headers: { Authorization: AUTH, 'Content-Type': 'application/x-www-form-urlencoded' }, body: CC });
      if (r.status === 200) return;
      throw new Error(`status ${r.status}`);
    } catch (e) {
      if (!String(e.message).includes('fetch failed') && !String(e.cause?.code ?? '').startsWith('ECONNREFUSED')) throw e;
    }
    await new Promise((r) => setTimeout(r, 2));
  }
}

const dir = mkdtempSync(join(tmpdir(), 'granted-bench-edge-'));
const db = join(dir, 'granted.db');
execFileSync(granted, ['import', '--kdf-iterations', '1000', '--db', db, join(root, 'tests/demo/state.json')], { stdio: 'ignore' });
execFileSync(granted, ['export', '--db', db, '--edge', join(dir, 'snapshot.json'), '--edge-secrets', join(dir, 'secrets.json')], { stdio: 'ignore' });
const cache = join(dir, 'cache');

const servers = {
  host: (port) => spawn(granted, ['serve', '--db', db, '--listen', `127.0.0.1:${port}`], {
    env: { ...process.env, GRANTED_CACHE_DIR: cache, GRANTED_LOG: 'warn', GRANTED_ADMIN_TOKEN: 'bench-admin-token-0123456789abcdef-0123' },
    stdio: 'ignore',
  }),
  edge: (port) => spawn(process.execPath, [join(root, 'www/edge/serve.mjs'), '--snapshot', join(dir, 'snapshot.json'),
    '--secrets', join(dir, 'secrets.json'), '--listen', `127.0.0.1:${port}`], { stdio: 'ignore' }),
};

async function start(name) {
  const port = await freePort();
  const started = performance.now();
  const child = servers[name](port);
  const url = `http://127.0.0.1:${port}/tenants/acme/connect/token`;
  await firstAnswer(url);
  return { child, url, ms: performance.now() - started };
}

function stop(child) {
  return new Promise((ok) => { child.once('exit', ok); child.kill('SIGTERM'); });
}

function wrk(url) {
  const script = join(dir, 'cc.lua');
  writeFileSync(script, `wrk.method = "POST"\nwrk.body = "${CC}"\nwrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\nwrk.headers["Authorization"] = "${AUTH}"\n`);
  const out = execFileSync('wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', '-s', script, url], { encoding: 'utf8' });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const lat = {};
  for (const m of out.matchAll(/^\s+(50|99)%\s+([\d.]+\w+)$/gm)) lat[m[1]] = m[2];
  return { rps, non2xx, p50: lat['50'], p99: lat['99'] };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rows = [];
const cold = {};
for (const name of ['host', 'edge']) {
  const times = [];
  for (let i = 0; i < RUNS; i += 1) {
    const { child, ms } = await start(name);
    times.push(ms);
    await stop(child);
  }
  cold[name] = times;
}
const load = {};
for (const name of ['host', 'edge']) {
  const { child, url } = await start(name);
  load[name] = wrk(url);
  await stop(child);
}
rmSync(dir, { recursive: true, force: true });

rows.push('| | `granted serve` (wasmtime, SQLite, audit log on) | edge handler (Node ' + process.version + ', in-memory store) |');
rows.push('| --- | --- | --- |');
rows.push(`| cold start to the first \`client_credentials\` answer, first start (host: module not yet in its compiled cache) | ${cold.host[0].toFixed(0)} ms | ${cold.edge[0].toFixed(0)} ms |`);
rows.push(`| cold start, median of runs 2–${RUNS} (host: compiled module cached) | ${median(cold.host.slice(1)).toFixed(0)} ms | ${median(cold.edge.slice(1)).toFixed(0)} ms |`);
rows.push(`| \`client_credentials\` answers/s (wrk, 1 thread, ${connections} connections, ${seconds} s) | **${load.host.rps.toFixed(0)}** | **${load.edge.rps.toFixed(0)}** |`);
rows.push(`| latency p50 / p99 | ${load.host.p50} / ${load.host.p99} | ${load.edge.p50} / ${load.edge.p99} |`);
rows.push(`| non-2xx answers | ${load.host.non2xx} | ${load.edge.non2xx} |`);
const table = `${rows.join('\n')}\n\nmachine: ${cpus()[0]?.model ?? 'unknown'}, ${cpus().length} cores; wrk and the server share them.\n`;
console.log(table);
mkdirSync(join(root, 'bench/results'), { recursive: true });
writeFileSync(join(root, 'bench/results/edge.md'), `# cargo xtask bench edge\n\n${table}`);
