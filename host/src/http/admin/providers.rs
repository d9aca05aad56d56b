//! `/tenants/{tenant}/identity-provider`: a tenant's identity provider (RULES.md §6). Its client
//! secret is write-only: sealed under the master key when stored, never answered or audited.
//! A9 is the module's (`identity_provider`); a change names the version it is based on in
//! `If-Match`.

use super::{answer::*, auth::*, errors::*, input::*, module::*};
use crate::store::{Change, ChangeRecord, ProviderSecret};
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use granted_policy::model::{default_provider_scopes, default_username_claim, IdentityProvider};
use granted_policy::rules::identity_provider::ProviderCheck;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

/// A tenant's identity provider as the API shows it: everything but the client secret.
#[derive(Serialize, ToSchema)]
pub(crate) struct ProviderView {
    /// This server's `client_id` at the provider.
    client_id: String,
    /// A client secret is stored (it is never shown).
    has_client_secret: bool,
    /// The provider's issuer.
    issuer: String,
    /// A first sign-in may link to an existing `sso` user of that name.
    link_existing: bool,
    /// A first sign-in that matches no user creates an `sso` user.
    provision: bool,
    /// The scopes asked for.
    scopes: Vec<String>,
    /// The tenant.
    tenant: String,
    /// The ID token claim that names a user.
    username_claim: String,
    /// Its version (also the `ETag`).
    version: u32,
}

impl ProviderView {
    fn of(tenant: &str, provider: IdentityProvider, version: u32) -> ProviderView {
        ProviderView {
            client_id: provider.client_id,
            has_client_secret: true,
            issuer: provider.issuer,
            link_existing: provider.link_existing,
            provision: provider.provision,
            scopes: provider.scopes,
            tenant: tenant.to_string(),
            username_claim: provider.username_claim,
            version,
        }
    }
}

/// A tenant's identity provider, set or replaced.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutProvider {
    /// The provider's issuer: `https` (or `http` on a loopback host), without query or fragment.
    #[schema(example = "https://idp.acme.example")]
    issuer: String,
    /// This server's `client_id` at the provider.
    client_id: String,
    /// This server's client secret there: required when the tenant has no provider yet, kept
    /// when left out. Write-only.
    #[serde(default)]
    #[schema(write_only)]
    client_secret: Option<String>,
    /// The scopes asked for (must hold `openid`); `openid profile email` when absent.
    #[serde(default = "default_provider_scopes")]
    scopes: Vec<String>,
    /// The claim that names a user; `preferred_username` when absent.
    #[serde(default = "default_username_claim")]
    username_claim: String,
    /// A first sign-in may link to an existing `sso` user of that name.
    #[serde(default)]
    link_existing: bool,
    /// A first sign-in that matches no user creates an `sso` user.
    #[serde(default)]
    provision: bool,
}

/// What a removal answers.
#[derive(Serialize, ToSchema)]
pub(crate) struct ProviderRemoved {
    /// The tenant, which has no identity provider now.
    tenant: String,
}

/// What to check: an issuer (the form's, before saving); the tenant's stored one when absent.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckProvider {
    /// The issuer whose discovery document is fetched.
    #[serde(default)]
    issuer: Option<String>,
}

/// What the provider's discovery document says, or why it could not be read.
#[derive(Serialize, ToSchema)]
pub(crate) struct ProviderFound {
    /// The issuer checked.
    issuer: String,
    /// Whether the document was read and names this issuer with every endpoint the sign-in
    /// needs.
    ok: bool,
    /// Why not, as a stable code (`timeout`, `unreachable`, `issuer_mismatch`, …).
    problem: Option<String>,
    /// Why not, in words.
    message: Option<String>,
    /// What it found.
    #[schema(value_type = Option<Object>)]
    discovery: Option<crate::upstream::Discovery>,
}

/// The most bytes a client secret may have.
const MAX_SECRET_BYTES: usize = 1024;

#[utoipa::path(
    get,
    path = "/tenants/{tenant}/identity-provider",
    tag = "tenants",
    params(("tenant" = String, Path, description = "The tenant")),
    responses(
        (status = 200, description = "The tenant's identity provider, without its secret", body = ProviderView, headers(("etag" = String, description = "Its version, for `If-Match`"))),
        (status = 404, description = "No such tenant, or it has no identity provider", body = ErrorBody),
        CommonErrors
    )
)]
pub(crate) async fn get_identity_provider(
    admin: Admin,
    Path(tenant): Path<String>,
) -> ApiResult<ProviderView> {
    blocking(move || {
        let found = admin
            .server
            .store
            .identity_provider_and_version(&tenant)
            .map_err(|e| ApiError::unavailable("store", e))?;
        match found {
            Some((provider, version)) => {
                Ok(Answer::ok(ProviderView::of(&tenant, provider, version)).with_etag(version))
            }
            None => Err(ApiError::not_found(format!(
                "tenant `{tenant}` has no identity provider"
            ))),
        }
    })
    .await
}

#[utoipa::path(
    put,
    path = "/tenants/{tenant}/identity-provider",
    tag = "tenants",
    params(
        ("tenant" = String, Path, description = "The tenant"),
        ("If-Match" = Option<String>, Header, description = "The version this change is based on (the `ETag`); required when the tenant has a provider")
    ),
    request_body = PutProvider,
    responses(
        (status = 200, description = "Replaced", body = ProviderView, headers(("etag" = String, description = "Its version"))),
        (status = 201, description = "Set", body = ProviderView, headers(("etag" = String, description = "Its version"))),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 409, description = "The provider changed since the version named in `If-Match`", body = ErrorBody),
        (status = 422, description = "Refused by A9 (`invalid_identity_provider`), or no client secret for a new provider", body = ErrorBody),
        (status = 428, description = "`If-Match` is required to replace a provider", body = ErrorBody),
        CommonErrors, BodyErrors
    )
)]
pub(crate) async fn put_identity_provider(
    admin: Admin,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<ProviderView> {
    let put: PutProvider = body(&headers, &bytes)?;
    let based_on = if_match(&headers)?;
    if put
        .client_secret
        .as_ref()
        .is_some_and(|s| s.is_empty() || s.len() > MAX_SECRET_BYTES)
    {
        return Err(ApiError::invalid(
            "invalid_identity_provider",
            format!("`client_secret` must be 1 to {MAX_SECRET_BYTES} bytes"),
        ));
    }
    let provider = IdentityProvider {
        issuer: put.issuer,
        client_id: put.client_id,
        scopes: put.scopes,
        username_claim: put.username_claim,
        link_existing: put.link_existing,
        provision: put.provision,
    };
    blocking(move || {
        a9(&admin, &provider)?;
        change(&admin, |tx| {
            if tx.tenant(&tenant)?.is_none() {
                return Ok(Change::Refused(Err(ApiError::not_found(format!(
                    "no tenant `{tenant}`"
                )))));
            }
            let before = tx.identity_provider(&tenant)?;
            if let Err(refused) = precondition(&tenant, before.as_ref().map(|(_, v)| *v), based_on)
            {
                return Ok(Change::Refused(Err(refused)));
            }
            let secret = match (&put.client_secret, &before) {
                (Some(secret), _) => ProviderSecret::Clear(secret),
                (None, Some(_)) => ProviderSecret::Keep,
                (None, None) => {
                    return Ok(Change::Refused(Err(ApiError::invalid(
                        "invalid_identity_provider",
                        "a new identity provider needs this server's `client_secret` there",
                    ))))
                }
            };
            let version = tx.put_identity_provider(&tenant, &provider, secret)?;
            let view = ProviderView::of(&tenant, provider, version);
            let record = ChangeRecord {
                action: "set_identity_provider",
                target: json!({"tenant": tenant}),
                before: before.map_or(Value::Null, |(p, v)| {
                    serde_json::to_value(ProviderView::of(&tenant, p, v)).unwrap_or(Value::Null)
                }),
                after: serde_json::to_value(&view)?,
            };
            let status = if record.before.is_null() {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(Change::Made(
                Ok(Answer::new(status, view).with_etag(version)),
                record,
            ))
        })
    })
    .await
}

#[utoipa::path(
    delete,
    path = "/tenants/{tenant}/identity-provider",
    tag = "tenants",
    params(
        ("tenant" = String, Path, description = "The tenant"),
        ("If-Match" = String, Header, description = "The version being removed (the `ETag`)")
    ),
    responses(
        (status = 200, description = "Removed", body = ProviderRemoved),
        (status = 404, description = "No such tenant, or it has no identity provider", body = ErrorBody),
        (status = 409, description = "The provider changed since the version named in `If-Match`", body = ErrorBody),
        (status = 428, description = "`If-Match` is required", body = ErrorBody),
        CommonErrors
    )
)]
pub(crate) async fn delete_identity_provider(
    admin: Admin,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> ApiResult<ProviderRemoved> {
    let based_on = if_match(&headers)?;
    blocking(move || {
        change(&admin, |tx| {
            let Some((provider, version)) = tx.identity_provider(&tenant)? else {
                return Ok(Change::Refused(Err(ApiError::not_found(format!(
                    "tenant `{tenant}` has no identity provider"
                )))));
            };
            if let Err(refused) = precondition(&tenant, Some(version), based_on) {
                return Ok(Change::Refused(Err(refused)));
            }
            tx.delete_identity_provider(&tenant)?;
            let record = ChangeRecord {
                action: "delete_identity_provider",
                target: json!({"tenant": tenant}),
                before: serde_json::to_value(ProviderView::of(&tenant, provider, version))?,
                after: Value::Null,
            };
            Ok(Change::Made(
                Ok(Answer::ok(ProviderRemoved {
                    tenant: tenant.clone(),
                })),
                record,
            ))
        })
    })
    .await
}

#[utoipa::path(
    post,
    path = "/tenants/{tenant}/identity-provider/check",
    tag = "tenants",
    params(("tenant" = String, Path, description = "The tenant")),
    request_body = CheckProvider,
    responses(
        (status = 200, description = "What the provider's discovery document says, or why it could not be read (a provider that is down is a finding, not an error of this API)", body = ProviderFound),
        (status = 404, description = "No such tenant, or no issuer given and none stored", body = ErrorBody),
        (status = 422, description = "The issuer is refused by A9 (nothing is fetched)", body = ErrorBody),
        CommonErrors, BodyErrors
    )
)]
pub(crate) async fn check_identity_provider(
    admin: Admin,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult<ProviderFound> {
    let check: CheckProvider = body(&headers, &bytes)?;
    blocking(move || {
        let store = &admin.server.store;
        if store
            .tenant(&tenant)
            .map_err(|e| ApiError::unavailable("store", e))?
            .is_none()
        {
            return Err(ApiError::not_found(format!("no tenant `{tenant}`")));
        }
        let issuer = match check.issuer {
            Some(issuer) => issuer,
            None => store
                .identity_provider(&tenant)
                .map_err(|e| ApiError::unavailable("store", e))?
                .map(|p| p.issuer)
                .ok_or_else(|| {
                    ApiError::not_found(format!(
                        "tenant `{tenant}` has no identity provider: give an `issuer` to check"
                    ))
                })?,
        };
        // Only an issuer A9 accepts is fetched (https, or http on a loopback host).
        let probe = IdentityProvider {
            issuer: issuer.clone(),
            client_id: "check".into(),
            scopes: default_provider_scopes(),
            username_claim: default_username_claim(),
            link_existing: false,
            provision: false,
        };
        a9(&admin, &probe)?;
        let found = match admin.server.upstream.discover(&issuer) {
            Ok(discovery) => ProviderFound {
                issuer,
                ok: true,
                problem: None,
                message: None,
                discovery: Some(discovery),
            },
            Err(e) => ProviderFound {
                issuer,
                ok: false,
                problem: Some(e.code().to_string()),
                message: Some(e.to_string()),
                discovery: None,
            },
        };
        Ok(Answer::ok(found))
    })
    .await
}

/// A9, as the module judges it: a refusal is a 422 with the module's words.
fn a9(admin: &Admin, provider: &IdentityProvider) -> Result<(), ApiError> {
    let out = module(
        &admin.server,
        "identity_provider",
        &json!({"provider": provider}),
    )?;
    let checked: ProviderCheck = serde_json::from_value(out).map_err(|e| {
        ApiError::unavailable(
            "policy module",
            format!("an A9 answer that does not parse: {e}"),
        )
    })?;
    if checked.accepted {
        return Ok(());
    }
    Err(
        ApiError::invalid("invalid_identity_provider", checked.explanation)
            .with(json!({"rule": "A9"})),
    )
}

/// `If-Match` against the stored version: required when there is one, equal to it.
fn precondition(tenant: &str, stored: Option<u32>, based_on: Option<u32>) -> Result<(), ApiError> {
    match (stored, based_on) {
        (None, None) => Ok(()),
        (Some(_), None) => Err(ApiError::new(
            StatusCode::PRECONDITION_REQUIRED,
            "if_match_required",
            format!("`{tenant}` has an identity provider: name its version in `If-Match` (its `ETag`)"),
        )),
        (stored, Some(asked)) if stored == Some(asked) => Ok(()),
        (stored, Some(asked)) => Err(ApiError::conflict(
            "edit_conflict",
            match stored {
                Some(v) => format!("the identity provider changed since version {asked}: it is at version {v}; review it and try again"),
                None => format!("`{tenant}` has no identity provider at version {asked}"),
            },
        )
        .with(json!({"version": stored}))),
    }
}
