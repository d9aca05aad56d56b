//! The authorization code vectors over real HTTP (RULES.md §5): an `authorize_request` is
//! opened with `GET /tenants/{tenant}/connect/authorize`; a `flow` is driven as a browser does
//! it, through the pages' forms (the transaction cookie, the CSRF token read from the page),
//! and its exchanges are posted to the token endpoint with the code the last redirect carried.
//! The decisions the server recorded are compared with `expect` by the in-module runners' checks,
//! and the HTTP answer must show what was decided: the redirect's `Location`, the error page's
//! status, the named page's form.

use super::http_client::{check_answer, http, send, url_segment, Answer};
use super::vector_server::{start, VectorServer};
use crate::guest::Guest;
use crate::store::PgServer;
use anyhow::{anyhow, bail, Result};
use granted_policy::model::Timestamp;
use granted_vectors::code_flow::{check_nonce, check_page, location_param, query_param, with_code};
use granted_vectors::format::Vector;
use serde_json::Value;
use std::sync::Arc;

/// A browser's view of one transaction: its cookie and the CSRF token of the last page.
#[derive(Default)]
struct Browser {
    cookie: Option<String>,
    csrf: Option<String>,
}

/// An `authorize_request` vector: the URL opened once.
pub(super) fn run_authorize(
    runtime: &tokio::runtime::Runtime,
    guest: Arc<Guest>,
    vector: &Vector,
    pg: Option<&Arc<PgServer>>,
) -> Result<Vec<String>> {
    let request = vector
        .authorize_request
        .as_ref()
        .ok_or_else(|| anyhow!("not an authorize_request vector"))?;
    let running = start(runtime, guest, vector, pg)?;
    let mut browser = Browser::default();
    let answer = open(&running, request, &mut browser);
    let server = running.stop(runtime);
    let decision = one_decision(&server.take_decisions())?;
    let mut out = Vec::new();
    check_page(&vector.expect, &decision, &mut out);
    shows(&answer?, &decision, &mut out);
    Ok(out)
}

/// A `flow` vector: each page action as a form post (the URL opened first when the browser holds
/// no transaction), each exchange as a token request.
pub(super) fn run_flow(
    runtime: &tokio::runtime::Runtime,
    guest: Arc<Guest>,
    vector: &Vector,
    pg: Option<&Arc<PgServer>>,
) -> Result<Vec<String>> {
    let flow = vector
        .flow
        .as_ref()
        .ok_or_else(|| anyhow!("not a flow vector"))?;
    let request = &flow.authorize_request;
    let nonce = query_param(&request["query"], "nonce");
    let mut running = start(runtime, guest.clone(), vector, pg)?;
    let mut at = Timestamp::parse(&vector.now).ok_or_else(|| anyhow!("bad `now`"))?;
    let mut browser = Browser::default();
    let mut code = None::<String>;
    let mut mismatches = Vec::new();
    for (i, step) in flow.steps.iter().enumerate() {
        if let Some(text) = &step.at {
            let step_at = Timestamp::parse(text).ok_or_else(|| anyhow!("bad `at` `{text}`"))?;
            if step_at != at {
                at = step_at;
                running = running.restart_at(runtime, guest.clone(), at)?;
            }
        }
        let mut out = Vec::new();
        match (&step.action, &step.exchange) {
            (Some(action), None) => {
                let kind = action["action"].as_str().unwrap_or_default();
                let answer = if kind == "authorize" {
                    open(&running, request, &mut browser)?
                } else {
                    if browser.cookie.is_none() {
                        // A browser reaches a page's form only by opening the URL first.
                        open(&running, request, &mut browser)?;
                        running.server.take_decisions();
                    }
                    post(&running, request, action, &mut browser)?
                };
                let decision = one_decision(&running.server.take_decisions())?;
                check_page(&step.expect, &decision, &mut out);
                shows(&answer, &decision, &mut out);
                if let Some(location) = decision["page"]["location"].as_str() {
                    code = location_param(location, "code").or(code);
                }
            }
            (None, Some(spec)) => {
                let spec = with_code(spec, code.as_deref(), i + 1)?;
                let http_request = granted_vectors::driver::http_request(&spec)?;
                let answer = send(running.addr, &http_request)?;
                let body = answer.2.clone();
                let decisions = running.server.take_decisions();
                out.extend(check_answer(answer, &decisions, "server", &step.expect)?);
                let decision = serde_json::json!({"response": {"body": body}});
                check_nonce(&decision, nonce.as_deref(), &mut out);
            }
            _ => bail!(
                "step {}: a flow step has exactly one of `action` and `exchange`",
                i + 1
            ),
        }
        let label = step.name.as_deref().unwrap_or_default();
        mismatches.extend(
            out.into_iter()
                .map(|m| format!("step {} ({label}): {m}", i + 1)),
        );
    }
    running.stop(runtime);
    Ok(mismatches)
}

/// The one decision a request recorded.
fn one_decision(decisions: &[Value]) -> Result<Value> {
    match decisions {
        [one] => Ok(one.clone()),
        other => bail!(
            "the server recorded {} decisions for one request",
            other.len()
        ),
    }
}

/// The endpoint's path with the authorization request's query.
fn url(request: &Value) -> String {
    let tenant = request["tenant"].as_str().unwrap_or_default();
    let mut query = form_urlencoded::Serializer::new(String::new());
    for pair in request["query"].as_array().into_iter().flatten() {
        query.append_pair(
            pair[0].as_str().unwrap_or_default(),
            pair[1].as_str().unwrap_or_default(),
        );
    }
    format!(
        "/tenants/{}/connect/authorize?{}",
        url_segment(tenant),
        query.finish()
    )
}

/// `GET` the authorization URL: a new transaction.
fn open(running: &VectorServer, request: &Value, browser: &mut Browser) -> Result<Answer> {
    *browser = Browser::default();
    let answer = http(running.addr, "GET", &url(request), &[], &[])?;
    browser.keep(&answer);
    Ok(answer)
}

/// Posts a page's form for `action`, with the transaction's cookie and CSRF token.
fn post(
    running: &VectorServer,
    request: &Value,
    action: &Value,
    browser: &mut Browser,
) -> Result<Answer> {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("csrf", browser.csrf.as_deref().unwrap_or_default());
    let kind = action["action"].as_str().unwrap_or_default();
    form.append_pair("action", kind);
    for field in ["username", "password", "new_password", "confirm_password"] {
        if let Some(value) = action[field].as_str() {
            form.append_pair(field, value);
        }
    }
    if let Some(approve) = action["approve"].as_bool() {
        form.append_pair("approve", if approve { "yes" } else { "no" });
    }
    let mut headers = vec![(
        "Content-Type".to_string(),
        "application/x-www-form-urlencoded".to_string(),
    )];
    if let Some(cookie) = &browser.cookie {
        headers.push((
            "Cookie".to_string(),
            format!("{}={cookie}", crate::http::AUTHORIZE_COOKIE),
        ));
    }
    let answer = http(
        running.addr,
        "POST",
        &url(request),
        &headers,
        form.finish().as_bytes(),
    )?;
    browser.keep(&answer);
    Ok(answer)
}

impl Browser {
    /// Keeps what an answer sets: the cookie (gone when cleared) and the page's CSRF token.
    fn keep(&mut self, (_, headers, body): &Answer) {
        let prefix = format!("{}=", crate::http::AUTHORIZE_COOKIE);
        for (name, value) in headers {
            if !name.eq_ignore_ascii_case("set-cookie") {
                continue;
            }
            if let Some(rest) = value.strip_prefix(&prefix) {
                let cookie = rest.split(';').next().unwrap_or_default();
                self.cookie = (!cookie.is_empty()).then(|| cookie.to_string());
            }
        }
        self.csrf = hidden_field(body, "csrf").or(self.csrf.take());
    }
}

/// A hidden input's value in a page.
fn hidden_field(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker)? + marker.len();
    let end = page[start..].find('"')?;
    Some(page[start..start + end].to_string())
}

/// The HTTP answer shows what the module decided.
fn shows((status, headers, body): &Answer, decision: &Value, out: &mut Vec<String>) {
    let page = &decision["page"];
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    match page["page"].as_str().unwrap_or_default() {
        "redirect" => {
            if *status != 303 || header("location") != page["location"].as_str() {
                out.push(format!(
                    "the answer is {status} to {:?}, not 303 to the decision's {}",
                    header("location"),
                    page["location"]
                ));
            }
        }
        "error" => {
            if page["status"].as_u64() != Some(u64::from(*status)) || header("location").is_some() {
                out.push(format!(
                    "the error page came as {status} (location {:?}), not {}",
                    header("location"),
                    page["status"]
                ));
            }
        }
        kind => {
            let form = format!("name=\"action\" value=\"{kind}\"");
            if !body.contains(&form) || header("location").is_some() {
                out.push(format!("the answer ({status}) is not the {kind} page"));
            }
            let csp = header("content-security-policy").unwrap_or_default();
            if !csp.contains("default-src 'none'") {
                out.push(format!("the {kind} page's CSP is `{csp}`"));
            }
        }
    }
}
