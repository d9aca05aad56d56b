//! A real OAuth 2.0 client library we did not write (the `oauth2` crate) against a running
//! `granted serve` (the binary, on the demo state):
//! the password grant with Basic and with body client authentication, client credentials,
//! refresh, introspection and revocation; and the authorization code flow with PKCE, signing in
//! through the server's pages with real form posts (the transaction cookie, the CSRF token read
//! from each page), then refresh. Its HTTP transport is ureq, plugged in through the
//! crate's `SyncHttpClient` interface. The crate insists on an `https` revocation URL (RFC 7009
//! §2), so the revocation URL is given as `https://127.0.0.1:…` and this test transport, the only
//! thing that does, carries loopback `https` URLs over plain HTTP.

#![cfg(unix)]

mod common;

use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IntrospectionUrl,
    PkceCodeChallenge, RedirectUrl, ResourceOwnerPassword, ResourceOwnerUsername, RevocationUrl,
    Scope, StandardRevocableToken, TokenIntrospectionResponse, TokenResponse, TokenUrl,
};
use std::time::Duration;

struct Ureq(ureq::Agent);

#[derive(Debug)]
struct TransportError(String);

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TransportError {}

impl oauth2::SyncHttpClient for Ureq {
    type Error = oauth2::HttpClientError<TransportError>;

    fn call(&self, request: oauth2::HttpRequest) -> Result<oauth2::HttpResponse, Self::Error> {
        let err = |e: ureq::Error| oauth2::HttpClientError::Other(e.to_string());
        let (parts, body) = request.into_parts();
        let uri = parts.uri.to_string();
        let uri = match uri.strip_prefix("https://127.0.0.1:") {
            Some(rest) => format!("http://127.0.0.1:{rest}"),
            None => uri,
        };
        let mut builder = self.0.post(uri);
        for (name, value) in &parts.headers {
            builder = builder.header(name.as_str(), value.to_str().unwrap_or_default());
        }
        let mut response = builder.send(&body[..]).map_err(err)?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_string();
        let bytes = response.body_mut().read_to_vec().map_err(err)?;
        oauth2::http::Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(bytes)
            .map_err(|e| oauth2::HttpClientError::Other(e.to_string()))
    }
}

fn http() -> Ureq {
    Ureq(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .into(),
    )
}

#[test]
fn the_oauth2_crate_gets_refreshes_introspects_and_revokes_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    common::import(&db);
    let mut served = common::serve(&db, &dir.path().join("serve.log"));
    let base = served.base.clone();
    let tenant = |t: &str, path: &str| format!("{base}/tenants/{t}/connect/{path}");
    let http = http();
    for auth in [AuthType::BasicAuth, AuthType::RequestBody] {
        let client = BasicClient::new(ClientId::new("crm-1".into()))
            .set_client_secret(ClientSecret::new("crm-1-secret".into()))
            .set_auth_type(auth)
            .set_token_uri(TokenUrl::new(tenant("acme", "token")).unwrap())
            .set_revocation_url(
                RevocationUrl::new(tenant("acme", "revocation").replace("http://", "https://"))
                    .unwrap(),
            )
            .set_introspection_url(IntrospectionUrl::new(tenant("acme", "introspect")).unwrap());
        let token = client
            .exchange_password(
                &ResourceOwnerUsername::new("alice".into()),
                &ResourceOwnerPassword::new("correct horse battery".into()),
            )
            .add_scope(Scope::new("read".into()))
            .request(&http)
            .expect("password grant");
        assert_eq!(
            token.scopes().map(|s| s[0].to_string()),
            Some("read".into())
        );
        let refresh = token.refresh_token().expect("a refresh token").clone();
        let refreshed = client
            .exchange_refresh_token(&refresh)
            .request(&http)
            .expect("refresh");
        let rotated = refreshed.refresh_token().expect("rotated").clone();
        assert_ne!(rotated.secret(), refresh.secret());
        let seen = client
            .introspect(refreshed.access_token())
            .request(&http)
            .expect("introspection");
        assert!(seen.active());
        assert_eq!(
            seen.client_id().map(|c| c.to_string()),
            Some("crm-1".into())
        );
        client
            .revoke_token(StandardRevocableToken::RefreshToken(rotated.clone()))
            .unwrap()
            .request(&http)
            .expect("revocation");
        let refused = client.exchange_refresh_token(&rotated).request(&http);
        assert!(refused.is_err(), "a revoked refresh token still worked");
    }
    let machine = BasicClient::new(ClientId::new("reports-2".into()))
        .set_client_secret(ClientSecret::new("reports-2-secret".into()))
        .set_token_uri(TokenUrl::new(tenant("globex", "token")).unwrap());
    let token = machine
        .exchange_client_credentials()
        .request(&http)
        .expect("client credentials");
    assert!(token.refresh_token().is_none());
    let child = &mut served.child;
    child.kill().unwrap();
    child.wait().unwrap();
}

const REDIRECT: &str = "http://127.0.0.1:8765/callback";

fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name}: {page}"))
        + marker.len();
    let end = page[start..].find('"').unwrap();
    page[start..start + end].to_string()
}

fn cookie_of(response: &ureq::http::Response<ureq::Body>) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("granted_authorize="))
        .map(|v| v.split(';').next().unwrap_or_default().to_string())
}

/// Signs in through the pages of `url` as a browser does and allows the app: the redirect.
fn sign_in_and_allow(url: &str, username: &str, password: &str) -> String {
    let mut response = common::redirectless_agent()
        .get(url)
        .call()
        .expect("the authorization URL");
    assert_eq!(response.status().as_u16(), 200);
    let mut cookie = cookie_of(&response).expect("a transaction cookie");
    let mut page = response.body_mut().read_to_string().unwrap();
    let post = |fields: &[(&str, &str)], page: &str, cookie: &str| {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("csrf", &hidden(page, "csrf"));
        for (k, v) in fields {
            form.append_pair(k, v);
        }
        common::redirectless_agent()
            .post(url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Cookie", format!("granted_authorize={cookie}"))
            .send(form.finish())
            .expect("a form post")
    };
    let mut answer = post(
        &[
            ("action", "sign_in"),
            ("username", username),
            ("password", password),
        ],
        &page,
        &cookie,
    );
    if answer.status().as_u16() == 200 {
        cookie = cookie_of(&answer).unwrap_or(cookie);
        page = answer.body_mut().read_to_string().unwrap();
        assert!(page.contains(r#"value="consent""#), "{page}");
        answer = post(&[("action", "consent"), ("approve", "yes")], &page, &cookie);
    }
    assert_eq!(answer.status().as_u16(), 303);
    answer
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("a redirect")
        .to_string()
}

#[test]
fn the_oauth2_crate_completes_the_code_flow_with_pkce_and_refreshes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db");
    common::import(&db);
    let served = common::serve(&db, &dir.path().join("serve.log"));
    let issuer = format!("{}/tenants/globex", served.base);
    let client = BasicClient::new(ClientId::new("notes-1".into()))
        .set_client_secret(ClientSecret::new("notes-1-secret".into()))
        .set_auth_uri(AuthUrl::new(format!("{issuer}/connect/authorize")).unwrap())
        .set_token_uri(TokenUrl::new(format!("{issuer}/connect/token")).unwrap())
        .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state) = client
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("openid".into()))
        .add_scope(Scope::new("read".into()))
        .set_pkce_challenge(challenge)
        .url();
    let location = sign_in_and_allow(url.as_str(), "bob", "tr0ub4dor&3");
    let back = oauth2::url::Url::parse(&location).expect("the redirect is a URL");
    let param = |name: &str| {
        back.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(param("state").as_deref(), Some(state.secret().as_str()));
    assert_eq!(param("iss").as_deref(), Some(issuer.as_str()));
    let http = common::redirectless_agent();
    let token = client
        .exchange_code(AuthorizationCode::new(param("code").expect("a code")))
        .set_pkce_verifier(verifier)
        .request(&Ureq(http.clone()))
        .expect("the code exchange");
    let scopes: Vec<String> = token
        .scopes()
        .map(|s| s.iter().map(|s| s.to_string()).collect())
        .unwrap_or_default();
    assert_eq!(scopes, ["openid", "read"]);
    let refresh = token.refresh_token().expect("a refresh token").clone();
    let refreshed = client
        .exchange_refresh_token(&refresh)
        .request(&Ureq(http))
        .expect("refresh");
    assert_ne!(
        refreshed.refresh_token().expect("rotated").secret(),
        refresh.secret()
    );
}
