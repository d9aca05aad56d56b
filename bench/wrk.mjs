// What the benchmark scripts share: wrk runs (answers/s and latency from wrk's own summary),
// the Lua script of refresh-token chains, and a process's peak resident memory.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const FORM = 'application/x-www-form-urlencoded';
export const basic = (id, secret) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;

/** The peak resident memory of a process (`VmHWM`), in MiB; NaN once it is gone. */
export function peakRssMiB(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
  } catch { return NaN; }
}

const DONE = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH {\\"requests\\":%d,\\"duration_us\\":%d,\\"errors\\":%d,\\"non2xx\\":%d,\\"p50\\":%d,\\"p99\\":%d,\\"p999\\":%d}\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
`;

export function luaString(text) {
  return JSON.stringify(text);
}

/** A wrk run of `seconds` (its script written in `dir`): a fixed POST of `body` with `auth`, or
 *  `lua` for scripted requests; answers/s and latency in ms. `rps` counts the successful
 *  answers only (2xx and 3xx, as wrk counts them): a run that fails requests is not faster for
 *  it; `non2xx` and `errors` say how many failed. */
export function runWrk(url, connections, { body, auth, lua, seconds, dir, threads }) {
  const script = join(dir, `run-${Math.random().toString(36).slice(2)}.lua`);
  const fixed = `wrk.method = "POST"\nwrk.body = ${luaString(body ?? '')}\nwrk.headers["Content-Type"] = "${FORM}"\nwrk.headers["Authorization"] = ${luaString(auth ?? '')}\n`;
  writeFileSync(script, (lua ?? fixed) + DONE);
  const t = threads ?? Math.min(2, connections);
  return new Promise((ok, fail) => {
    const child = spawn('wrk', [`-t${t}`, `-c${connections}`, `-d${seconds}s`, '--timeout', '30s', '-s', script, url]);
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.on('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('BENCH '));
      if (code !== 0 || !line) return fail(new Error(`wrk failed: ${out}`));
      const r = JSON.parse(line.slice(6));
      ok({ rps: (r.requests - r.non2xx) / (r.duration_us / 1e6), p50: r.p50 / 1000, p99: r.p99 / 1000, p999: r.p999 / 1000,
        requests: r.requests, errors: r.errors, non2xx: r.non2xx, connections });
    });
  });
}

/** Refresh-token chains under wrk: one connection per token in `tokens`, each on its own
 *  thread (the script keeps one token per thread: two connections on one thread would send
 *  the same token, and all but the first would be refused as reuse). */
export function runChains(url, tokens, auth, { seconds, dir }) {
  const path = new URL(url).pathname;
  return runWrk(url, tokens.length, { lua: chainLua(tokens, path, auth), threads: tokens.length, seconds, dir });
}

/** A Lua script for refresh-token chains: each thread holds its own token (one connection
 *  each), authenticated with `auth`, and sends the one each answer rotates to. */
export function chainLua(tokens, path, auth) {
  return `local tokens = {${tokens.map(luaString).join(',')}}
local next_index = 1
setup = function(thread)
  thread:set("token", tokens[next_index])
  next_index = next_index + 1
end
request = function()
  return wrk.format("POST", ${luaString(path)}, {["Content-Type"] = "${FORM}", ["Authorization"] = ${luaString(auth)}},
    "grant_type=refresh_token&refresh_token=" .. token)
end
response = function(status, headers, body)
  local t = body:match('"refresh_token":"([^"]+)"')
  if t then token = t end
end
`;
}

/** Cores busy while `f` runs, from `/proc/stat` (every process: servers, database, proxy,
 *  load generator), with what `f` answers: `{ out, busy }`. `busy` is NaN off Linux. */
export async function busyCores(f) {
  const sample = () => {
    try {
      const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
      // user nice system idle iowait irq softirq steal: idle and iowait are not busy.
      const total = cpu.slice(0, 8).reduce((a, b) => a + b, 0);
      return { busy: total - cpu[3] - cpu[4], at: process.hrtime.bigint() };
    } catch { return null; }
  };
  const before = sample();
  const out = await f();
  const after = sample();
  if (!before || !after) return { out, busy: NaN };
  const seconds = Number(after.at - before.at) / 1e9;
  // USER_HZ is 100 on Linux.
  return { out, busy: (after.busy - before.busy) / 100 / seconds };
}

/** The first line `child` prints (where it listens); fails if it exits before. */
export const firstLine = (child, name) => new Promise((ok, fail) => {
  let out = '';
  child.stdout.on('data', (d) => { out += d; if (out.includes('\n')) ok(out.split('\n')[0].trim()); });
  child.once('exit', (code) => fail(new Error(`${name} exited with ${code}`)));
});

/** Several wrk runs at once, one per host: answers/s summed, latencies the worst of them. */
export const together = (runs) => ({
  rps: runs.reduce((a, r) => a + r.rps, 0),
  p50: Math.max(...runs.map((r) => r.p50)),
  p99: Math.max(...runs.map((r) => r.p99)),
  p999: Math.max(...runs.map((r) => r.p999)),
  errors: runs.reduce((a, r) => a + r.errors, 0),
  non2xx: runs.reduce((a, r) => a + r.non2xx, 0),
  connections: runs.map((r) => r.connections).join(' + '),
});
