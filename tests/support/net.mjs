// Loopback helpers shared by the browser, edge and benchmark scripts.
import { createServer } from 'node:net';

/** A TCP port free on 127.0.0.1 now. */
export function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => ok(port)); });
    s.on('error', fail);
  });
}

/** Resolves once `url` answers at all (any status); fails after `ms`. */
export async function waitFor(url, ms = 60_000) {
  const started = Date.now();
  for (;;) {
    try { await fetch(url); return; } catch { /* not listening yet */ }
    if (Date.now() - started > ms) throw new Error(`${url} did not answer within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
