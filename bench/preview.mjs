// The admin page's preview in headless Chromium: one edit of an app installed by 10,000 tenants,
// through the module's JSON face (`callJson`, what the page uses), beside the baseline any preview
// must pay in the same run (a JSON copy of the same input). Writes bench/results/preview.md.
//
//   node bench/preview.mjs [--chromium /usr/bin/chromium] [--runs 31]
//
// Goal: the preview answers within 20 ms. Statistic: the median of the runs (one run = one
// `callJson('preview', …)` call, timed with performance.now() in the page).

import { createServer } from 'node:http';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join, resolve, extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { cpus, loadavg } from 'node:os';
import { createHash } from 'node:crypto';
import { bigAppPreviewInput, BIG_APP_TENANTS } from '../tests/support/big-app-preview.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const executablePath = opt('chromium', '/usr/bin/chromium');
const RUNS = Number(opt('runs', '31'));
if (!Number.isInteger(RUNS) || RUNS < 1) throw new Error(`--runs must be a positive whole number, not ${opt('runs')}`);
const GOAL_MS = 20;
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run'];

// playwright-core from the browser tests' lockfile (cargo xtask bench installs it).
const require = createRequire(join(root, 'tests/browser/package.json'));
const { chromium } = require('playwright-core');

const pkg = join(root, 'www/pkg');
if (!existsSync(join(pkg, 'granted_policy_bg.wasm'))) throw new Error('no www/pkg: run cargo xtask wasm');
// The module measured, named by its digest as in results/policy.md.
const moduleSha256 = createHash('sha256').update(readFileSync(join(pkg, 'granted_policy_bg.wasm'))).digest('hex');
// Other work on the machine shows in the numbers; the load average at the start says how much.
const loadAtStart = loadavg()[0];
const types = { '.js': 'text/javascript', '.wasm': 'application/wasm', '.html': 'text/html' };
const server = createServer((req, res) => {
  const name = req.url === '/' ? null : req.url.replace(/^\/pkg\//, '');
  if (!name) {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>preview bench</title>');
    return;
  }
  const file = join(pkg, name);
  if (!file.startsWith(pkg) || !existsSync(file)) { res.writeHead(404); res.end(); return; }
  res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream' });
  res.end(readFileSync(file));
});
await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
const base = `http://127.0.0.1:${server.address().port}`;

const browser = await chromium.launch({ executablePath, args: FLAGS, headless: true });
let result;
try {
  const page = await (await browser.newContext()).newPage();
  await page.goto(`${base}/`);
  result = await page.evaluate(async ({ runs, input }) => {
    const m = await import('/pkg/granted_policy.js');
    // The glue has no default module path (xtask builds it with wasm-bindgen's library API,
    // which leaves out `new URL('granted_policy_bg.wasm', import.meta.url)`), so a bare
    // `m.default()` hands `undefined` to WebAssembly.instantiate. Load the bytes and pass them,
    // as the admin page does (www/admin/app.js).
    const response = await fetch('/pkg/granted_policy_bg.wasm');
    if (!response.ok) throw new Error(`could not fetch the policy module: ${response.status}`);
    await m.default({ module_or_path: await response.arrayBuffer() });
    // The median: the middle run, or the mean of the two middle runs when their number is even.
    const median = (xs) => {
      const s = [...xs].sort((a, b) => a - b);
      const mid = Math.floor(s.length / 2);
      return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
    };
    const preview = [];
    const copy = [];
    let losing = 0;
    // In turns, so that both see the same machine.
    for (let i = 0; i < runs; i += 1) {
      let t = performance.now();
      const out = JSON.parse(m.callJson('preview', JSON.stringify(input))).ok;
      preview.push(performance.now() - t);
      losing = out.tenants_losing_password_on_update.length;
      t = performance.now();
      JSON.parse(JSON.stringify(input));
      copy.push(performance.now() - t);
    }
    return { preview: median(preview), min: Math.min(...preview), max: Math.max(...preview), copy: median(copy), losing };
  }, { runs: RUNS, input: bigAppPreviewInput() });
} finally {
  await browser.close();
  server.close();
}
if (result.losing !== BIG_APP_TENANTS) {
  throw new Error(`the preview lost track: ${result.losing} tenants losing the grant, not ${BIG_APP_TENANTS}`);
}

const met = result.preview <= GOAL_MS;
const f = (x) => `${x.toFixed(1)} ms`;
const report = `# cargo xtask bench: the admin page's preview in Chromium

One edit (\`grant_type\` → \`client_credentials\`) of an app installed by 10,000 tenants, previewed
in headless Chromium through \`callJson('preview', …)\`, the module's JSON face that the page uses.
${RUNS} runs, each beside a JSON copy of the same input (what any preview pays to cross into the
module and back).

policy module sha256: \`${moduleSha256}\`

| measure | median | min | max |
| --- | --- | --- | --- |
| preview (\`callJson\`) | **${f(result.preview)}** | ${f(result.min)} | ${f(result.max)} |
| baseline: JSON copy of the input | ${f(result.copy)} | | |

## Goal

| goal | statistic | measured | met |
| --- | --- | --- | --- |
| preview of 10,000 tenants ≤ ${GOAL_MS} ms | median of ${RUNS} runs | ${f(result.preview)} | ${met ? 'yes' : '**no**'} |

machine: ${cpus()[0]?.model ?? 'unknown'}, ${cpus().length} cores; load average (1 min) at the start: ${loadAtStart.toFixed(2)}.
command: \`node bench/preview.mjs ${args.join(' ')}\`.
`;
console.log(report);
writeFileSync(join(root, 'bench/results/preview.md'), report);
