//! The admin API over real HTTP on loopback, on the demo state: authentication and throttling,
//! apps and their password-grant status, previews, edits (If-Match, 409, 422), new apps and
//! client secrets, tenants and installs, users; each change audited in the hash chain.

mod common;

use granted_host::settings::{Clock, ServerSettings};
use granted_host::store::Store;
use granted_policy::model::Timestamp;
use serde_json::{json, Value};

const TOKEN: &str = "test-admin-token-0123456789abcdef-0123456789";

struct Running {
    base: String,
    store: Store,
    _runtime: tokio::runtime::Runtime,
}

fn start_with(settings: ServerSettings) -> Running {
    let store = granted_host::testing::store().expect("store");
    let (base, runtime) = common::serve_in_process(store.clone(), settings, TOKEN, true);
    Running {
        base,
        store,
        _runtime: runtime,
    }
}

fn settings() -> ServerSettings {
    ServerSettings {
        kdf_iterations: 1000,
        clock: Clock::Fixed(Timestamp::parse("2026-11-25T12:00:00Z").expect("an instant")),
        ..ServerSettings::default()
    }
}

fn start() -> Running {
    start_with(settings())
}

/// One admin API call: status, response headers we look at, JSON body.
struct Answer {
    status: u16,
    etag: Option<String>,
    retry_after: Option<String>,
    www_authenticate: Option<String>,
    body: Value,
}

impl Running {
    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Answer {
        let url = format!("{}/admin/api/v1{path}", self.base);
        let agent = common::agent();
        let mut response = match body {
            Some(body) => {
                let mut req = match method {
                    "PUT" => agent.put(&url),
                    _ => agent.post(&url),
                };
                if let Some(t) = token {
                    req = req.header("Authorization", format!("Bearer {t}"));
                }
                let mut has_type = false;
                for (k, v) in headers {
                    has_type |= k.eq_ignore_ascii_case("content-type");
                    req = req.header(*k, *v);
                }
                if !has_type {
                    req = req.header("Content-Type", "application/json");
                }
                req.send(body.to_string())
            }
            None => {
                let mut req = match method {
                    "GET" => agent.get(&url).force_send_body(),
                    "DELETE" => agent.delete(&url).force_send_body(),
                    _ => agent.post(&url),
                };
                if let Some(t) = token {
                    req = req.header("Authorization", format!("Bearer {t}"));
                }
                for (k, v) in headers {
                    req = req.header(*k, *v);
                }
                req.send_empty()
            }
        }
        .expect("the server answers");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (etag, retry_after, www_authenticate) = (
            header("etag"),
            header("retry-after"),
            header("www-authenticate"),
        );
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().expect("body");
        Answer {
            status,
            etag,
            retry_after,
            www_authenticate,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        }
    }

    fn get(&self, path: &str) -> Answer {
        self.call("GET", path, Some(TOKEN), &[], None)
    }

    fn post(&self, path: &str, body: Value) -> Answer {
        self.call("POST", path, Some(TOKEN), &[], Some(&body.to_string()))
    }

    fn edit(&self, app: &str, if_match: &str, body: Value) -> Answer {
        self.call(
            "POST",
            &format!("/apps/{app}/revisions"),
            Some(TOKEN),
            &[("If-Match", if_match)],
            Some(&body.to_string()),
        )
    }

    fn token(&self, tenant: &str, client: (&str, &str), form: &str) -> (u16, Value) {
        common::token(&self.base, tenant, client, form)
    }

    fn audit_count(&self) -> usize {
        self.store
            .audit_entries(0, 100_000)
            .expect("audit entries")
            .len()
    }
}

fn app_status(running: &Running, app_id: &str) -> Value {
    let apps = running.get("/apps");
    assert_eq!(apps.status, 200, "{}", apps.body);
    apps.body["apps"]
        .as_array()
        .expect("apps")
        .iter()
        .find(|a| a["app_id"] == app_id)
        .map(|a| a["password_grant"].clone())
        .unwrap_or(Value::Null)
}

const ALICE: &str = "grant_type=password&username=alice&password=correct+horse+battery";
const BOB: &str = "grant_type=password&username=bob&password=tr0ub4dor%263";

#[test]
fn without_the_admin_token_the_api_answers_401_and_throttles_guessing() {
    let running = start_with(ServerSettings {
        throttle_failures: 3,
        ..settings()
    });
    let none = running.call("GET", "/apps", None, &[], None);
    assert_eq!(none.status, 401, "{}", none.body);
    assert_eq!(none.body["error"], "unauthorized");
    assert!(none
        .www_authenticate
        .as_deref()
        .is_some_and(|w| w.starts_with("Bearer")));
    // Writes are refused the same way, and change nothing.
    let before = running.audit_count();
    let create = running.call(
        "POST",
        "/tenants",
        Some("wrong-token"),
        &[],
        Some(r#"{"tenant":"evil"}"#),
    );
    assert_eq!(create.status, 401);
    for _ in 0..2 {
        assert_eq!(
            running
                .call("GET", "/apps", Some("wrong"), &[], None)
                .status,
            401
        );
    }
    // Three failures from this address: now even the right token waits.
    let blocked = running.get("/apps");
    assert_eq!(blocked.status, 429, "{}", blocked.body);
    assert!(blocked.retry_after.is_some());
    assert_eq!(blocked.body["error"], "too_many_attempts");
    assert_eq!(running.audit_count(), before);
    assert!(running.store.tenant("evil").expect("store").is_none());
}

#[test]
fn apps_list_the_password_grants_status() {
    let running = start();
    // crm: its latest revision keeps the password grant.
    assert_eq!(app_status(&running, "crm")["status"], "available");
    // reports moved to a new client_id and client_credentials; acme still pins revision 1.
    let reports = app_status(&running, "reports");
    assert_eq!(reports["status"], "kept", "{reports}");
    assert_eq!(reports["tenants_keeping"], json!(["acme"]));
    // sync never had it.
    assert_eq!(app_status(&running, "sync")["status"], "never");

    let crm = running.get("/apps/crm");
    assert_eq!(crm.status, 200, "{}", crm.body);
    assert_eq!(crm.etag.as_deref(), Some("\"2\""));
    assert_eq!(crm.body["latest_rev"], 2);
    assert_eq!(crm.body["revisions"].as_array().map(Vec::len), Some(2));
    assert_eq!(crm.body["revisions"][0]["password_eligible"], true);
    let installs = crm.body["installs"].as_array().expect("installs");
    assert_eq!(installs.len(), 2);
    assert!(installs
        .iter()
        .any(|i| i["tenant"] == "acme" && i["rev"] == 1 && i["password_now"] == true));

    let missing = running.get("/apps/nope");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["error"], "not_found");
}

#[test]
fn an_edit_leaving_the_password_grant_is_previewed_saved_and_kept_until_update() {
    let running = start();
    let before = running.audit_count();
    let preview = running.post(
        "/apps/crm/preview",
        json!({"grant_type": "client_credentials"}),
    );
    assert_eq!(preview.status, 200, "{}", preview.body);
    let p = &preview.body["preview"];
    assert_eq!(p["accepted"], true);
    assert_eq!(p["irreversible"], true);
    assert_eq!(p["reason"], "grant_type_changed");
    assert_eq!(
        p["tenants_losing_password_on_update"],
        json!(["acme", "globex"])
    );
    // A preview stores nothing.
    assert_eq!(running.get("/apps/crm").body["latest_rev"], 2);
    assert_eq!(running.audit_count(), before);

    let saved = running.edit("crm", "\"2\"", json!({"grant_type": "client_credentials"}));
    assert_eq!(saved.status, 201, "{}", saved.body);
    assert_eq!(saved.etag.as_deref(), Some("\"3\""));
    assert_eq!(saved.body["revision"]["rev"], 3);
    assert_eq!(saved.body["revision"]["grant_type"], "client_credentials");
    assert_eq!(
        saved.body["preview"], *p,
        "saved under the preview it was shown with"
    );
    // Same client_id: no new secret.
    assert!(saved.body.get("client_secret").is_none());
    assert_eq!(running.audit_count(), before + 1);

    // Both tenants keep the password grant until they update.
    let status = app_status(&running, "crm");
    assert_eq!(status["status"], "kept", "{status}");
    assert_eq!(status["tenants_keeping"], json!(["acme", "globex"]));
    let (code, body) = running.token("globex", ("crm-1", "crm-1-secret"), BOB);
    assert_eq!(code, 200, "{body}");

    // globex updates: it loses the password grant, and the answer says so.
    let update = running.call(
        "POST",
        "/tenants/globex/installs/crm/update",
        Some(TOKEN),
        &[],
        None,
    );
    assert_eq!(update.status, 200, "{}", update.body);
    assert_eq!(update.body["rev"], 3);
    assert_eq!(update.body["previous_rev"], 2);
    assert_eq!(update.body["password_lost"], true);
    let (code, body) = running.token("globex", ("crm-1", "crm-1-secret"), BOB);
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"], "unauthorized_client");
    // acme has not updated: it still signs in with a password.
    let (code, body) = running.token("acme", ("crm-1", "crm-1-secret"), ALICE);
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        app_status(&running, "crm")["tenants_keeping"],
        json!(["acme"])
    );
}

#[test]
fn a_rejected_edit_answers_422_with_the_rule_and_changes_nothing() {
    let running = start();
    // reports left the password grant with a new client_id: going back is A1.
    let before = running.audit_count();
    let revert = running.edit("reports", "\"2\"", json!({"grant_type": "password"}));
    assert_eq!(revert.status, 422, "{}", revert.body);
    assert_eq!(revert.body["error"], "edit_rejected");
    assert_eq!(revert.body["rule"], "A1");
    assert!(revert.body["reason"].is_string(), "{}", revert.body);
    assert!(revert.body["message"]
        .as_str()
        .is_some_and(|m| m.contains("A1")));
    assert_eq!(revert.body["preview"]["accepted"], false);
    assert_eq!(running.get("/apps/reports").body["latest_rev"], 2);
    assert_eq!(running.audit_count(), before);

    // A client_id another app uses: A5.
    let taken = running.edit("sync", "\"1\"", json!({"client_id": "crm-1"}));
    assert_eq!(taken.status, 422, "{}", taken.body);
    assert_eq!(taken.body["reason"], "client_id_taken");
    assert_eq!(taken.body["rule"], "A5");
    assert_eq!(running.get("/apps/sync").body["latest_rev"], 1);
    assert_eq!(running.audit_count(), before);
}

#[test]
fn two_admins_editing_at_once_one_wins_and_the_other_gets_409() {
    let running = std::sync::Arc::new(start());
    let edits = [
        json!({"scopes": ["read"]}),
        json!({"grant_type": "client_credentials"}),
    ];
    let answers: Vec<Answer> = std::thread::scope(|s| {
        let handles: Vec<_> = edits
            .iter()
            .map(|edit| {
                let running = running.clone();
                s.spawn(move || running.edit("crm", "\"2\"", edit.clone()))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let mut statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    statuses.sort();
    assert_eq!(
        statuses,
        vec![201, 409],
        "{:?}",
        answers.iter().map(|a| &a.body).collect::<Vec<_>>()
    );
    let loser = answers.iter().find(|a| a.status == 409).expect("a loser");
    assert_eq!(loser.body["error"], "edit_conflict");
    assert_eq!(loser.body["latest_rev"], 3);
    let crm = running.get("/apps/crm");
    assert_eq!(crm.body["latest_rev"], 3, "exactly one revision appended");
    assert_eq!(crm.body["revisions"].as_array().map(Vec::len), Some(3));

    // Without If-Match, an edit is refused before anything is read.
    let blind = running.call(
        "POST",
        "/apps/crm/revisions",
        Some(TOKEN),
        &[],
        Some(r#"{"scopes":["read"]}"#),
    );
    assert_eq!(blind.status, 428, "{}", blind.body);
    assert_eq!(blind.body["error"], "if_match_required");
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let running = start();
    let before = running.audit_count();
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a [(&'a str, &'a str)],
        &'a str,
        u16,
        &'a str,
    );
    let cases: [Case<'_>; 7] = [
        ("POST", "/tenants", &[], "{not json", 400, "invalid_request"),
        (
            "POST",
            "/tenants",
            &[],
            r#"{"tenant":"x","extra":1}"#,
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/tenants",
            &[],
            r#"{"tenant":"has space"}"#,
            422,
            "invalid_name",
        ),
        (
            "POST",
            "/tenants",
            &[("Content-Type", "text/plain")],
            r#"{"tenant":"x"}"#,
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            "/tenants",
            &[],
            r#"{"tenant":"acme"}"#,
            409,
            "tenant_exists",
        ),
        (
            "POST",
            "/apps/crm/revisions",
            &[("If-Match", "\"two\"")],
            r#"{}"#,
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/tenants/acme/users",
            &[],
            r#"{"username":"carol","password":"short"}"#,
            422,
            "invalid_password",
        ),
    ];
    for (method, path, headers, body, status, code) in cases {
        let answer = running.call(method, path, Some(TOKEN), headers, Some(body));
        assert_eq!(answer.status, status, "{path} {body}: {}", answer.body);
        assert_eq!(answer.body["error"], code, "{path} {body}");
        assert!(answer.body["message"].is_string());
    }
    let field = running.call(
        "POST",
        "/tenants",
        Some(TOKEN),
        &[],
        Some(r#"{"tenant":"x","sso_required":"yes"}"#),
    );
    assert!(
        field.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("sso_required")),
        "the error names the field: {}",
        field.body
    );
    assert_eq!(running.audit_count(), before);
    assert!(running.store.tenant("x").expect("store").is_none());
    let unknown = running.get("/nothing-here");
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body["error"], "not_found");
}

#[test]
fn a_new_app_shows_its_secret_once_and_a_tenant_that_installs_it_gets_tokens() {
    let running = start();
    let created = running.post(
        "/apps",
        json!({"app_id": "billing", "client_id": "billing-1", "grant_type": "client_credentials", "scopes": ["read"]}),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.etag.as_deref(), Some("\"1\""));
    let secret = created.body["client_secret"]["secret"]
        .as_str()
        .expect("the secret, once")
        .to_string();
    assert!(secret.len() >= 43, "256 bits or more");
    // It is not shown again, nor stored in clear, nor in the audit log.
    let app = running.get("/apps/billing");
    assert!(!app.body.to_string().contains(&secret));
    for (_, _, _, entry) in running.store.audit_entries(0, 100_000).expect("audit") {
        assert!(!entry.contains(&secret));
    }
    assert_eq!(app_status(&running, "billing")["status"], "never");

    let tenant = running.post("/tenants", json!({"tenant": "umbrella"}));
    assert_eq!(tenant.status, 201, "{}", tenant.body);
    let install = running.post("/tenants/umbrella/installs", json!({"app_id": "billing"}));
    assert_eq!(install.status, 201, "{}", install.body);
    assert_eq!(install.body["rev"], 1);
    let (code, body) = running.token(
        "umbrella",
        ("billing-1", &secret),
        "grant_type=client_credentials&scope=read",
    );
    assert_eq!(code, 200, "{body}");

    // Rotating the secret: the old one stops working, the new one works.
    let rotated = running.call(
        "POST",
        "/apps/billing/clients/billing-1/secret",
        Some(TOKEN),
        &[],
        None,
    );
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let fresh = rotated.body["client_secret"]["secret"]
        .as_str()
        .expect("new secret");
    assert_ne!(fresh, secret);
    let (code, _) = running.token(
        "umbrella",
        ("billing-1", &secret),
        "grant_type=client_credentials",
    );
    assert_eq!(code, 401);
    let (code, body) = running.token(
        "umbrella",
        ("billing-1", fresh),
        "grant_type=client_credentials",
    );
    assert_eq!(code, 200, "{body}");

    // A new password app after the sunset is A1; an existing id is a conflict.
    let late = running.post(
        "/apps",
        json!({"app_id": "late", "client_id": "late-1", "grant_type": "password"}),
    );
    assert_eq!(late.status, 422, "{}", late.body);
    assert_eq!(late.body["reason"], "app_created_after_sunset");
    let again = running.post(
        "/apps",
        json!({"app_id": "billing", "client_id": "billing-9", "grant_type": "client_credentials"}),
    );
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(running.get("/apps/late").status == 404);
}

#[test]
fn users_are_created_disabled_unlocked_and_given_passwords() {
    let running = start();
    let carol = "grant_type=password&username=carol&password=first-password";
    let created = running.post(
        "/tenants/acme/users",
        json!({"username": "carol", "password": "first-password"}),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["password_set"], true);
    assert!(
        !created.body.to_string().contains("pbkdf2"),
        "no hash in answers"
    );
    let (code, body) = running.token("acme", ("crm-1", "crm-1-secret"), carol);
    assert_eq!(code, 200, "{body}");

    let disabled = running.call(
        "POST",
        "/tenants/acme/users/carol/disable",
        Some(TOKEN),
        &[],
        None,
    );
    assert_eq!(disabled.status, 200, "{}", disabled.body);
    assert_eq!(disabled.body["disabled"], true);
    let (code, body) = running.token("acme", ("crm-1", "crm-1-secret"), carol);
    assert_eq!((code, body["error"].as_str()), (400, Some("invalid_grant")));
    let enabled = running.call(
        "POST",
        "/tenants/acme/users/carol/enable",
        Some(TOKEN),
        &[],
        None,
    );
    assert_eq!(enabled.body["disabled"], false);

    let changed = running.call(
        "PUT",
        "/tenants/acme/users/carol/password",
        Some(TOKEN),
        &[],
        Some(r#"{"password":"second-password"}"#),
    );
    assert_eq!(changed.status, 200, "{}", changed.body);
    let (code, _) = running.token("acme", ("crm-1", "crm-1-secret"), carol);
    assert_eq!(code, 400, "the old password no longer works");
    let (code, body) = running.token(
        "acme",
        ("crm-1", "crm-1-secret"),
        "grant_type=password&username=carol&password=second-password",
    );
    assert_eq!(code, 200, "{body}");

    // Five failures lock carol out; unlock lets her in again.
    for _ in 0..5 {
        running.token(
            "acme",
            ("crm-1", "crm-1-secret"),
            "grant_type=password&username=carol&password=nope-nope",
        );
    }
    let listed = running.get("/tenants/acme/users");
    let carol_row = listed.body["users"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["username"] == "carol").cloned())
        .expect("carol listed");
    assert!(carol_row["locked_until"].is_string(), "{carol_row}");
    let unlocked = running.call(
        "POST",
        "/tenants/acme/users/carol/unlock",
        Some(TOKEN),
        &[],
        None,
    );
    assert_eq!(unlocked.status, 200, "{}", unlocked.body);
    assert!(unlocked.body["locked_until"].is_null());
    let (code, body) = running.token(
        "acme",
        ("crm-1", "crm-1-secret"),
        "grant_type=password&username=carol&password=second-password",
    );
    assert_eq!(code, 200, "{body}");

    let sso = running.post(
        "/tenants/acme/users",
        json!({"username": "sam", "sign_in": "sso", "password": "some-password"}),
    );
    assert_eq!(sso.status, 422, "{}", sso.body);
    let twice = running.post("/tenants/acme/users", json!({"username": "carol"}));
    assert_eq!(twice.status, 409);
    let nowhere = running.post("/tenants/nowhere/users", json!({"username": "x"}));
    assert_eq!(nowhere.status, 404);
}

#[test]
fn every_admin_change_is_in_the_audit_chain_with_actor_before_and_after() {
    let running = start();
    let before = running.audit_count();
    assert_eq!(
        running
            .post("/tenants", json!({"tenant": "umbrella"}))
            .status,
        201
    );
    assert_eq!(
        running
            .edit("crm", "\"2\"", json!({"scopes": ["read"]}))
            .status,
        201
    );
    let entries = running.store.audit_entries(0, 100_000).expect("audit");
    assert_eq!(entries.len(), before + 2);
    let last: Vec<Value> = entries[before..]
        .iter()
        .map(|(_, _, kind, entry)| {
            assert_eq!(kind, "admin");
            serde_json::from_str(entry).expect("JSON")
        })
        .collect();
    assert_eq!(last[0]["action"], "create_tenant");
    assert_eq!(last[0]["actor"], "admin-1");
    assert!(last[0]["before"].is_null());
    assert_eq!(last[0]["after"]["tenant"], "umbrella");
    assert_eq!(last[1]["action"], "append_revision");
    assert_eq!(last[1]["before"]["revision"]["rev"], 2);
    assert_eq!(last[1]["after"]["revision"]["rev"], 3);
    assert_eq!(last[1]["source"], "127.0.0.1");
    assert!(last[1]["policy_sha256"]
        .as_str()
        .is_some_and(|s| s.len() == 64));
    let (count, broken) = running.store.verify_audit().expect("verify");
    assert_eq!(count as usize, before + 2);
    assert_eq!(broken, None);
}

#[test]
fn the_audit_log_is_searched_by_filters_and_read_in_pages() {
    let running = start();
    running.token("acme", ("crm-1", "crm-1-secret"), ALICE);
    running.token("acme", ("crm-1", "crm-1-secret"), ALICE);
    running.token("globex", ("reports-2", "reports-2-secret"), BOB);
    running.token(
        "acme",
        ("sync-1", "sync-1-secret"),
        "grant_type=client_credentials",
    );
    running.token("acme", ("crm-1", "wrong"), ALICE);
    assert_eq!(
        running
            .post("/tenants", json!({"tenant": "umbrella"}))
            .status,
        201
    );

    let all = running.get("/audit?limit=1000");
    assert_eq!(all.status, 200, "{}", all.body);
    let entries = all.body["entries"].as_array().expect("entries").clone();
    assert_eq!(entries.len(), running.audit_count());
    assert!(all.body["next_cursor"].is_null());
    let seqs: Vec<i64> = entries.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "newest first");
    assert_eq!(entries[0]["kind"], "admin");

    let check = |query: &str, field: &str, want: &str| {
        let page = running.get(&format!("/audit?{query}"));
        assert_eq!(page.status, 200, "{query}: {}", page.body);
        let rows = page.body["entries"].as_array().expect("entries").clone();
        assert!(!rows.is_empty(), "{query} finds something");
        for row in &rows {
            assert_eq!(row["entry"][field], want, "{query}: {row}");
        }
        rows.len()
    };
    assert_eq!(check("decision=denied", "decision", "denied"), 2);
    assert_eq!(
        check(
            "kind=token&grant_type=password&decision=granted",
            "grant_type",
            "password"
        ),
        2
    );
    assert_eq!(check("tenant=globex", "tenant", "globex"), 1);
    assert_eq!(check("app_id=sync", "app_id", "sync"), 1);
    assert_eq!(check("kind=admin", "kind", "admin"), 1);
    let future = running.get("/audit?since=2030-01-01T00:00:00Z");
    assert_eq!(future.body["entries"], json!([]));
    let past = running.get("/audit?until=2026-11-25T12:00:00Z");
    assert_eq!(
        past.body["entries"],
        json!([]),
        "the fixed clock is 12:00: nothing before it"
    );

    // Pages of two, following the cursor, give every entry once, in order.
    let mut paged = Vec::new();
    let mut cursor: Option<i64> = None;
    loop {
        let path = match cursor {
            Some(c) => format!("/audit?limit=2&cursor={c}"),
            None => "/audit?limit=2".to_string(),
        };
        let page = running.get(&path);
        assert_eq!(page.status, 200, "{}", page.body);
        for e in page.body["entries"].as_array().expect("entries") {
            paged.push(e["seq"].as_i64().unwrap());
        }
        match page.body["next_cursor"].as_i64() {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(paged, seqs);

    for bad in [
        "limit=0",
        "limit=5000",
        "cursor=abc",
        "since=yesterday",
        "colour=red",
        "kind=token&kind=admin",
    ] {
        let answer = running.get(&format!("/audit?{bad}"));
        assert_eq!(answer.status, 400, "{bad}: {}", answer.body);
        assert_eq!(answer.body["error"], "invalid_request");
    }
}

#[test]
fn retention_removes_old_entries_and_the_rest_of_the_chain_still_verifies() {
    use granted_host::store::{AdminAudit, Change, ChangeRecord};
    let store = granted_host::testing::store().expect("store");
    let change = |at: &str, tenant: &str| {
        let audit = AdminAudit {
            actor: "test".into(),
            source: "local".into(),
            policy_sha256: "0".repeat(64),
            now: Timestamp::parse(at).expect("instant"),
        };
        store
            .admin_change(&audit, |tx| {
                tx.insert_tenant(&granted_policy::model::TenantRecord {
                    tenant: tenant.into(),
                    sso_required: false,
                    password_max_age_days: None,
                    installs: vec![],
                    identity_provider: None,
                })?;
                Ok(Change::Made(
                    (),
                    ChangeRecord {
                        action: "create_tenant",
                        target: json!({"tenant": tenant}),
                        before: Value::Null,
                        after: json!({}),
                    },
                ))
            })
            .expect("change");
    };
    change("2026-01-01T00:00:00Z", "a");
    change("2026-06-01T00:00:00Z", "b");
    change("2026-11-01T00:00:00Z", "c");
    let cutoff = Timestamp::parse("2026-05-01T00:00:00Z").expect("instant");
    assert_eq!(store.prune_audit(cutoff).expect("prune"), 1);
    assert_eq!(store.prune_audit(cutoff).expect("prune again"), 0);
    assert_eq!(store.verify_audit().expect("verify"), (2, None));
    change("2026-11-02T00:00:00Z", "d");
    assert_eq!(store.verify_audit().expect("verify"), (3, None));
    // Everything old goes; the next entry still links to the anchor.
    let later = Timestamp::parse("2027-01-01T00:00:00Z").expect("instant");
    assert_eq!(store.prune_audit(later).expect("prune"), 3);
    assert_eq!(store.verify_audit().expect("verify"), (0, None));
    change("2027-01-02T00:00:00Z", "e");
    assert_eq!(store.verify_audit().expect("verify"), (1, None));
    assert_eq!(
        store.audit_entries(0, 10).expect("entries")[0].0,
        5,
        "sequence numbers go on"
    );
}

#[test]
fn the_sunset_report_says_who_still_uses_the_password_grant_and_what_updating_takes() {
    let running = start();
    for _ in 0..2 {
        let (code, body) = running.token("acme", ("crm-1", "crm-1-secret"), ALICE);
        assert_eq!(code, 200, "{body}");
    }
    let (code, body) = running.token("acme", ("reports-1", "reports-1-secret"), ALICE);
    assert_eq!(code, 200, "{body}");
    running.token("acme", ("crm-1", "wrong"), ALICE);

    let report = running.get("/reports/sunset");
    assert_eq!(report.status, 200, "{}", report.body);
    let app = |id: &str| {
        report.body["apps"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["app_id"] == id).cloned())
            .expect("app in the report")
    };
    let row = |app: &Value, tenant: &str| {
        app["tenants"]
            .as_array()
            .and_then(|t| t.iter().find(|x| x["tenant"] == tenant).cloned())
            .expect("tenant row")
    };
    let crm = app("crm");
    assert_eq!(crm["status"], "available");
    let acme = row(&crm, "acme");
    assert_eq!(acme["password_tokens_7_days"], 2, "{acme}");
    assert_eq!(acme["password_tokens_30_days"], 2);
    assert_eq!(acme["last_password_use"], "2026-11-25T12:00:00Z");
    assert_eq!(acme["update_takes_away_password"], false);
    assert_eq!(row(&crm, "globex")["password_tokens_30_days"], 0);
    assert!(row(&crm, "globex")["last_password_use"].is_null());

    let reports = app("reports");
    assert_eq!(reports["status"], "kept");
    let acme = row(&reports, "acme");
    assert_eq!(acme["password_now"], true);
    assert_eq!(acme["update_takes_away_password"], true);
    assert_eq!(acme["password_tokens_7_days"], 1);
    assert_eq!(row(&reports, "globex")["password_now"], false);
    assert_eq!(app("sync")["status"], "never");
    assert_eq!(report.body["password_tokens_30_days"], 3);
    let days = crm["daily_password_tokens"]
        .as_array()
        .expect("daily counts");
    assert_eq!(days.len(), 30);
    assert_eq!(days[29], json!({"date": "2026-11-25", "count": 2}));
    assert_eq!(days[0]["date"], "2026-10-27");
    assert_eq!(
        days.iter().filter_map(|d| d["count"].as_i64()).sum::<i64>(),
        2
    );
}

#[test]
fn metrics_count_decisions_latency_the_kdf_queue_and_lockouts() {
    let running = start();
    running.token("acme", ("crm-1", "crm-1-secret"), ALICE);
    running.token("acme", ("crm-1", "crm-1-secret"), ALICE);
    running.token("globex", ("reports-2", "reports-2-secret"), BOB);
    for _ in 0..5 {
        running.token(
            "acme",
            ("crm-1", "crm-1-secret"),
            "grant_type=password&username=alice&password=nope",
        );
    }
    let mut response = common::agent()
        .get(format!("{}/metrics", running.base))
        .call()
        .expect("metrics");
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.body_mut().read_to_string().expect("text");
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .expect("a number")
    };
    assert_eq!(
        value(
            r#"granted_token_decisions_total{kind="token",grant_type="password",decision="granted",reason="issued",cause="issued"}"#
        ),
        2.0
    );
    let denied: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("granted_token_decisions_total{") && l.contains(r#"decision="denied""#)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(denied, 6.0, "{text}");
    assert_eq!(
        value(r#"granted_request_duration_seconds_count{endpoint="token"}"#),
        8.0
    );
    assert_eq!(
        value(r#"granted_request_duration_seconds_bucket{endpoint="token",le="+Inf"}"#),
        8.0
    );
    assert_eq!(value("granted_kdf_queue_depth"), 0.0);
    assert!(value("granted_kdf_queue_capacity") >= 1.0);
    assert_eq!(
        value("granted_users_locked"),
        1.0,
        "alice is locked after five failures"
    );
    assert_eq!(value("granted_throttled_total"), 0.0);
    // No tenant, client or user name is a label.
    for name in ["acme", "globex", "alice", "bob", "crm-1"] {
        assert!(!text.contains(name), "{name} in the metrics");
    }
}

#[test]
fn tenants_show_their_installs_and_the_openapi_document_lists_every_route() {
    let running = start();
    let tenants = running.get("/tenants");
    assert_eq!(tenants.status, 200, "{}", tenants.body);
    let names: Vec<&str> = tenants.body["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .filter_map(|t| t["tenant"].as_str())
        .collect();
    assert_eq!(names, ["acme", "globex", "initech"]);
    let acme = running.get("/tenants/acme");
    assert_eq!(acme.status, 200, "{}", acme.body);
    let reports = acme.body["installs"]
        .as_array()
        .and_then(|i| i.iter().find(|i| i["app_id"] == "reports").cloned())
        .expect("acme installs reports");
    assert_eq!(reports["rev"], 1);
    assert_eq!(reports["latest_rev"], 2);
    assert_eq!(reports["password_now"], true);
    assert_eq!(reports["password_after_update"], false);
    let initech = running.get("/tenants/initech");
    assert_eq!(initech.body["sso_required"], true);
    assert_eq!(running.get("/tenants/nowhere").status, 404);

    // The document needs no token and documents each route the API serves.
    let doc = running.call("GET", "/openapi.json", None, &[], None);
    assert_eq!(doc.status, 200);
    assert!(doc.body["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.")));
    let paths = doc.body["paths"].as_object().expect("paths");
    let operations: usize = paths
        .values()
        .map(|p| p.as_object().map(|o| o.len()).unwrap_or(0))
        .sum();
    assert_eq!(operations, 26, "{:?}", paths.keys().collect::<Vec<_>>());
    for (path, method) in [
        ("/tenants/{tenant}/identity-provider", "get"),
        ("/tenants/{tenant}/identity-provider", "put"),
        ("/tenants/{tenant}/identity-provider", "delete"),
        ("/tenants/{tenant}/identity-provider/check", "post"),
        ("/tenants/{tenant}/users/{username}/consents", "get"),
        (
            "/tenants/{tenant}/users/{username}/consents/{app_id}",
            "delete",
        ),
        ("/apps", "post"),
        ("/apps/{app_id}/revisions", "post"),
        ("/previews/create", "post"),
        ("/tenants/{tenant}/users/{username}/password", "put"),
        ("/audit", "get"),
        ("/reports/sunset", "get"),
    ] {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} documented"
        );
    }
    assert!(doc.body["components"]["securitySchemes"]["admin_token"].is_object());
    // Every reference resolves.
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    refs(&doc.body, &mut found);
    assert!(found.len() > 20);
    for r in found {
        let name = r
            .strip_prefix("#/components/schemas/")
            .expect("a schema reference");
        assert!(
            doc.body["components"]["schemas"][name].is_object(),
            "{r} does not resolve"
        );
    }
}

#[test]
fn the_edit_context_is_what_the_server_previews_an_edit_against() {
    let running = start();
    let ctx = running.get("/apps/crm/edit-context");
    assert_eq!(ctx.status, 200, "{}", ctx.body);
    assert_eq!(ctx.etag.as_deref(), Some("\"2\""));
    for edit in [
        json!({"grant_type": "client_credentials"}),
        json!({"client_id": "reports-2"}),
        json!({"scopes": ["read"]}),
    ] {
        let mut input = ctx.body.clone();
        let mut proposal = edit.clone();
        proposal["app_id"] = json!("crm");
        input["edit"] = proposal;
        // What the admin page computes in the browser (here: the same policy, natively).
        let local: Value = serde_json::from_slice(&granted_policy::api::call(
            "preview",
            input.to_string().as_bytes(),
        ))
        .expect("JSON");
        let server = running.post("/apps/crm/preview", edit.clone());
        assert_eq!(server.status, 200, "{}", server.body);
        assert_eq!(local["ok"], server.body["preview"], "{edit}");
    }
    assert_eq!(running.get("/apps/nope/edit-context").status, 404);
    // And for a new app.
    let ctx = running.get("/create-context");
    assert_eq!(ctx.status, 200, "{}", ctx.body);
    for create in [
        json!({"app_id": "late", "client_id": "late-1", "grant_type": "password"}),
        json!({"app_id": "late", "client_id": "crm-1", "grant_type": "client_credentials"}),
        json!({"app_id": "crm", "client_id": "crm-9", "grant_type": "client_credentials"}),
        json!({"app_id": "fresh", "client_id": "fresh-1", "grant_type": "client_credentials", "scopes": ["read"]}),
    ] {
        let mut input = ctx.body.clone();
        input["create"] = create.clone();
        let local: Value = serde_json::from_slice(&granted_policy::api::call(
            "preview",
            input.to_string().as_bytes(),
        ))
        .expect("JSON");
        let server = running.post("/previews/create", create.clone());
        assert_eq!(server.status, 200, "{}", server.body);
        assert_eq!(local["ok"], server.body["preview"], "{create}");
    }
}

#[test]
fn the_admin_page_is_served_with_the_module_the_server_runs() {
    let running = start();
    let agent = common::agent();
    let fetch = |path: &str| {
        let mut response = agent
            .get(format!("{}{path}", running.base))
            .call()
            .expect("the server answers");
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let (content_type, csp) = (header("content-type"), header("content-security-policy"));
        let body = response.body_mut().read_to_vec().expect("body");
        (status, content_type, csp, body)
    };
    let (status, content_type, csp, body) = fetch("/admin/");
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/html"));
    assert!(
        csp.contains("default-src 'none'") && csp.contains("'wasm-unsafe-eval'"),
        "{csp}"
    );
    let html = String::from_utf8(body).expect("UTF-8");
    assert!(html.contains(r#"<script type="module" src="app.js">"#));
    assert!(html.contains(r#"<label for="token">Admin token</label>"#));
    let (status, content_type, _, js) = fetch("/admin/app.js");
    assert_eq!(
        (status, content_type.as_str()),
        (200, "text/javascript; charset=utf-8")
    );
    assert!(String::from_utf8_lossy(&js).contains("from './pkg/granted_policy.js'"));
    let (status, _, _, _) = fetch("/admin/pkg/granted_policy.js");
    assert_eq!(status, 200);
    let (status, content_type, _, wasm) = fetch("/admin/pkg/granted_policy_bg.wasm");
    assert_eq!((status, content_type.as_str()), (200, "application/wasm"));
    assert_eq!(
        wasm,
        granted_host::guest::EMBEDDED_POLICY,
        "the very module the server runs"
    );
    let health: Value = serde_json::from_slice(&fetch("/healthz").3).expect("JSON");
    assert_eq!(
        health["policy_sha256"],
        granted_host::guest::sha256_hex(&wasm),
        "the digest the page compares with"
    );
}

/// A tenant's identity provider (RULES.md §6): set with its secret, which is never answered nor
/// audited; A9 refuses with its reason and stores nothing; a change names its version in
/// `If-Match` (428 without it, 409 on a stale one); the secret is kept when left out; removed.
#[test]
fn a_tenants_identity_provider_is_set_read_without_its_secret_replaced_and_removed() {
    let running = start();
    let path = "/tenants/initech/identity-provider";
    let put = |headers: &[(&str, &str)], body: Value| {
        running.call("PUT", path, Some(TOKEN), headers, Some(&body.to_string()))
    };
    let delete =
        |headers: &[(&str, &str)]| running.call("DELETE", path, Some(TOKEN), headers, None);
    let before = running.audit_count();
    assert_eq!(running.get(path).status, 404);
    assert_eq!(running.get("/tenants/nobody/identity-provider").status, 404);

    // A9: plain http, or no `openid`: 422 with the reason, nothing stored.
    for bad in [
        json!({"issuer": "http://idp.initech.example", "client_id": "granted", "client_secret": "s"}),
        json!({"issuer": "https://idp.initech.example", "client_id": "granted", "client_secret": "s", "scopes": ["profile"]}),
        json!({"issuer": "https://idp.initech.example?x=1", "client_id": "granted", "client_secret": "s"}),
    ] {
        let refused = put(&[], bad);
        assert_eq!(refused.status, 422, "{}", refused.body);
        assert_eq!(refused.body["error"], "invalid_identity_provider");
    }
    // A new provider needs its secret.
    let refused = put(
        &[],
        json!({"issuer": "https://idp.initech.example", "client_id": "granted"}),
    );
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(running.get(path).status, 404);
    assert_eq!(running.audit_count(), before, "a refusal is not a change");

    let made = put(
        &[],
        json!({"issuer": "https://idp.initech.example", "client_id": "granted-initech",
               "client_secret": "idp-s3cret-value", "link_existing": true}),
    );
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(made.etag.as_deref(), Some("\"1\""));
    assert_eq!(made.body["scopes"], json!(["openid", "profile", "email"]));
    assert_eq!(made.body["has_client_secret"], true);
    let read = running.get(path);
    assert_eq!(read.status, 200);
    assert_eq!(read.body, made.body);
    assert!(!read.body.to_string().contains("idp-s3cret-value"));
    assert_eq!(
        running
            .store
            .identity_provider_secret("initech")
            .unwrap()
            .as_deref()
            .map(String::as_str),
        Some("idp-s3cret-value")
    );
    // The tenant's records, as the token path reads them, carry it.
    let tenant = running.store.tenant("initech").unwrap().unwrap();
    assert_eq!(
        tenant.identity_provider.unwrap().client_id,
        "granted-initech"
    );

    // Replacing it: If-Match required, and current.
    let change = json!({"issuer": "https://idp.initech.example", "client_id": "granted-2"});
    assert_eq!(put(&[], change.clone()).status, 428);
    let stale = put(&[("If-Match", "\"7\"")], change.clone());
    assert_eq!(stale.status, 409, "{}", stale.body);
    let replaced = put(&[("If-Match", "\"1\"")], change);
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    assert_eq!(replaced.etag.as_deref(), Some("\"2\""));
    assert_eq!(replaced.body["client_id"], "granted-2");
    assert_eq!(
        running
            .store
            .identity_provider_secret("initech")
            .unwrap()
            .as_deref()
            .map(String::as_str),
        Some("idp-s3cret-value"),
        "the secret is kept when left out"
    );

    // Removed: If-Match required too.
    assert_eq!(delete(&[]).status, 428);
    assert_eq!(delete(&[("If-Match", "\"1\"")]).status, 409);
    let removed = delete(&[("If-Match", "\"2\"")]);
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_eq!(running.get(path).status, 404);
    assert_eq!(delete(&[("If-Match", "\"2\"")]).status, 404);

    // Three changes audited, none with the secret.
    let entries = running.store.audit_entries(0, 100_000).expect("audit");
    let actions: Vec<String> = entries[before..]
        .iter()
        .map(|(_, _, _, entry)| {
            assert!(!entry.contains("idp-s3cret-value"), "{entry}");
            let entry: Value = serde_json::from_str(entry).expect("JSON");
            entry["action"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(
        actions,
        [
            "set_identity_provider",
            "set_identity_provider",
            "delete_identity_provider"
        ]
    );
}

/// A stub OpenID provider on loopback that serves only its discovery document.
fn discovery_stub() -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    let served = issuer.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                line.clear();
            }
            let doc = json!({
                "issuer": served,
                "authorization_endpoint": format!("{served}/authorize"),
                "token_endpoint": format!("{served}/token"),
                "jwks_uri": format!("{served}/jwks"),
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                "authorization_response_iss_parameter_supported": true,
            })
            .to_string();
            let mut out = stream;
            let _ = write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{doc}",
                doc.len()
            );
        }
    });
    issuer
}

/// The admin page's check of a provider: its discovery document fetched and shown (an issuer
/// A9 refuses is never fetched; a provider that cannot be reached is a finding, not an error).
#[test]
fn a_providers_discovery_document_is_checked_before_and_after_saving() {
    let running = start();
    let issuer = discovery_stub();
    let check = |body: Value| running.post("/tenants/initech/identity-provider/check", body);
    let found = check(json!({"issuer": issuer}));
    assert_eq!(found.status, 200, "{}", found.body);
    assert_eq!(found.body["ok"], true);
    assert_eq!(
        found.body["discovery"]["token_endpoint"],
        format!("{issuer}/token")
    );
    assert_eq!(
        found.body["discovery"]["authorization_response_iss_parameter_supported"],
        true
    );
    // Nothing stored, nothing to check by default; then the stored issuer is checked.
    assert_eq!(check(json!({})).status, 404);
    let made = running.call(
        "PUT",
        "/tenants/initech/identity-provider",
        Some(TOKEN),
        &[],
        Some(&json!({"issuer": issuer, "client_id": "granted", "client_secret": "s"}).to_string()),
    );
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(check(json!({})).body["ok"], true);
    // Refused by A9: nothing fetched.
    let refused = check(json!({"issuer": "http://idp.example"}));
    assert_eq!(refused.status, 422, "{}", refused.body);
    // Nobody there: a finding with its code.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let down = check(json!({"issuer": format!("http://127.0.0.1:{port}")}));
    assert_eq!(down.status, 200, "{}", down.body);
    assert_eq!(down.body["ok"], false);
    assert_eq!(down.body["problem"], "unreachable");
    assert_eq!(check(json!({})).status, 200);
    assert_eq!(
        running
            .post("/tenants/nobody/identity-provider/check", json!({}))
            .status,
        404
    );
}
