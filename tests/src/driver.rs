//! Runs one vector against a [`Runtime`]: builds the store from `state`, drives the token
//! endpoint's steps as a host would, and compares the outcome with `expect`.

use crate::format::{Expect, HeaderValue, Sequence, State, TokenRequestSpec, Vector};
use crate::{Runtime, Session};
use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use granted_policy::model::Timestamp;
use granted_policy::token::lockout::LockSchedule;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256, Sha512};
use std::collections::BTreeMap;

/// The runner's settings; no expectation depends on them.
#[derive(Clone, Debug)]
pub struct Settings {
    /// PBKDF2 iterations for clear passwords in `state` (and the unknown-user dummy).
    pub iterations: u32,
    /// Let the module run PBKDF2 itself instead of asking for the host's KDF step.
    pub kdf_in_module: bool,
    /// Drive the token endpoint as one flow on one instance (`token_start`, then
    /// `token_resume` with only what each step adds) instead of stateless `token` calls.
    pub flow: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            iterations: 1000,
            kdf_in_module: false,
            flow: false,
        }
    }
}

/// The server key client secrets are HMACed under, in the runner's store.
pub const CLIENT_SECRET_KEY: &[u8] = b"granted-vectors-client-secret-key";
/// The `kid` of the runner's access-token signing key.
pub const SIGNING_KID: &str = "vectors-1";
/// Its algorithm.
pub const SIGNING_ALG: &str = "EdDSA";

/// The runner's access-token signing key, made once per process and held as a host holds it
/// (the module only ever sees its `kid`). Ed25519, whose signatures are deterministic, so that
/// a flow and stateless calls still answer byte for byte alike (`tests/flow.rs`); the host's
/// tests cover every algorithm.
fn signing_key() -> Result<&'static ring::signature::Ed25519KeyPair> {
    use ring::signature::Ed25519KeyPair;
    static KEY: std::sync::OnceLock<Option<Ed25519KeyPair>> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let der = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).ok()?;
        Ed25519KeyPair::from_pkcs8(der.as_ref()).ok()
    })
    .as_ref()
    .ok_or_else(|| anyhow!("could not make the runner's signing key"))
}

/// The host's answer to `need_signature`: the runner's signature, base64url.
pub fn sign(step: &Value) -> Result<String> {
    if step["alg"] != SIGNING_ALG || step["kid"] != SIGNING_KID {
        bail!("the module asked for a signature by another key: {step}");
    }
    let input = step["signing_input"]
        .as_str()
        .ok_or_else(|| anyhow!("`need_signature` without `signing_input`"))?;
    Ok(URL_SAFE_NO_PAD.encode(signing_key()?.sign(input.as_bytes()).as_ref()))
}

/// Whether `token` carries the runner key's valid signature over its header and claims.
pub fn signed_by_runner(token: &str) -> bool {
    use ring::signature::{KeyPair as _, UnparsedPublicKey, ED25519};
    let Some((input, signature)) = token.rsplit_once('.') else {
        return false;
    };
    let (Ok(key), Ok(signature)) = (signing_key(), URL_SAFE_NO_PAD.decode(signature)) else {
        return false;
    };
    UnparsedPublicKey::new(&ED25519, key.public_key().as_ref())
        .verify(input.as_bytes(), &signature)
        .is_ok()
}

/// A vector's outcome: empty `mismatches` means it passed.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// What differs from `expect`, one line each.
    pub mismatches: Vec<String>,
}

/// Calls an entry point and unwraps the `{"ok": …}` envelope.
pub fn call_ok(rt: &dyn Runtime, entry: &str, input: &Value) -> Result<Value> {
    let bytes = serde_json::to_vec(input)?;
    unwrap_ok(entry, &rt.call(entry, &bytes)?)
}

/// [`call_ok`] on a session's instance.
pub fn session_call_ok(session: &mut dyn Session, entry: &str, input: &Value) -> Result<Value> {
    let bytes = serde_json::to_vec(input)?;
    unwrap_ok(entry, &session.call(entry, &bytes)?)
}

fn unwrap_ok(entry: &str, out: &[u8]) -> Result<Value> {
    let mut envelope: Value = serde_json::from_slice(out)
        .with_context(|| format!("`{entry}` answered something that is not JSON"))?;
    if let Some(err) = envelope.get("error") {
        bail!("`{entry}` refused: {err}");
    }
    envelope
        .get_mut("ok")
        .map(Value::take)
        .ok_or_else(|| anyhow!("`{entry}` answered neither `ok` nor `error`"))
}

/// Runs one vector.
pub fn run_vector(rt: &dyn Runtime, vector: &Vector, settings: &Settings) -> Result<Outcome> {
    let kinds = [
        vector.token_request.is_some(),
        vector.edit.is_some(),
        vector.create.is_some(),
        vector.sequence.is_some(),
        vector.authorize_request.is_some(),
        vector.flow.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        bail!("a vector has exactly one of `token_request`, `edit`, `create`, `sequence`, `authorize_request` and `flow`");
    }
    let mut mismatches = Vec::new();
    if let Some(request) = &vector.token_request {
        let decision = run_token(rt, vector, request, settings)?;
        check_token(&vector.expect, &decision, &mut mismatches)?;
        check_signed(&decision, &mut mismatches);
    } else if let Some(request) = &vector.authorize_request {
        mismatches = crate::code_flow::run_authorize(rt, vector, request, settings)?;
    } else if let Some(flow) = &vector.flow {
        mismatches = crate::code_flow::run_flow(rt, vector, flow, settings)?;
    } else if let Some(sequence) = &vector.sequence {
        mismatches = run_sequence(rt, vector, sequence, settings)?;
    } else {
        let mut input = json!({"state": vector.state, "now": vector.now});
        if let Some(s) = &vector.sunset {
            input["sunset"] = json!(s);
        }
        if let Some(edit) = &vector.edit {
            input["edit"] = edit.clone();
        }
        if let Some(create) = &vector.create {
            input["create"] = create.clone();
        }
        let preview = call_ok(rt, "preview", &input)?;
        check_preview(&vector.expect, &preview, &mut mismatches);
    }
    Ok(Outcome { mismatches })
}

/// The tokens a decision issued are the runner's signatures over what the module wrote, and an
/// ID token carries the nonce the code was bound to.
pub(crate) fn check_signed(decision: &Value, mismatches: &mut Vec<String>) {
    let body: Value =
        serde_json::from_str(decision["response"]["body"].as_str().unwrap_or_default())
            .unwrap_or_default();
    for field in ["access_token", "id_token"] {
        if let Some(token) = body[field].as_str() {
            if !signed_by_runner(token) {
                mismatches.push(format!("{field} not signed by the runner's key: {token}"));
            }
        }
    }
}

/// The store a host would hold after loading `state`: secrets and passwords hashed; for a
/// sequence, changed by each decision's effects.
pub(crate) struct Store {
    tenants: Vec<Value>,
    clients: Vec<Value>,
    users: Vec<(String, Value)>,
    refresh_tokens: Vec<Value>,
    codes: Vec<Value>,
    consents: Vec<Value>,
    /// Failed-login counts and locks by (tenant, username), known users or not.
    locks: BTreeMap<(String, String), Lock>,
}

/// A user's (or unknown name's) failed logins, as a host's store keeps them.
#[derive(Default)]
struct Lock {
    failures: u32,
    locks: u64,
    until: Option<Timestamp>,
}

pub(crate) fn seal(rt: &dyn Runtime, state: &Value, settings: &Settings) -> Result<Store> {
    let typed: State = serde_json::from_value(state.clone()).context("`state` is not valid")?;
    let key = STANDARD.encode(CLIENT_SECRET_KEY);
    let mut clients = Vec::new();
    for app in &typed.apps {
        let mut app_value = Map::new();
        app_value.insert("app_id".into(), json!(app.app_id));
        app_value.insert("revisions".into(), json!(app.revisions));
        for (k, v) in &app.rest {
            app_value.insert(k.clone(), v.clone());
        }
        for (client_id, secret) in &app.secrets {
            let hashed = call_ok(
                rt,
                "hash_client_secret",
                &json!({"key": key, "secret": secret}),
            )?;
            clients.push(json!({
                "client_id": client_id,
                "secret_hmac": hashed["secret_hmac"],
                "app": app_value,
            }));
        }
        // A `client_id` with no secret (a public client's) is stored without one.
        for revision in &app.revisions {
            let Some(client_id) = revision["client_id"].as_str() else {
                continue;
            };
            if !clients.iter().any(|c| c["client_id"] == client_id) {
                clients.push(json!({"client_id": client_id, "secret_hmac": "", "app": app_value}));
            }
        }
    }
    let mut tenants = Vec::new();
    let mut users = Vec::new();
    let mut refresh_tokens = Vec::new();
    let mut locks = BTreeMap::new();
    for tenant in &typed.tenants {
        let mut record: Map<String, Value> = tenant.rest.clone().into_iter().collect();
        record.insert("tenant".into(), json!(tenant.tenant));
        tenants.push(Value::Object(record));
        for user in &tenant.users {
            let mut record: Map<String, Value> = user.rest.clone().into_iter().collect();
            record.insert("username".into(), json!(user.username));
            let hash = match (&user.password, &user.password_hash) {
                (_, Some(hash)) => Some(hash.clone()),
                (Some(password), None) => {
                    let salt =
                        &Sha256::digest(format!("{}/{}", tenant.tenant, user.username))[..16];
                    let out = call_ok(
                        rt,
                        "hash_password",
                        &json!({"password": password, "salt": STANDARD.encode(salt), "iterations": settings.iterations}),
                    )?;
                    out["hash"].as_str().map(str::to_string)
                }
                (None, None) => None,
            };
            record.insert("password_hash".into(), json!(hash));
            // A lock in the state is loaded as a host's import loads it: one lock so far.
            let until = record.get("locked_until").and_then(Value::as_str);
            if let Some(until) = until.and_then(Timestamp::parse) {
                let lock = Lock {
                    failures: 0,
                    locks: 1,
                    until: Some(until),
                };
                locks.insert((tenant.tenant.clone(), user.username.clone()), lock);
            }
            users.push((tenant.tenant.clone(), Value::Object(record)));
        }
        for token in &tenant.refresh_tokens {
            let mut record: Map<String, Value> = token.rest.clone().into_iter().collect();
            record.insert("token_sha256".into(), json!(refresh_hash(&token.token)));
            record.insert("tenant".into(), json!(tenant.tenant));
            record.entry("status").or_insert(json!("active"));
            refresh_tokens.push(Value::Object(record));
        }
    }
    let codes = typed
        .codes
        .iter()
        .map(|code| {
            let mut record: Map<String, Value> = code.rest.clone().into_iter().collect();
            record.insert(
                "code_sha256".into(),
                json!(granted_policy::token::endpoint::code_sha256(&code.code)),
            );
            Value::Object(record)
        })
        .collect();
    Ok(Store {
        tenants,
        clients,
        users,
        refresh_tokens,
        codes,
        consents: Vec::new(),
        locks,
    })
}

/// Bytes of entropy a runner hands the module per request, derived from `seed` (the vector's
/// name) so that runs repeat: SHA-512 then the first half of SHA-256.
pub fn entropy(seed: &str) -> Vec<u8> {
    let mut bytes = Sha512::digest(seed.as_bytes()).to_vec();
    bytes.extend_from_slice(&Sha256::digest(seed.as_bytes())[..16]);
    bytes
}

/// How a store keys refresh tokens: SHA-256, base64url without padding.
pub fn refresh_hash(token: &str) -> String {
    granted_policy::token::endpoint::refresh_token_sha256(token)
}

/// The HTTP request a client would send for `spec`.
pub fn http_request(spec: &TokenRequestSpec) -> Result<Value> {
    if let Some(raw) = &spec.raw {
        let mut headers = Vec::new();
        for (name, value) in &raw.headers {
            match value {
                HeaderValue::One(v) => headers.push(json!([name, v])),
                HeaderValue::Many(vs) => headers.extend(vs.iter().map(|v| json!([name, v]))),
            }
        }
        let body = match (&raw.body_base64, &raw.body) {
            (Some(b64), _) => b64.clone(),
            (None, Some(text)) => STANDARD.encode(text.as_bytes()),
            (None, None) => String::new(),
        };
        return Ok(
            json!({"method": raw.method, "tenant": spec.tenant, "headers": headers, "body_base64": body}),
        );
    }
    let mut form = spec
        .form
        .clone()
        .ok_or_else(|| anyhow!("`token_request` needs `form` or `raw`"))?;
    let mut headers = vec![json!(["Content-Type", "application/x-www-form-urlencoded"])];
    match spec.auth.as_deref() {
        Some("basic") => {
            let id = form.remove("client_id").unwrap_or_default();
            let secret = form.remove("client_secret").unwrap_or_default();
            let pair = format!("{}:{}", form_encode(&id), form_encode(&secret));
            headers.push(json!([
                "Authorization",
                format!("Basic {}", STANDARD.encode(pair))
            ]));
        }
        Some("body") | None => {}
        Some(other) => bail!("`auth` is `basic` or `body`, not `{other}`"),
    }
    let body = form
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    Ok(
        json!({"method": "POST", "tenant": spec.tenant, "headers": headers, "body_base64": STANDARD.encode(body)}),
    )
}

/// `application/x-www-form-urlencoded` encoding, as a client does it.
pub fn form_encode(text: &str) -> String {
    granted_policy::token::request::form_encode(text)
}

fn run_token(
    rt: &dyn Runtime,
    vector: &Vector,
    spec: &TokenRequestSpec,
    settings: &Settings,
) -> Result<Value> {
    let store = seal(rt, &vector.state, settings)?;
    decide(
        rt,
        vector,
        &store,
        spec,
        &vector.now,
        &vector.name,
        settings,
    )
}

/// A sequence: each step's requests decided on one store, their effects applied, the answers
/// and the user's lock compared with the step's expectations.
fn run_sequence(
    rt: &dyn Runtime,
    vector: &Vector,
    sequence: &Sequence,
    settings: &Settings,
) -> Result<Vec<String>> {
    let mut store = seal(rt, &vector.state, settings)?;
    let mut mismatches = Vec::new();
    let mut at = vector.now.clone();
    let mut sent = 0;
    for (i, step) in sequence.steps.iter().enumerate() {
        if let Some(step_at) = &step.at {
            at = step_at.clone();
        }
        let spec = sequence.request(step);
        for n in 1..=step.repeat {
            sent += 1;
            let seed = format!("{}#{sent}", vector.name);
            let decision = decide(rt, vector, &store, &spec, &at, &seed, settings)?;
            let mut out = Vec::new();
            check_token(&step.expect, &decision, &mut out)?;
            store.apply(&decision["effects"], &at)?;
            let last = n == step.repeat;
            if let (Some(expected), true) = (&step.locked_until, last) {
                let form = spec.form.as_ref();
                let username = form.and_then(|f| f.get("username"));
                let lock = store.lock_in_force(&spec.tenant, username, &at)?;
                if *expected != json!(lock) {
                    out.push(format!(
                        "locked_until: expected {expected}, got {}",
                        json!(lock)
                    ));
                }
            }
            let label = step.name.as_deref().unwrap_or_default();
            mismatches.extend(
                out.into_iter()
                    .map(|m| format!("step {} ({label}) #{n}: {m}", i + 1)),
            );
        }
    }
    Ok(mismatches)
}

/// One token request through the module's steps as a host drives them; answers the `done` step.
pub(crate) fn decide(
    rt: &dyn Runtime,
    vector: &Vector,
    store: &Store,
    spec: &TokenRequestSpec,
    now: &str,
    seed: &str,
    settings: &Settings,
) -> Result<Value> {
    let mut input = json!({
        "request": http_request(spec)?,
        "context": module_context(vector, now, seed, settings),
        "records": {},
    });
    if settings.flow {
        // One instance for the request; each step sends only what it adds.
        let mut session = rt.session()?;
        let mut step = session_call_ok(session.as_mut(), "token_start", &input)?;
        for _ in 0..6 {
            let more = match step["step"].as_str() {
                Some("need_records") => json!({"records": store.lookup(&step["lookup"])}),
                Some("need_kdf") => json!({kdf_slot(&step): kdf_answer(rt, &step)?}),
                Some("need_signature") => json!({signature_slot(&step): sign(&step)?}),
                Some("done") => return Ok(step),
                _ => bail!("`token_start` answered an unknown step: {step}"),
            };
            step = session_call_ok(session.as_mut(), "token_resume", &more)?;
        }
        bail!("`token_resume` did not finish in 6 steps")
    }
    for _ in 0..6 {
        let step = call_ok(rt, "token", &input)?;
        match step["step"].as_str() {
            Some("need_records") => {
                let lookup = &step["lookup"];
                input["records"] = store.lookup(lookup);
            }
            Some("need_kdf") => input[kdf_slot(&step)] = kdf_answer(rt, &step)?,
            Some("need_signature") => input[signature_slot(&step)] = json!(sign(&step)?),
            Some("done") => return Ok(step),
            _ => bail!("`token` answered an unknown step: {step}"),
        }
    }
    bail!("`token` did not finish in 6 steps")
}

/// The `context` a host sends with every entry point's first call: the vector's clock, the
/// test keys, the KDF settings, the entropy drawn from `seed`, and the vector's sunset and lockout
/// settings when it has them.
pub(crate) fn module_context(vector: &Vector, now: &str, seed: &str, settings: &Settings) -> Value {
    let mut context = json!({
        "now": now,
        "issuer": "https://granted.test",
        "signing_key": {"kid": SIGNING_KID, "alg": SIGNING_ALG},
        "client_secret_key": STANDARD.encode(CLIENT_SECRET_KEY),
        "kdf_iterations": settings.iterations,
        "kdf_in_module": settings.kdf_in_module,
        "entropy": STANDARD.encode(entropy(seed)),
    });
    if let Some(s) = &vector.sunset {
        context["sunset"] = json!(s);
    }
    if let Some(lockout) = &vector.lockout {
        context["lockout"] = lockout.clone();
    }
    context
}

/// The answer to a `need_kdf` step: the key derived from the step's password with its settings.
pub(crate) fn kdf_answer(rt: &dyn Runtime, step: &Value) -> Result<Value> {
    let derived = rt.kdf(&step["kdf"], step["password"].as_str().unwrap_or_default())?;
    Ok(json!({"derived": STANDARD.encode(derived)}))
}

/// Where a signature goes: `id_token_signature` for the ID token's, else `signature`.
fn signature_slot(step: &Value) -> &'static str {
    match step["purpose"].as_str() {
        Some("id_token") => "id_token_signature",
        _ => "signature",
    }
}

/// Where a KDF step's output goes: `rehash_kdf` for a `rehash` step, else `kdf`.
pub(crate) fn kdf_slot(step: &Value) -> &'static str {
    match step["purpose"].as_str() {
        Some("rehash") => "rehash_kdf",
        _ => "kdf",
    }
}

impl Store {
    /// Applies a decision's effects as a host's store does: it counts and stores what the
    /// module says, and decides nothing (a lock's length comes from the effect's schedule).
    pub(crate) fn apply(&mut self, effects: &Value, at: &str) -> Result<()> {
        let at = Timestamp::parse(at).ok_or_else(|| anyhow!("bad instant `{at}`"))?;
        for effect in effects.as_array().into_iter().flatten() {
            let text = |field: &str| effect[field].as_str().unwrap_or_default().to_string();
            let who = (text("tenant"), text("username"));
            match effect["effect"].as_str() {
                Some("record_login_failure") => {
                    let schedule: LockSchedule = serde_json::from_value(effect["lockout"].clone())
                        .context("`record_login_failure` without a lock schedule")?;
                    let lock = self.locks.entry(who).or_default();
                    lock.failures += 1;
                    if let Some(seconds) = schedule.length(lock.locks) {
                        if lock.failures >= schedule.lock_after {
                            lock.failures = 0;
                            lock.locks += 1;
                            lock.until = Some(at.plus_seconds(seconds));
                        }
                    }
                }
                Some("reset_login_failures") => {
                    self.locks.remove(&who);
                }
                Some("store_password_hash") => {
                    let user = self.users.iter_mut().find(|(t, u)| {
                        *t == who.0 && u["username"].as_str() == Some(who.1.as_str())
                    });
                    if let Some((_, user)) = user {
                        if user["password_hash"] == effect["replaces"] {
                            user["password_hash"] = effect["hash"].clone();
                        }
                    }
                }
                Some("store_refresh_token") => self.refresh_tokens.push(effect["record"].clone()),
                Some("store_code") => self.codes.push(effect["record"].clone()),
                Some("consume_code") => {
                    for code in &mut self.codes {
                        if code["code_sha256"] == effect["code_sha256"] {
                            code["used"] = json!(true);
                        }
                    }
                }
                Some("store_consent") => self.keep_consent(&effect["record"]),
                Some("change_password") => {
                    let user = self.users.iter_mut().find(|(t, u)| {
                        *t == who.0 && u["username"].as_str() == Some(who.1.as_str())
                    });
                    if let Some((_, user)) = user {
                        if user["password_hash"] == effect["replaces"] {
                            user["password_hash"] = effect["hash"].clone();
                            user["password_changed_at"] = effect["changed_at"].clone();
                        }
                    }
                }
                Some("consume_refresh_token") => {
                    for token in &mut self.refresh_tokens {
                        if token["token_sha256"] == effect["token_sha256"] {
                            token["status"] = json!("used");
                        }
                    }
                }
                Some("revoke_refresh_family") => {
                    for token in &mut self.refresh_tokens {
                        if token["family_id"] == effect["family_id"] && token["status"] == "active"
                        {
                            token["status"] = json!("revoked");
                        }
                    }
                }
                other => bail!("unknown effect {other:?}"),
            }
        }
        Ok(())
    }

    /// The end of the lock in force on (`tenant`, `username`) at `at`, if any.
    fn lock_in_force(
        &self,
        tenant: &str,
        username: Option<&String>,
        at: &str,
    ) -> Result<Option<String>> {
        let at = Timestamp::parse(at).ok_or_else(|| anyhow!("bad instant `{at}`"))?;
        let key = (tenant.to_string(), username.cloned().unwrap_or_default());
        Ok(self
            .locks
            .get(&key)
            .and_then(|l| l.until)
            .filter(|until| at < *until)
            .map(Timestamp::to_rfc3339))
    }

    /// A consent, added to the one kept for the same user and app (scopes joined).
    fn keep_consent(&mut self, record: &Value) {
        let same = |c: &&mut Value| {
            ["tenant", "username", "app_id"]
                .iter()
                .all(|k| c[*k] == record[*k])
        };
        match self.consents.iter_mut().find(same) {
            Some(kept) => {
                let mut scopes: Vec<Value> = kept["scopes"].as_array().cloned().unwrap_or_default();
                for s in record["scopes"].as_array().into_iter().flatten() {
                    if !scopes.contains(s) {
                        scopes.push(s.clone());
                    }
                }
                kept["scopes"] = json!(scopes);
            }
            None => self.consents.push(record.clone()),
        }
    }

    pub(crate) fn lookup(&self, lookup: &Value) -> Value {
        let tenant = lookup["tenant"].as_str().unwrap_or_default();
        let client_id = lookup["client_id"].as_str().unwrap_or_default();
        let find = |list: &[Value], key: &str, value: &str| {
            list.iter()
                .find(|v| v[key].as_str() == Some(value))
                .cloned()
                .unwrap_or(Value::Null)
        };
        let mut records = json!({
            "tenant": find(&self.tenants, "tenant", tenant),
            "client": find(&self.clients, "client_id", client_id),
        });
        if let Some(username) = lookup["username"].as_str() {
            records["user"] = self
                .users
                .iter()
                .find(|(t, u)| t == tenant && u["username"].as_str() == Some(username))
                .map(|(_, u)| {
                    let mut user = u.clone();
                    let key = (tenant.to_string(), username.to_string());
                    if let Some(lock) = self.locks.get(&key) {
                        user["locked_until"] = json!(lock.until.map(Timestamp::to_rfc3339));
                    } else if user.get("locked_until").is_some() {
                        user["locked_until"] = Value::Null;
                    }
                    user
                })
                .unwrap_or(Value::Null);
        }
        if let Some(hash) = lookup["refresh_token_sha256"].as_str() {
            records["refresh_token"] = find(&self.refresh_tokens, "token_sha256", hash);
        }
        if let Some(hash) = lookup["code_sha256"].as_str() {
            records["code"] = find(&self.codes, "code_sha256", hash);
        }
        if let Some(app_id) = lookup["consent_app_id"].as_str() {
            let username = lookup["username"].as_str().unwrap_or_default();
            records["consent"] = self
                .consents
                .iter()
                .find(|c| {
                    c["tenant"] == tenant && c["username"] == username && c["app_id"] == app_id
                })
                .cloned()
                .unwrap_or(Value::Null);
        }
        records
    }
}

/// The host's fast KDF: native PBKDF2.
pub fn native_kdf(params: &Value, password: &str) -> Result<Vec<u8>> {
    let salt = STANDARD
        .decode(params["salt"].as_str().unwrap_or_default())
        .context("the KDF salt is not base64")?;
    let iterations = params["iterations"]
        .as_u64()
        .and_then(|i| u32::try_from(i).ok())
        .context("bad iterations")?;
    let length = params["length"]
        .as_u64()
        .and_then(|l| usize::try_from(l).ok())
        .context("bad length")?;
    let mut out = vec![0u8; length];
    match params["algorithm"].as_str() {
        Some("pbkdf2-sha256") => {
            pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations, &mut out)
        }
        Some("pbkdf2-sha512") => {
            pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), &salt, iterations, &mut out)
        }
        other => bail!("unknown KDF {other:?}"),
    }
    Ok(out)
}

pub(crate) fn check<T: PartialEq + std::fmt::Debug>(
    what: &str,
    expected: &Option<T>,
    actual: T,
    out: &mut Vec<String>,
) {
    if let Some(expected) = expected {
        if *expected != actual {
            out.push(format!("{what}: expected {expected:?}, got {actual:?}"));
        }
    }
}

/// Compares a `done` step (response, audit, effects) with a vector's expectations.
pub fn check_token(expect: &Expect, step: &Value, out: &mut Vec<String>) -> Result<()> {
    let response = &step["response"];
    let audit = &step["audit"];
    let status = response["status"].as_u64().unwrap_or_default() as u16;
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap_or_default())
        .context("the response body is not JSON")?;
    let header = |name: &str| {
        response["headers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|h| h[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
            .and_then(|h| h[1].as_str())
            .map(str::to_string)
    };
    // RULES.md §4: every answer, success or error, carries the cache headers.
    if header("cache-control").as_deref() != Some("no-store") {
        out.push("response: `Cache-Control: no-store` is missing".into());
    }
    if header("pragma").as_deref() != Some("no-cache") {
        out.push("response: `Pragma: no-cache` is missing".into());
    }
    if status != 200
        && (body["error"].as_str().is_none() || body["error_description"].as_str().is_none())
    {
        out.push(format!(
            "error body lacks `error` or `error_description`: {body}"
        ));
    }
    check("status", &expect.status, status, out);
    check(
        "error",
        &expect.error.as_deref().map(Some),
        body["error"].as_str(),
        out,
    );
    check(
        "reason",
        &expect.reason.clone(),
        json!(audit["reason"]),
        out,
    );
    check(
        "scope",
        &expect.scope.as_deref().map(Some),
        body["scope"].as_str(),
        out,
    );
    check(
        "refresh_token",
        &expect.refresh_token,
        body["refresh_token"].is_string(),
        out,
    );
    check(
        "id_token",
        &expect.id_token,
        body["id_token"].is_string(),
        out,
    );
    check(
        "cause",
        &expect.cause.as_deref().map(Some),
        audit["cause"].as_str(),
        out,
    );
    check(
        "rule",
        &expect.rule.as_deref().map(Some),
        audit["rule"].as_str(),
        out,
    );
    check(
        "www_authenticate",
        &expect.www_authenticate,
        header("www-authenticate").is_some_and(|v| v.starts_with("Basic realm=")),
        out,
    );
    if let Some(fragment) = &expect.error_description_contains {
        let description = body["error_description"].as_str().unwrap_or_default();
        if !description.contains(fragment.as_str()) {
            out.push(format!(
                "error_description {description:?} does not contain {fragment:?}"
            ));
        }
    }
    let effects: Vec<String> = step["effects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["effect"].as_str().map(str::to_string))
        .collect();
    check("effects", &expect.effects, effects, out);
    Ok(())
}

/// Compares a preview with what a vector expects; each difference is pushed to `out`.
pub fn check_preview(expect: &Expect, preview: &Value, out: &mut Vec<String>) {
    check(
        "accepted",
        &expect.accepted,
        preview["accepted"].as_bool().unwrap_or(false),
        out,
    );
    check(
        "reason",
        &expect.reason.clone(),
        preview["reason"].clone(),
        out,
    );
    check(
        "password_eligible_after",
        &expect.password_eligible_after,
        preview["password_eligible_after"]
            .as_bool()
            .unwrap_or(false),
        out,
    );
    let losing: Vec<String> = preview["tenants_losing_password_on_update"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_string))
        .collect();
    check(
        "tenants_losing_password_on_update",
        &expect.tenants_losing_password_on_update,
        losing,
        out,
    );
    check(
        "irreversible",
        &expect.irreversible,
        preview["irreversible"].as_bool().unwrap_or(false),
        out,
    );
    check(
        "rule",
        &expect.rule.as_deref().map(Some),
        preview["rule"].as_str(),
        out,
    );
}
