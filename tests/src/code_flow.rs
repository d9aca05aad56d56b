//! Runs the authorization code vectors (RULES.md §5): an `authorize_request` judged up to C8,
//! and (extension) a `flow` that follows the request through its pages (sign-in, change of an
//! expired password, consent) to the code and its exchange, as a host drives the
//! `authorization` entry point.

use crate::driver::{
    check, check_signed, check_token, decide, kdf_answer, kdf_slot, module_context, seal, Settings,
    Store,
};
use crate::format::{Expect, Flow, TokenRequestSpec, Vector};
use crate::{driver::call_ok, Runtime};
use anyhow::{anyhow, bail, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

/// An `authorize_request` vector: the request opened in a browser, judged up to C8.
pub fn run_authorize(
    rt: &dyn Runtime,
    vector: &Vector,
    request: &Value,
    settings: &Settings,
) -> Result<Vec<String>> {
    let store = seal(rt, &vector.state, settings)?;
    let action = json!({"action": "authorize"});
    let decision = authorize(
        rt,
        vector,
        &store,
        request,
        &action,
        &Value::Null,
        &vector.now,
        &vector.name,
        settings,
    )?;
    let mut out = Vec::new();
    check_page(&vector.expect, &decision, &mut out);
    Ok(out)
}

/// A `flow` vector: the pages' actions and the exchange on one store, each answer's effects
/// applied before the next; the transaction's `signed_in` carried from answer to answer.
pub fn run_flow(
    rt: &dyn Runtime,
    vector: &Vector,
    flow: &Flow,
    settings: &Settings,
) -> Result<Vec<String>> {
    let mut store = seal(rt, &vector.state, settings)?;
    let mut mismatches = Vec::new();
    let mut at = vector.now.clone();
    let mut signed_in = Value::Null;
    let mut code = None::<String>;
    let nonce = query_param(&flow.authorize_request["query"], "nonce");
    for (i, step) in flow.steps.iter().enumerate() {
        if let Some(step_at) = &step.at {
            at = step_at.clone();
        }
        let seed = format!("{}#{}", vector.name, i + 1);
        let mut out = Vec::new();
        let decision = match (&step.action, &step.exchange) {
            (Some(action), None) => {
                let decision = authorize(
                    rt,
                    vector,
                    &store,
                    &flow.authorize_request,
                    action,
                    &signed_in,
                    &at,
                    &seed,
                    settings,
                )?;
                check_page(&step.expect, &decision, &mut out);
                signed_in = decision["signed_in"].clone();
                if let Some(location) = decision["page"]["location"].as_str() {
                    code = location_param(location, "code").or(code);
                }
                decision
            }
            (None, Some(spec)) => {
                let spec = with_code(spec, code.as_deref(), i + 1)?;
                let decision = decide(rt, vector, &store, &spec, &at, &seed, settings)?;
                check_token(&step.expect, &decision, &mut out)?;
                check_signed(&decision, &mut out);
                check_nonce(&decision, nonce.as_deref(), &mut out);
                decision
            }
            _ => bail!(
                "step {}: a flow step has exactly one of `action` and `exchange`",
                i + 1
            ),
        };
        store.apply(&decision["effects"], &at)?;
        let label = step.name.as_deref().unwrap_or_default();
        mismatches.extend(
            out.into_iter()
                .map(|m| format!("step {} ({label}): {m}", i + 1)),
        );
    }
    Ok(mismatches)
}

/// An `exchange` step's token request with its `{code}` placeholders replaced by the code the
/// flow was last redirected with (an error at `step` if none was yet).
pub fn with_code(
    spec: &TokenRequestSpec,
    code: Option<&str>,
    step: usize,
) -> Result<TokenRequestSpec> {
    let mut spec = spec.clone();
    for value in spec.form.iter_mut().flat_map(|f| f.values_mut()) {
        if value == "{code}" {
            *value = code
                .ok_or_else(|| anyhow!("step {step}: `{{code}}` before any code was issued"))?
                .to_string();
        }
    }
    Ok(spec)
}

/// One action through the `authorization` entry point's steps, as a host drives them; answers
/// the `done` step's decision.
#[allow(clippy::too_many_arguments)] // a host's whole context
fn authorize(
    rt: &dyn Runtime,
    vector: &Vector,
    store: &Store,
    request: &Value,
    action: &Value,
    signed_in: &Value,
    now: &str,
    seed: &str,
    settings: &Settings,
) -> Result<Value> {
    let mut input = json!({
        "request": request,
        "action": action,
        "signed_in": signed_in,
        "context": module_context(vector, now, seed, settings),
        "records": {},
    });
    for _ in 0..8 {
        let step = call_ok(rt, "authorization", &input)?;
        match step["step"].as_str() {
            Some("need_records") => input["records"] = store.lookup(&step["lookup"]),
            Some("need_kdf") => input[kdf_slot(&step)] = kdf_answer(rt, &step)?,
            Some("done") => return Ok(step),
            _ => bail!("`authorization` answered an unknown step: {step}"),
        }
    }
    bail!("`authorization` did not finish in 8 steps")
}

/// Compares a page decision with what a step expects.
pub fn check_page(expect: &Expect, decision: &Value, out: &mut Vec<String>) {
    let page = &decision["page"];
    let audit = &decision["audit"];
    let kind = page["page"].as_str().unwrap_or_default();
    let location = page["location"].as_str();
    check("redirect", &expect.redirect, kind == "redirect", out);
    check("page", &expect.page.as_deref().map(Some), Some(kind), out);
    let error = match location {
        Some(location) => location_param(location, "error"),
        None => page["error"].as_str().map(str::to_string),
    };
    check("error", &expect.error.clone().map(Some), error, out);
    check(
        "reason",
        &expect.reason.clone(),
        json!(audit["reason"]),
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
    let effects: Vec<String> = decision["effects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["effect"].as_str().map(str::to_string))
        .collect();
    check("effects", &expect.effects, effects, out);
    if let Some(location) = location {
        // RFC 9207: every response at the redirect URI names its issuer.
        if location_param(location, "iss").is_none() {
            out.push(format!("redirect without `iss`: {location}"));
        }
    }
}

/// An ID token carries the `nonce` of the authorization request, and none when none was sent.
pub fn check_nonce(decision: &Value, nonce: Option<&str>, out: &mut Vec<String>) {
    let body: Value =
        serde_json::from_str(decision["response"]["body"].as_str().unwrap_or_default())
            .unwrap_or_default();
    let Some(token) = body["id_token"].as_str() else {
        return;
    };
    let claims: Value = token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if claims["nonce"].as_str() != nonce {
        out.push(format!(
            "id_token nonce: expected {nonce:?}, got {}",
            claims["nonce"]
        ));
    }
}

/// A parameter of a URL's query, decoded.
pub fn location_param(location: &str, name: &str) -> Option<String> {
    let query = location.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| granted_policy::token::request::form_decode(v).ok())?
    })
}

/// A parameter of a vector's `query` (a list of pairs).
pub fn query_param(query: &Value, name: &str) -> Option<String> {
    query.as_array()?.iter().find_map(|pair| {
        (pair[0].as_str() == Some(name))
            .then(|| pair[1].as_str().map(str::to_string))
            .flatten()
    })
}
