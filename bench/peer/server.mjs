// The peer of `cargo xtask bench`: @node-oauth/oauth2-server on Node with an in-memory model
// holding the demo state's clients and users, passwords as PBKDF2-HMAC-SHA256 at the same
// iterations through Node's crypto.pbkdf2, client secrets compared in constant time. The same
// grants: password, client_credentials, refresh_token (rotating).
//
//   node bench/peer/server.mjs --listen 127.0.0.1:PORT [--iterations 600000]

import { createServer } from 'node:http';
import { pbkdf2, randomBytes, timingSafeEqual, createHash } from 'node:crypto';
import { promisify } from 'node:util';
import OAuth2Server from '@node-oauth/oauth2-server';

const derive = promisify(pbkdf2);
const opts = Object.fromEntries(process.argv.slice(2).reduce((pairs, arg, i, all) => (
  arg.startsWith('--') ? [...pairs, [arg.slice(2), all[i + 1]]] : pairs), []));
const iterations = Number(opts.iterations ?? 600000);
const [host, port] = (opts.listen ?? '127.0.0.1:8091').split(/:(?=\d+$)/);

const sha = (text) => createHash('sha256').update(text).digest();
const CLIENTS = [
  { id: 'crm-1', secret: 'crm-1-secret', grants: ['password', 'refresh_token'] },
  { id: 'reports-1', secret: 'reports-1-secret', grants: ['password', 'refresh_token'] },
  { id: 'sync-1', secret: 'sync-1-secret', grants: ['client_credentials'] },
].map((c) => ({ ...c, secretHash: sha(c.secret) }));
const SALT = Buffer.from('granted-peer-salt');
const USERS = new Map();
for (const [username, password] of [['alice', 'correct horse battery'], ['bob', 'tr0ub4dor&3']]) {
  USERS.set(username, { username, hash: await derive(password, SALT, iterations, 32, 'sha256') });
}
const accessTokens = new Map();
const refreshTokens = new Map();

const model = {
  async getClient(clientId, clientSecret) {
    const client = CLIENTS.find((c) => c.id === clientId);
    if (!client) return null;
    if (clientSecret !== null && clientSecret !== undefined && !timingSafeEqual(sha(clientSecret), client.secretHash)) return null;
    return { id: client.id, grants: client.grants, redirectUris: [] };
  },
  async getUser(username, password) {
    const user = USERS.get(username);
    // The same KDF work for unknown users.
    const derived = await derive(password, SALT, iterations, 32, 'sha256');
    if (!user || !timingSafeEqual(derived, user.hash)) return null;
    return { id: user.username };
  },
  async getUserFromClient(client) {
    return { id: client.id };
  },
  async saveToken(token, client, user) {
    const saved = { ...token, client, user };
    accessTokens.set(token.accessToken, saved);
    if (token.refreshToken) refreshTokens.set(token.refreshToken, saved);
    return saved;
  },
  async getAccessToken(accessToken) {
    return accessTokens.get(accessToken) ?? null;
  },
  async getRefreshToken(refreshToken) {
    return refreshTokens.get(refreshToken) ?? null;
  },
  async revokeToken(token) {
    return refreshTokens.delete(token.refreshToken);
  },
  async generateAccessToken() {
    return randomBytes(32).toString('base64url');
  },
  async generateRefreshToken() {
    return randomBytes(32).toString('base64url');
  },
};

const oauth = new OAuth2Server({ model, accessTokenLifetime: 3600, refreshTokenLifetime: 30 * 24 * 3600 });

createServer(async (req, res) => {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const body = Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString('utf8')));
  const request = new OAuth2Server.Request({ method: req.method, headers: req.headers, query: {}, body });
  const response = new OAuth2Server.Response({ headers: {} });
  try {
    await oauth.token(request, response);
    res.writeHead(response.status, { ...response.headers, 'Content-Type': 'application/json' });
    res.end(JSON.stringify(response.body));
  } catch (e) {
    res.writeHead(e.code ?? 500, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
    res.end(JSON.stringify({ error: e.name, error_description: e.message }));
  }
}).listen(Number(port), host, () => console.error(`peer: listening on http://${host}:${port}`));
