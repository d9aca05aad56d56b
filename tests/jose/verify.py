"""Checks Granted access tokens with PyJWT (PyJWKClient), as a resource server would.

Reads {"jwks_uri", "issuer", "audience", "tokens": [...]} as JSON on standard input; writes one
JSON line per token: {"valid": true, "claims": {...}} or {"valid": false, "error": "..."}.
"""

import json
import sys

import jwt

ALGORITHMS = ["ES256", "EdDSA", "RS256"]


def main():
    job = json.load(sys.stdin)
    # A fresh client per run, with no cache of its own: each run sees the JWKS as it is now.
    client = jwt.PyJWKClient(job["jwks_uri"], cache_jwk_set=False, cache_keys=False)
    for token in job["tokens"]:
        try:
            if jwt.get_unverified_header(token).get("typ") != "at+jwt":
                raise jwt.InvalidTokenError("not an RFC 9068 access token (typ)")
            key = client.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=job["audience"],
                issuer=job["issuer"],
                options={"require": ["exp", "iat", "iss", "aud", "sub", "jti", "client_id"]},
            )
            print(json.dumps({"valid": True, "claims": claims}))
        except jwt.PyJWTError as e:
            print(json.dumps({"valid": False, "error": f"{type(e).__name__}: {e}"}))


if __name__ == "__main__":
    main()
