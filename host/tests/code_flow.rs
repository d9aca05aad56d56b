//! The authorization code flow with PKCE over real HTTP (RULES.md §5), on the demo state, as a
//! browser without JavaScript drives it: the authorization URL, the sign-in page's form with its
//! CSRF token and transaction cookie, the change of an expired password, consent, the redirect
//! with the code, its exchange, the ID token, UserInfo and the discovery document; and what must
//! be refused with nothing stored: a replayed code (which also revokes what it gave), a wrong
//! verifier, a `plain` challenge, an unregistered redirect URI (no redirect at all) and a form
//! post without its CSRF token.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

const ADMIN: &str = "test-admin-token-0123456789abcdef-0123456789";
const VERIFIER: &str = "code-flow-test-verifier-0123456789-abcdefghijklmnop";
const REDIRECT: &str = "http://127.0.0.1:8765/callback";

use common::Demo as Running;

fn start() -> Running {
    common::demo(ADMIN)
}

fn agent() -> ureq::Agent {
    common::redirectless_agent()
}

/// Status, headers (lowercase names), body of one answer.
struct Page {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Page {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A hidden field's value.
    fn field(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker)? + marker.len();
        let end = self.body[start..].find('"')?;
        Some(self.body[start..start + end].to_string())
    }

    /// A parameter of the redirect's query.
    fn back(&self, name: &str) -> Option<String> {
        let location = self.header("location")?;
        let query = location.split_once('?')?.1;
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

fn page(mut response: ureq::http::Response<ureq::Body>) -> Page {
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                v.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    Page {
        status: response.status().as_u16(),
        headers,
        body: response.body_mut().read_to_string().unwrap_or_default(),
    }
}

fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A browser on one authorization request: its URL, the transaction cookie, the last CSRF token.
struct Browser {
    url: String,
    cookie: Option<String>,
    csrf: Option<String>,
}

impl Browser {
    fn new(run: &Running, tenant: &str, extra: &[(&str, &str)]) -> Browser {
        let challenge = challenge(VERIFIER);
        let mut pairs = vec![
            ("response_type", "code"),
            ("client_id", "notes-1"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid read"),
            ("state", "st-1"),
            ("nonce", "n-1"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        for (k, v) in extra {
            pairs.retain(|(name, _)| name != k);
            if !v.is_empty() {
                pairs.push((k, v));
            }
        }
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            query.append_pair(k, v);
        }
        Browser {
            url: format!(
                "{}/tenants/{tenant}/connect/authorize?{}",
                run.base,
                query.finish()
            ),
            cookie: None,
            csrf: None,
        }
    }

    fn keep(&mut self, page: &Page) {
        for (name, value) in &page.headers {
            if name == "set-cookie" {
                if let Some(rest) = value.strip_prefix("granted_authorize=") {
                    let v = rest.split(';').next().unwrap_or_default();
                    self.cookie = (!v.is_empty()).then(|| v.to_string());
                }
            }
        }
        if let Some(csrf) = page.field("csrf") {
            self.csrf = Some(csrf);
        }
    }

    fn open(&mut self) -> Page {
        let p = page(agent().get(&self.url).call().expect("authorize"));
        self.keep(&p);
        p
    }

    /// Posts a page's form, with the cookie and CSRF token the browser holds.
    fn post(&mut self, fields: &[(&str, &str)]) -> Page {
        let csrf = self.csrf.clone().unwrap_or_default();
        let cookie = self.cookie.clone();
        self.post_raw(fields, Some(&csrf), cookie.as_deref())
    }

    fn post_raw(
        &mut self,
        fields: &[(&str, &str)],
        csrf: Option<&str>,
        cookie: Option<&str>,
    ) -> Page {
        let mut form = form_urlencoded::Serializer::new(String::new());
        if let Some(csrf) = csrf {
            form.append_pair("csrf", csrf);
        }
        for (k, v) in fields {
            form.append_pair(k, v);
        }
        let mut request = agent()
            .post(&self.url)
            .header("Content-Type", "application/x-www-form-urlencoded");
        if let Some(cookie) = cookie {
            request = request.header("Cookie", format!("granted_authorize={cookie}"));
        }
        let p = page(request.send(form.finish()).expect("form post"));
        self.keep(&p);
        p
    }
}

fn sign_in(browser: &mut Browser, username: &str, password: &str) -> Page {
    browser.post(&[
        ("action", "sign_in"),
        ("username", username),
        ("password", password),
    ])
}

fn exchange(run: &Running, code: &str, verifier: &str) -> (u16, Value) {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "authorization_code")
        .append_pair("code", code)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_verifier", verifier);
    common::token(
        &run.base,
        "globex",
        ("notes-1", "notes-1-secret"),
        &form.finish(),
    )
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

fn admin(run: &Running, method: &str, path: &str) -> (u16, Value) {
    let url = format!("{}/admin/api/v1{path}", run.base);
    let request = ureq::http::Request::builder()
        .method(method)
        .uri(&url)
        .header("Authorization", format!("Bearer {ADMIN}"))
        .body(())
        .expect("request");
    let p = page(agent().run(request).expect("admin API"));
    (
        p.status,
        serde_json::from_str(&p.body).unwrap_or(Value::Null),
    )
}

/// Sign-in, consent and the code, through the pages: the code.
fn code_for(run: &Running, username: &str, password: &str) -> String {
    let mut browser = Browser::new(run, "globex", &[]);
    assert_eq!(browser.open().status, 200);
    let consent = sign_in(&mut browser, username, password);
    let back = if consent.status == 303 {
        consent
    } else {
        assert_eq!(consent.status, 200, "{}", consent.body);
        browser.post(&[("action", "consent"), ("approve", "yes")])
    };
    assert_eq!(back.status, 303, "{}", back.body);
    back.back("code").expect("a code")
}

#[test]
fn the_whole_flow_gives_tokens_an_id_token_with_the_nonce_and_userinfo() {
    let run = start();
    let mut browser = Browser::new(&run, "globex", &[]);
    let first = browser.open();
    assert_eq!(first.status, 200, "{}", first.body);
    // The page names the tenant and the app, has labelled fields, and carries the strict CSP.
    assert!(first.body.contains("globex") && first.body.contains("notes"));
    assert!(first.body.contains(r#"<label for="password">"#));
    let csp = first.header("content-security-policy").expect("CSP");
    assert!(
        csp.contains("default-src 'none'")
            && csp.contains("form-action 'self' http://127.0.0.1:8765"),
        "{csp}"
    );
    assert_eq!(first.header("cache-control"), Some("no-store"));
    assert_eq!(first.header("x-frame-options"), Some("DENY"));
    let cookie = first
        .headers
        .iter()
        .find(|(n, _)| n == "set-cookie")
        .map(|(_, v)| v.clone())
        .expect("a transaction cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(
        cookie.contains("Path=/tenants/globex/connect/authorize"),
        "{cookie}"
    );
    // The issuer is http here: no `Secure`.
    assert!(!cookie.contains("Secure"), "{cookie}");
    assert!(browser.csrf.is_some(), "the form carries a CSRF token");

    let consent = sign_in(&mut browser, "bob", "tr0ub4dor&3");
    assert_eq!(consent.status, 200, "{}", consent.body);
    assert!(consent.body.contains(r#"name="action" value="consent""#));
    assert!(consent.body.contains("openid") && consent.body.contains("read"));
    let back = browser.post(&[("action", "consent"), ("approve", "yes")]);
    assert_eq!(back.status, 303, "{}", back.body);
    let location = back.header("location").expect("location");
    assert!(
        location.starts_with("http://127.0.0.1:8765/callback?"),
        "{location}"
    );
    assert_eq!(back.back("state").as_deref(), Some("st-1"));
    assert_eq!(
        back.back("iss").as_deref(),
        Some("http://127.0.0.1:8080/tenants/globex")
    );
    // The transaction is over: its cookie is cleared.
    assert!(back.headers.iter().any(|(n, v)| n == "set-cookie"
        && v.starts_with("granted_authorize=;")
        && v.contains("Max-Age=0")));
    let code = back.back("code").expect("a code");

    let (status, tokens) = exchange(&run, &code, VERIFIER);
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["scope"], "openid read");
    assert!(tokens["refresh_token"].is_string());
    let id = claims(tokens["id_token"].as_str().expect("an id_token"));
    assert_eq!(id["iss"], "http://127.0.0.1:8080/tenants/globex");
    assert_eq!(id["aud"], "notes-1");
    assert_eq!(id["nonce"], "n-1");
    assert!(id["auth_time"].is_i64() && id["exp"].is_i64() && id["iat"].is_i64());
    let sub = id["sub"].as_str().expect("sub");
    assert_ne!(
        sub, "bob",
        "the subject is the user's stable sub, not the username"
    );
    let access = claims(tokens["access_token"].as_str().expect("access token"));
    assert_eq!(access["sub"], sub);

    // UserInfo answers for the access token.
    let bearer = format!("Bearer {}", tokens["access_token"].as_str().unwrap());
    for method in ["GET", "POST"] {
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}/tenants/globex/connect/userinfo", run.base))
            .header("Authorization", &bearer)
            .body(())
            .unwrap();
        let p = page(agent().run(request).expect("userinfo"));
        assert_eq!(p.status, 200, "{method}: {}", p.body);
        let info: Value = serde_json::from_str(&p.body).unwrap();
        assert_eq!(info["sub"], sub);
        assert_eq!(info["preferred_username"], "bob");
    }
    let p = page(
        agent()
            .get(format!("{}/tenants/globex/connect/userinfo", run.base))
            .call()
            .unwrap(),
    );
    assert_eq!(p.status, 401);
    assert_eq!(
        p.header("www-authenticate"),
        Some("Bearer realm=\"granted\"")
    );

    // The refresh token rotates.
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let (status, rotated) = common::token(
        &run.base,
        "globex",
        ("notes-1", "notes-1-secret"),
        &format!("grant_type=refresh_token&refresh_token={refresh}"),
    );
    assert_eq!(status, 200, "{rotated}");

    // The code again: refused, and what it gave is revoked.
    let (status, reused) = exchange(&run, &code, VERIFIER);
    assert_eq!(status, 400, "{reused}");
    assert_eq!(reused["error"], "invalid_grant");
    let (status, after) = common::token(
        &run.base,
        "globex",
        ("notes-1", "notes-1-secret"),
        &format!(
            "grant_type=refresh_token&refresh_token={}",
            rotated["refresh_token"].as_str().unwrap()
        ),
    );
    assert_eq!(
        status, 400,
        "the family of a replayed code is revoked: {after}"
    );

    // The consent is remembered, listed, and withdrawn through the admin API.
    let (status, consents) = admin(&run, "GET", "/tenants/globex/users/bob/consents");
    assert_eq!(status, 200, "{consents}");
    assert_eq!(consents["consents"][0]["app_id"], "notes");
    let again = code_for(&run, "bob", "tr0ub4dor&3");
    assert!(!again.is_empty());
    let (status, withdrawn) = admin(&run, "DELETE", "/tenants/globex/users/bob/consents/notes");
    assert_eq!(status, 200, "{withdrawn}");
    assert_eq!(withdrawn["consents"], serde_json::json!([]));
    let mut browser = Browser::new(&run, "globex", &[]);
    browser.open();
    let asked = sign_in(&mut browser, "bob", "tr0ub4dor&3");
    assert!(
        asked.body.contains(r#"name="action" value="consent""#),
        "asked again"
    );
}

#[test]
fn a_form_post_without_its_csrf_token_or_cookie_is_refused_and_changes_nothing() {
    let run = start();
    let audited = |run: &Running| {
        let (status, page) = admin(run, "GET", "/audit?kind=authorization&limit=100");
        assert_eq!(status, 200, "{page}");
        page["entries"].as_array().map_or(0, Vec::len)
    };
    assert_eq!(audited(&run), 0);
    let mut browser = Browser::new(&run, "globex", &[]);
    browser.open();
    let cookie = browser.cookie.clone().expect("cookie");
    let wrong = [
        ("action", "sign_in"),
        ("username", "bob"),
        ("password", "wrong password"),
    ];
    // A cross-site post: no cookie (SameSite=Lax keeps it), no token.
    let p = browser.post_raw(&wrong, None, None);
    assert_eq!(p.status, 403, "{}", p.body);
    // The cookie but no token, a wrong token, the token without the cookie.
    assert_eq!(browser.post_raw(&wrong, None, Some(&cookie)).status, 403);
    assert_eq!(
        browser.post_raw(&wrong, Some("AAAA"), Some(&cookie)).status,
        403
    );
    let csrf = browser.csrf.clone().unwrap();
    assert_eq!(browser.post_raw(&wrong, Some(&csrf), None).status, 403);
    // Nothing was judged, counted or stored.
    assert_eq!(audited(&run), 0);
    // The same post with its token is judged, and the failure audited.
    let judged = browser.post_raw(&wrong, Some(&csrf), Some(&cookie));
    assert_eq!(judged.status, 401, "{}", judged.body);
    assert_eq!(audited(&run), 1);
}

#[test]
fn unknown_users_and_wrong_passwords_see_the_same_page() {
    let run = start();
    let mut bodies = Vec::new();
    for (user, password) in [("bob", "not his password"), ("nobody", "whatever123")] {
        let mut browser = Browser::new(&run, "globex", &[]);
        browser.open();
        let p = sign_in(&mut browser, user, password);
        assert_eq!(p.status, 401, "{}", p.body);
        // The page differs only in its CSRF token.
        let csrf = browser.csrf.clone().unwrap();
        bodies.push(p.body.replace(&csrf, "CSRF"));
    }
    assert_eq!(bodies[0], bodies[1]);
}

#[test]
fn an_unregistered_redirect_uri_is_an_error_page_and_no_redirect() {
    let run = start();
    let mut browser = Browser::new(
        &run,
        "globex",
        &[("redirect_uri", "https://evil.example/cb")],
    );
    let p = browser.open();
    assert_eq!(p.status, 400, "{}", p.body);
    assert!(p.header("location").is_none());
    assert!(p.body.contains("invalid_request") || p.body.contains("redirect"));
}

#[test]
fn a_plain_challenge_goes_back_as_invalid_request() {
    let run = start();
    let mut browser = Browser::new(
        &run,
        "globex",
        &[
            ("code_challenge", VERIFIER),
            ("code_challenge_method", "plain"),
        ],
    );
    let p = browser.open();
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(p.back("error").as_deref(), Some("invalid_request"));
    assert_eq!(p.back("state").as_deref(), Some("st-1"));
}

#[test]
fn a_loopback_redirect_uri_in_another_port_is_where_the_user_goes_back() {
    let run = start();
    let mut browser = Browser::new(
        &run,
        "globex",
        &[
            ("redirect_uri", "http://127.0.0.1:49152/callback"),
            ("code_challenge_method", "plain"),
        ],
    );
    let p = browser.open();
    assert_eq!(p.status, 303, "{}", p.body);
    let location = p.header("location").unwrap();
    assert!(
        location.starts_with("http://127.0.0.1:49152/callback?"),
        "{location}"
    );
}

#[test]
fn a_wrong_verifier_is_refused() {
    let run = start();
    let code = code_for(&run, "bob", "tr0ub4dor&3");
    let (status, body) = exchange(
        &run,
        &code,
        "another-verifier-0123456789-0123456789-abcdefgh",
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");
}

#[test]
fn an_expired_password_is_changed_on_the_page_and_the_old_one_stops_working() {
    let run = start();
    let mut browser = Browser::new(&run, "globex", &[]);
    browser.open();
    // carol's password is older than globex's 90 days.
    let change = sign_in(&mut browser, "carol", "an old passw0rd");
    assert_eq!(change.status, 200, "{}", change.body);
    assert!(change
        .body
        .contains(r#"name="action" value="change_password""#));
    let mismatch = browser.post(&[
        ("action", "change_password"),
        ("new_password", "a new passw0rd!"),
        ("confirm_password", "another one!!"),
    ]);
    assert_eq!(mismatch.status, 400, "{}", mismatch.body);
    let same = browser.post(&[
        ("action", "change_password"),
        ("new_password", "an old passw0rd"),
        ("confirm_password", "an old passw0rd"),
    ]);
    assert_eq!(
        same.status, 400,
        "the new password must differ: {}",
        same.body
    );
    let consent = browser.post(&[
        ("action", "change_password"),
        ("new_password", "a new passw0rd!"),
        ("confirm_password", "a new passw0rd!"),
    ]);
    assert_eq!(consent.status, 200, "{}", consent.body);
    assert!(consent.body.contains(r#"name="action" value="consent""#));
    // The old password no longer signs in; the new one does.
    let mut again = Browser::new(&run, "globex", &[]);
    again.open();
    assert_eq!(sign_in(&mut again, "carol", "an old passw0rd").status, 401);
    let mut again = Browser::new(&run, "globex", &[]);
    again.open();
    let next = sign_in(&mut again, "carol", "a new passw0rd!");
    assert_eq!(next.status, 200, "{}", next.body);
    assert!(next.body.contains(r#"name="action" value="consent""#));
}

#[test]
fn discovery_names_the_new_endpoints() {
    let run = start();
    for path in [
        "/tenants/globex/.well-known/openid-configuration",
        "/tenants/globex/.well-known/oauth-authorization-server",
    ] {
        let p = page(agent().get(format!("{}{path}", run.base)).call().unwrap());
        assert_eq!(p.status, 200);
        let doc: Value = serde_json::from_str(&p.body).unwrap();
        assert_eq!(
            doc["authorization_endpoint"],
            "http://127.0.0.1:8080/tenants/globex/connect/authorize"
        );
        assert_eq!(
            doc["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
        assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    }
    let p = page(
        agent()
            .get(format!(
                "{}/tenants/globex/.well-known/openid-configuration",
                run.base
            ))
            .call()
            .unwrap(),
    );
    let doc: Value = serde_json::from_str(&p.body).unwrap();
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256"])
    );
    assert_eq!(
        doc["userinfo_endpoint"],
        "http://127.0.0.1:8080/tenants/globex/connect/userinfo"
    );
}
