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
 *  `lua` for scripted requests; answers/s and latency in ms. */
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
      ok({ rps: r.requests / (r.duration_us / 1e6), p50: r.p50 / 1000, p99: r.p99 / 1000, p999: r.p999 / 1000,
        requests: r.requests, errors: r.errors, non2xx: r.non2xx, connections });
    });
  });
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
