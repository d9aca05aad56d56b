//! The OpenAPI 3.1 document of the OAuth 2.0 and OpenID Connect endpoints, served at
//! `GET /openapi.json` (the admin API has its own, at `/admin/api/v1/openapi.json`).
//!
//! What a client sends and gets back is decided by the policy module; this document describes
//! it for people and tools. The operations below are descriptions only (the routes are in
//! [`super::router`]); `host/tests/oauth_openapi.rs` checks that every operation described is
//! served, that every route of the router is described, and that real answers carry the
//! properties the schemas name.

use serde::Serialize;
use utoipa::{IntoParams, OpenApi, ToSchema};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Granted OAuth 2.0 and OpenID Connect endpoints",
        description = "The token endpoint (RFC 6749: password, client_credentials, refresh_token, authorization_code with PKCE), the authorization endpoint and its pages, revocation (RFC 7009), introspection (RFC 7662), UserInfo (OpenID Connect Core §5.3), the metadata (RFC 8414, OpenID Connect Discovery) and the JWKS of each tenant. Every decision is the policy module's (RULES.md).",
        version = "1"
    ),
    paths(
        token,
        authorize_open,
        authorize_answer,
        revocation,
        introspection,
        userinfo_get,
        userinfo_post,
        metadata,
        metadata_rfc8414_path,
        openid_configuration,
        jwks
    ),
    modifiers(&BearerAuth),
    components(schemas(
        TokenForm,
        TokenAnswer,
        OAuthError,
        PageForm,
        ManageForm,
        Introspection,
        UserInfo
    ))
)]
pub struct OAuthApi;

/// The `bearer` scheme that UserInfo's `security` names: an access token from the token endpoint.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The document as served.
pub(crate) async fn document() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(OAuthApi::openapi())
}

/// A token request (RFC 6749 §4): the fields each grant uses. A confidential client
/// authenticates with HTTP Basic (`client_secret_basic`) or with `client_id` and
/// `client_secret` here (`client_secret_post`); a public client sends its `client_id` alone.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // a description
struct TokenForm {
    /// `password`, `client_credentials`, `refresh_token` or `authorization_code`.
    grant_type: String,
    client_id: Option<String>,
    client_secret: Option<String>,
    /// Space-separated scopes (`password`, `client_credentials`, `refresh_token`).
    scope: Option<String>,
    /// `password`: the user's name in the tenant.
    username: Option<String>,
    /// `password`: the user's password.
    password: Option<String>,
    /// `refresh_token`: the refresh token, which this request rotates.
    refresh_token: Option<String>,
    /// `authorization_code`: the code the authorization endpoint redirected with.
    code: Option<String>,
    /// `authorization_code`: the `redirect_uri` sent to the authorization endpoint, if one was.
    redirect_uri: Option<String>,
    /// `authorization_code`: the PKCE verifier (RFC 7636).
    code_verifier: Option<String>,
}

/// A successful token answer (RFC 6749 §5.1).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // a description
struct TokenAnswer {
    /// A JWT signed with the tenant's published key (its JWKS).
    access_token: String,
    /// `Bearer`.
    token_type: String,
    /// The access token's lifetime in seconds.
    expires_in: u32,
    /// The scopes granted, space-separated.
    scope: String,
    /// Issued by the `password`, `refresh_token` and `authorization_code` grants.
    refresh_token: Option<String>,
    /// The OpenID Connect ID token, when the scope holds `openid`.
    id_token: Option<String>,
}

/// An error answer (RFC 6749 §5.2).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // a description
struct OAuthError {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `unauthorized_client`,
    /// `unsupported_grant_type`, `invalid_scope`, `invalid_token`, `temporarily_unavailable`…
    error: String,
    /// What was wrong, for a person.
    error_description: String,
}

/// The parameters of an authorization request (RFC 6749 §4.1.1, RFC 7636, OpenID Connect).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // a description
struct AuthorizeQuery {
    /// `code`.
    response_type: String,
    client_id: String,
    /// One of the app's registered redirect URIs (a loopback one may differ in port only).
    redirect_uri: Option<String>,
    /// Space-separated; `openid` asks for an ID token.
    scope: Option<String>,
    /// Returned to the app unchanged.
    state: Option<String>,
    /// The PKCE challenge: BASE64URL(SHA-256(verifier)).
    code_challenge: String,
    /// `S256` (`plain` is refused).
    code_challenge_method: String,
    /// Carried into the ID token.
    nonce: Option<String>,
}

/// One of the pages' forms: sign-in, the change of an expired password, or consent. Each carries
/// the CSRF token of the transaction's cookie.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // a description
struct PageForm {
    /// The page's CSRF token.
    csrf: String,
    /// `sign_in`, `change_password` or `consent`.
    action: String,
    username: Option<String>,
    password: Option<String>,
    new_password: Option<String>,
    confirm_password: Option<String>,
    /// `consent`: `yes` or `no`.
    approve: Option<String>,
}

/// A revocation or introspection request (RFC 7009, RFC 7662), client-authenticated as at the
/// token endpoint.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // a description
struct ManageForm {
    /// An access token or a refresh token issued to this client.
    token: String,
    /// `access_token` or `refresh_token`.
    token_type_hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// An introspection answer (RFC 7662 §2.2): `{"active": false}` for anything that is not this
/// client's live token.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // a description
struct Introspection {
    active: bool,
    /// `Bearer` or `refresh_token`.
    token_type: Option<String>,
    client_id: Option<String>,
    sub: Option<String>,
    username: Option<String>,
    scope: Option<String>,
    iss: Option<String>,
    aud: Option<String>,
    iat: Option<i64>,
    exp: Option<i64>,
    jti: Option<String>,
}

/// The UserInfo answer (OpenID Connect Core §5.3).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // a description
struct UserInfo {
    /// The user's stable subject, as in the ID token.
    sub: String,
    preferred_username: String,
}

/// A token request.
#[utoipa::path(
    post,
    path = "/tenants/{tenant}/connect/token",
    params(("tenant" = String, Path, description = "The tenant's name")),
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Tokens (never cached)", body = TokenAnswer),
        (status = 400, description = "Refused (`invalid_request`, `invalid_grant`, …)", body = OAuthError),
        (status = 401, description = "Client authentication failed (`invalid_client`)", body = OAuthError),
        (status = 413, description = "A body over 64 KiB", body = OAuthError),
        (status = 429, description = "Too many failures from this client and source; `Retry-After`", body = OAuthError),
        (status = 503, description = "The store or the module is not answering; `Retry-After`", body = OAuthError)
    )
)]
#[allow(dead_code)]
fn token() {}

/// Opens an authorization request: its checks (C1–C8), then the sign-in page.
#[utoipa::path(
    get,
    path = "/tenants/{tenant}/connect/authorize",
    params(("tenant" = String, Path, description = "The tenant's name"), AuthorizeQuery),
    responses(
        (status = 200, description = "The sign-in page (HTML), with the transaction's cookie", content_type = "text/html"),
        (status = 303, description = "Back to the app's redirect URI with `error`, `state` and `iss` (a refusal from C4 on)"),
        (status = 400, description = "An error page: an unknown client or a redirect URI that is not registered is never redirected to", content_type = "text/html"),
        (status = 429, description = "Too many refusals from this source", content_type = "text/html")
    )
)]
#[allow(dead_code)]
fn authorize_open() {}

/// Answers one of the pages: sign-in, the change of an expired password, consent.
#[utoipa::path(
    post,
    path = "/tenants/{tenant}/connect/authorize",
    params(("tenant" = String, Path, description = "The tenant's name"), AuthorizeQuery),
    request_body(content = PageForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The next page (HTML)", content_type = "text/html"),
        (status = 303, description = "Back to the app's redirect URI with `code`, `state` and `iss` (RFC 9207), or with `error`"),
        (status = 400, description = "An error page", content_type = "text/html"),
        (status = 401, description = "The sign-in page again: one message for every failed sign-in", content_type = "text/html"),
        (status = 403, description = "No transaction cookie, or a CSRF token that does not match it: nothing is decided", content_type = "text/html"),
        (status = 429, description = "Too many refusals from this source", content_type = "text/html")
    )
)]
#[allow(dead_code)]
fn authorize_answer() {}

/// Revokes a token and its family (RFC 7009).
#[utoipa::path(
    post,
    path = "/tenants/{tenant}/connect/revocation",
    params(("tenant" = String, Path, description = "The tenant's name")),
    request_body(content = ManageForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or not this client's token (RFC 7009 §2.2: the same answer)"),
        (status = 400, description = "A malformed request", body = OAuthError),
        (status = 401, description = "Client authentication failed", body = OAuthError)
    )
)]
#[allow(dead_code)]
fn revocation() {}

/// Tells whether a token is live (RFC 7662).
#[utoipa::path(
    post,
    path = "/tenants/{tenant}/connect/introspect",
    params(("tenant" = String, Path, description = "The tenant's name")),
    request_body(content = ManageForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The token's state", body = Introspection),
        (status = 400, description = "A malformed request", body = OAuthError),
        (status = 401, description = "Client authentication failed", body = OAuthError)
    )
)]
#[allow(dead_code)]
fn introspection() {}

/// Who signed in, for a bearer access token whose scope holds `openid`.
#[utoipa::path(
    get,
    path = "/tenants/{tenant}/connect/userinfo",
    params(("tenant" = String, Path, description = "The tenant's name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user's claims", body = UserInfo),
        (status = 401, description = "No access token, or not a valid one (`WWW-Authenticate: Bearer`, with `invalid_token` or `invalid_request` when one was sent)"),
        (status = 403, description = "The token's scope lacks `openid` (`insufficient_scope`)", body = OAuthError)
    )
)]
#[allow(dead_code)]
fn userinfo_get() {}

/// The same as `GET`, for clients that post (OpenID Connect Core §5.3.1).
#[utoipa::path(
    post,
    path = "/tenants/{tenant}/connect/userinfo",
    params(("tenant" = String, Path, description = "The tenant's name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user's claims", body = UserInfo),
        (status = 401, description = "No access token, or not a valid one (`WWW-Authenticate: Bearer`)"),
        (status = 403, description = "The token's scope lacks `openid`", body = OAuthError)
    )
)]
#[allow(dead_code)]
fn userinfo_post() {}

/// The tenant's authorization-server metadata (RFC 8414).
#[utoipa::path(
    get,
    path = "/tenants/{tenant}/.well-known/oauth-authorization-server",
    params(("tenant" = String, Path, description = "The tenant's name")),
    responses(
        (status = 200, description = "The metadata (JSON)", content_type = "application/json"),
        (status = 404, description = "No such tenant", body = OAuthError)
    )
)]
#[allow(dead_code)]
fn metadata() {}

/// The same metadata at the path RFC 8414 §3.1 builds from the issuer.
#[utoipa::path(
    get,
    path = "/.well-known/oauth-authorization-server/tenants/{tenant}",
    params(("tenant" = String, Path, description = "The tenant's name")),
    responses(
        (status = 200, description = "The metadata (JSON)", content_type = "application/json"),
        (status = 404, description = "No such tenant", body = OAuthError)
    )
)]
#[allow(dead_code)]
fn metadata_rfc8414_path() {}

/// OpenID Connect Discovery 1.0.
#[utoipa::path(
    get,
    path = "/tenants/{tenant}/.well-known/openid-configuration",
    params(("tenant" = String, Path, description = "The tenant's name")),
    responses(
        (status = 200, description = "The configuration (JSON)", content_type = "application/json"),
        (status = 404, description = "No such tenant", body = OAuthError)
    )
)]
#[allow(dead_code)]
fn openid_configuration() {}

/// The public keys whose tokens may still be live, and a key about to sign (RFC 7517).
#[utoipa::path(
    get,
    path = "/tenants/{tenant}/.well-known/jwks.json",
    params(("tenant" = String, Path, description = "The tenant's name")),
    responses(
        (status = 200, description = "The JWK set (JSON), cacheable for at most half the key publication delay", content_type = "application/json"),
        (status = 404, description = "No such tenant", body = OAuthError)
    )
)]
#[allow(dead_code)]
fn jwks() {}
