#!/usr/bin/env node
// Runs the edge handler on Node 20 behind a tiny adapter from node:http to Request/Response:
//   node www/edge/serve.mjs --snapshot FILE --secrets FILE --listen 127.0.0.1:PORT
//     [--issuer URL] [--kdf-iterations N] [--fixed-now RFC3339] [--audit-log FILE]
//     [--decisions-log FILE] (tests: each decision's audit record and effects, a JSON line each)
// The store is the in-memory one, loaded from the snapshot.

import { createServer } from 'node:http';
import { readFileSync, appendFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import handler, { ready, MAX_BODY } from './handler.mjs';
import { MemoryStore } from './memory-store.mjs';

const here = dirname(fileURLToPath(import.meta.url));

function args(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 1) {
    const name = argv[i];
    if (!name.startsWith('--')) throw new Error(`unexpected argument ${name}`);
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`${name} needs a value`);
    out[name.slice(2)] = value;
    i += 1;
  }
  return out;
}

async function main() {
  const opts = args(process.argv.slice(2));
  for (const required of ['snapshot', 'listen']) {
    if (!opts[required]) throw new Error(`--${required} is required (usage: serve.mjs --snapshot FILE --secrets FILE --listen HOST:PORT)`);
  }
  const snapshot = JSON.parse(readFileSync(opts.snapshot, 'utf8'));
  const secrets = opts.secrets ? JSON.parse(readFileSync(opts.secrets, 'utf8')) : {};
  const [host, port] = opts.listen.split(/:(?=\d+$)/);
  const env = {
    ...process.env,
    ...Object.fromEntries(Object.entries(secrets).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)])),
    GRANTED_STORE: new MemoryStore(snapshot),
    GRANTED_WASM: readFileSync(join(here, '../pkg/granted_policy_bg.wasm')),
  };
  if (opts.issuer) env.GRANTED_ISSUER = opts.issuer;
  env.GRANTED_ISSUER ??= `http://${opts.listen}`;
  if (opts['kdf-iterations']) env.GRANTED_KDF_ITERATIONS = opts['kdf-iterations'];
  if (opts['fixed-now']) env.GRANTED_FIXED_NOW = opts['fixed-now'];
  if (opts['audit-log']) {
    const file = opts['audit-log'];
    env.GRANTED_AUDIT = (entry) => appendFileSync(file, `${JSON.stringify(entry)}\n`);
  }
  if (opts['decisions-log']) {
    const file = opts['decisions-log'];
    env.GRANTED_RECORD_DECISION = (decision) => appendFileSync(file, `${JSON.stringify(decision)}\n`);
  }
  if (!env.GRANTED_SIGNING_KEY || !env.GRANTED_CLIENT_SECRET_KEY) {
    throw new Error('no keys: give --secrets FILE (written by `granted export --edge FILE --edge-secrets FILE`), or set GRANTED_SIGNING_KEY and GRANTED_CLIENT_SECRET_KEY');
  }
  // Refused at start, not at the first request: a store without atomic operations, missing keys.
  const started = performance.now();
  await ready(env);
  const server = createServer(async (req, res) => {
    try {
      const chunks = [];
      let size = 0;
      for await (const chunk of req) {
        size += chunk.length;
        if (size > MAX_BODY + 1) break;
        chunks.push(chunk);
      }
      const headers = new Headers();
      for (let i = 0; i < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i], req.rawHeaders[i + 1]);
      const method = req.method ?? 'GET';
      const request = new Request(`http://${req.headers.host ?? opts.listen}${req.url}`, {
        method,
        headers,
        body: method === 'GET' || method === 'HEAD' ? undefined : Buffer.concat(chunks),
      });
      const response = await handler.fetch(request, env, {});
      const bytes = Buffer.from(await response.arrayBuffer());
      res.writeHead(response.status, { ...Object.fromEntries(response.headers), 'Content-Length': bytes.length });
      res.end(bytes);
    } catch (e) {
      console.error(`granted edge: ${e.message}`);
      res.writeHead(503, { 'Content-Type': 'application/json', 'Retry-After': '1' });
      res.end(JSON.stringify({ error: 'temporarily_unavailable', error_description: 'the edge adapter failed' }));
    }
  });
  server.listen(Number(port), host, () => {
    console.error(`granted edge: listening on http://${opts.listen} (ready in ${(performance.now() - started).toFixed(1)} ms)`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e) => {
  console.error(`granted edge: ${e.message}`);
  process.exit(2);
});
