"""The authorization code flow with PKCE, driven by Authlib's OAuth2Session (a client we did not
write), against a running `granted serve`: the authorization URL with its S256 challenge, the
sign-in and consent pages posted as a browser without JavaScript posts them (requests' cookie jar,
the CSRF token read from each page), the code exchanged, then refreshed. The ID token is checked
by PyJWT against the tenant's JWKS (signature, iss, aud, exp) and must carry the nonce.

Reads {"base", "tenant", "client_id", "client_secret", "redirect_uri", "username", "password",
"scope"} as JSON on standard input; writes one JSON object: what it saw, or {"error": ...}.
"""

import json
import re
import sys
from urllib.parse import parse_qs, urlsplit

import jwt
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session


def hidden(page, name):
    m = re.search(r'name="%s" value="([^"]*)"' % re.escape(name), page)
    if not m:
        raise RuntimeError(f"no {name} field on the page: {page[:400]}")
    return m.group(1)


def main():
    job = json.load(sys.stdin)
    issuer = f"{job['base']}/tenants/{job['tenant']}"
    discovery = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=30).json()
    client = OAuth2Session(
        job["client_id"],
        job["client_secret"],
        scope=job["scope"],
        redirect_uri=job["redirect_uri"],
        code_challenge_method="S256",
    )
    verifier = generate_token(64)
    nonce = generate_token(20)
    url, state = client.create_authorization_url(
        discovery["authorization_endpoint"], code_verifier=verifier, nonce=nonce
    )
    browser = requests.Session()
    page = browser.get(url, timeout=30, allow_redirects=False)
    if page.status_code != 200:
        raise RuntimeError(f"the authorization URL answered {page.status_code}: {page.text[:300]}")
    answer = browser.post(
        url,
        data={
            "csrf": hidden(page.text, "csrf"),
            "action": "sign_in",
            "username": job["username"],
            "password": job["password"],
        },
        timeout=60,
        allow_redirects=False,
    )
    pages = ["sign_in"]
    if answer.status_code == 200 and 'value="consent"' in answer.text:
        pages.append("consent")
        answer = browser.post(
            url,
            data={"csrf": hidden(answer.text, "csrf"), "action": "consent", "approve": "yes"},
            timeout=30,
            allow_redirects=False,
        )
    if answer.status_code != 303:
        raise RuntimeError(f"expected the redirect, got {answer.status_code}: {answer.text[:300]}")
    location = answer.headers["Location"]
    back = parse_qs(urlsplit(location).query)
    if back.get("state") != [state] or back.get("iss") != [issuer]:
        raise RuntimeError(f"the redirect lacks state or iss: {location}")
    token = client.fetch_token(
        discovery["token_endpoint"],
        authorization_response=location,
        code_verifier=verifier,
    )
    jwks = jwt.PyJWKClient(discovery["jwks_uri"], cache_jwk_set=False, cache_keys=False)
    id_token = token["id_token"]
    claims = jwt.decode(
        id_token,
        jwks.get_signing_key_from_jwt(id_token).key,
        algorithms=discovery["id_token_signing_alg_values_supported"],
        audience=job["client_id"],
        issuer=issuer,
        options={"require": ["exp", "iat", "iss", "aud", "sub", "auth_time"]},
    )
    if claims.get("nonce") != nonce:
        raise RuntimeError(f"the id_token's nonce is {claims.get('nonce')!r}, not the one sent")
    userinfo = client.get(discovery["userinfo_endpoint"], timeout=30).json()
    refreshed = client.refresh_token(discovery["token_endpoint"])
    print(
        json.dumps(
            {
                "pages": pages,
                "scope": token["scope"],
                "id_token_claims": claims,
                "userinfo": userinfo,
                "refreshed": refreshed["refresh_token"] != token["refresh_token"],
            }
        )
    )


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the test prints what went wrong
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        sys.exit(1)
