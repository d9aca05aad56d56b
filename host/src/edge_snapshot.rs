//! `granted export --edge`: the edge handler's snapshot of the store (every record as the policy
//! module reads it, no secret in clear) and, apart, the keys it signs and verifies with.

use crate::store::Store;
use anyhow::{anyhow, Result};
use granted_policy::model::Timestamp;

/// The format of `granted export --edge`.
pub const EDGE_SNAPSHOT_FORMAT: &str = "granted-edge-snapshot/1";

/// A snapshot for the edge handler: every record as the policy module reads it (tenants with
/// installs, clients with their app's history and secret HMAC, users with password hashes and
/// locks, refresh-token records by SHA-256), and no secret in clear.
pub fn export_edge(
    store: &Store,
    now: Timestamp,
    policy_sha256: &str,
) -> Result<serde_json::Value> {
    use serde_json::{json, Map, Value};
    let mut clients = Map::new();
    for (app, ids) in store.apps()? {
        for (client_id, secret_hmac) in ids {
            clients.insert(
                client_id.clone(),
                json!({"client_id": client_id, "secret_hmac": secret_hmac, "app": app}),
            );
        }
    }
    let (mut tenants, mut users, mut refresh) = (Map::new(), Map::new(), Map::new());
    for (tenant, tenant_users, tokens) in store.tenants()? {
        let mut by_name = Map::new();
        for user in tenant_users {
            by_name.insert(user.username.clone(), json!(user));
        }
        users.insert(tenant.tenant.clone(), Value::Object(by_name));
        for token in tokens {
            refresh.insert(token.token_sha256.clone(), json!(token));
        }
        tenants.insert(tenant.tenant.clone(), json!(tenant));
    }
    Ok(json!({
        "format": EDGE_SNAPSHOT_FORMAT,
        "exported_at": now,
        "policy_sha256": policy_sha256,
        "tenants": tenants,
        "clients": clients,
        "users": users,
        "refresh_tokens": refresh,
    }))
}

/// The keys the edge handler takes from its environment, as JWKs (the form WebCrypto's
/// `importKey` takes): the signing key current at `now` with its private half, every key that
/// still verifies (public halves; an HS256 key is its secret), and the client-secret key.
pub fn edge_secrets(store: &Store, now: Timestamp) -> Result<serde_json::Value> {
    use crate::signing::ServerKey;
    use serde_json::json;
    let (signing, client_secret_key) = store.current_keys(now)?.ok_or_else(|| {
        anyhow!("the database has no server keys yet: start `granted serve` once")
    })?;
    let signing = ServerKey::open(&signing.kid, signing.alg, &signing.secret)?;
    let mut verification = Vec::new();
    for key in store.verification_keys(now)? {
        let key = ServerKey::open(&key.kid, key.alg, &key.secret)?;
        verification.push(match key.public_jwk() {
            Some(public) => public,
            None => serde_json::from_str(&key.private_jwk()?)?,
        });
    }
    let private: serde_json::Value = serde_json::from_str(&signing.private_jwk()?)?;
    Ok(json!({
        "GRANTED_SIGNING_KEY": private,
        "GRANTED_VERIFICATION_KEYS": verification,
        "GRANTED_CLIENT_SECRET_KEY": client_secret_key,
    }))
}
