//! A real OAuth 2.0 client library we did not write (the `oauth2` crate) against a running
//! `granted serve` (the binary, on the demo state):
//! the password grant with Basic and with body client authentication, client credentials,
//! refresh, introspection and revocation. Its HTTP transport is ureq, plugged in through the
//! crate's `SyncHttpClient` interface. The crate insists on an `https` revocation URL (RFC 7009
//! §2), so the revocation URL is given as `https://127.0.0.1:…` and this test transport, the only
//! thing that does, carries loopback `https` URLs over plain HTTP.

#![cfg(unix)]

mod common;

use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, ClientId, ClientSecret, IntrospectionUrl, ResourceOwnerPassword,
    ResourceOwnerUsername, RevocationUrl, Scope, StandardRevocableToken,
    TokenIntrospectionResponse, TokenResponse, TokenUrl,
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
