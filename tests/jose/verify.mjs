// Checks Granted access tokens with panva/jose (createRemoteJWKSet, jwtVerify), as a resource
// server would. Reads {"jwks_uri", "issuer", "audience", "tokens": [...]} as JSON on standard
// input; writes one JSON line per token: {"valid": true, "claims"} or {"valid": false, "error"}.
import { createRemoteJWKSet, jwtVerify } from 'jose';

const ALGORITHMS = ['ES256', 'EdDSA', 'RS256'];

let text = '';
for await (const chunk of process.stdin) text += chunk;
const job = JSON.parse(text);
// One key set per run: each run fetches the JWKS as it is now.
const jwks = createRemoteJWKSet(new URL(job.jwks_uri));
for (const token of job.tokens) {
  try {
    const { payload } = await jwtVerify(token, jwks, {
      issuer: job.issuer,
      audience: job.audience,
      algorithms: ALGORITHMS,
      typ: 'at+jwt',
      requiredClaims: ['exp', 'iat', 'sub', 'jti', 'client_id'],
    });
    console.log(JSON.stringify({ valid: true, claims: payload }));
  } catch (e) {
    console.log(JSON.stringify({ valid: false, error: `${e.code ?? e.name}: ${e.message}` }));
  }
}
