//! The wasm-bindgen face for JavaScript: the same entry points, taking and returning JS objects
//! (through serde-wasm-bindgen); a refusal throws an `Error` whose `code` is the stable code.

use crate::api;
use crate::error::PolicyError;
use crate::token::endpoint;
use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::prelude::*;

fn to_js_error(err: &PolicyError) -> JsValue {
    let error = js_sys::Error::new(err.message());
    let _ = js_sys::Reflect::set(&error, &"code".into(), &err.code().into());
    error.into()
}

fn from_js<I: DeserializeOwned>(input: JsValue) -> Result<I, JsValue> {
    serde_wasm_bindgen::from_value(input).map_err(|e| {
        to_js_error(&PolicyError::InvalidInput(format!(
            "the input is not valid: {e}"
        )))
    })
}

fn to_js<O: Serialize>(output: Result<O, PolicyError>) -> Result<JsValue, JsValue> {
    output
        .map_err(|e| to_js_error(&e))?
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| to_js_error(&PolicyError::InvalidInput(e.to_string())))
}

fn bind<I: DeserializeOwned, O: Serialize>(
    input: JsValue,
    f: impl Fn(&I) -> Result<O, PolicyError>,
) -> Result<JsValue, JsValue> {
    let input: I = from_js(input)?;
    to_js(f(&input))
}

/// What this module is: ABI version, crate version, entry points.
#[wasm_bindgen]
pub fn info() -> Result<JsValue, JsValue> {
    bind(JsValue::NULL, api::info)
}

/// One step of the token endpoint.
#[wasm_bindgen]
pub fn token(input: JsValue) -> Result<JsValue, JsValue> {
    bind(input, api::token)
}

/// One token request across its steps, holding what earlier steps parsed: `new TokenFlow(input)`,
/// `flow.step()` for the first step, then `flow.resume({records})`, `flow.resume({kdf})` or (after a
/// step whose `purpose` is `rehash`) `flow.resume({rehash_kdf})`.
/// Each object holds its own request, so requests that interleave (awaiting a KDF) stay apart.
#[wasm_bindgen(js_name = TokenFlow)]
pub struct JsTokenFlow {
    flow: endpoint::TokenFlow,
}

#[wasm_bindgen(js_class = TokenFlow)]
impl JsTokenFlow {
    /// A flow for `input` (the `token` entry point's input).
    #[wasm_bindgen(constructor)]
    pub fn new(input: JsValue) -> Result<JsTokenFlow, JsValue> {
        let input = from_js(input)?;
        Ok(JsTokenFlow {
            flow: endpoint::TokenFlow::new(input),
        })
    }

    /// The step for what the flow holds now (the first step, after `new`).
    pub fn step(&mut self) -> Result<JsValue, JsValue> {
        to_js(self.flow.step())
    }

    /// Adds `{records}` or `{kdf}` and answers the next step.
    pub fn resume(&mut self, more: JsValue) -> Result<JsValue, JsValue> {
        let more = from_js(more)?;
        to_js(self.flow.resume(more))
    }
}

/// One step of the authorization endpoint and its pages (RULES.md §5, C1–C12).
#[wasm_bindgen]
pub fn authorization(input: JsValue) -> Result<JsValue, JsValue> {
    bind(input, crate::authorize::authorization)
}

/// One step of the UserInfo endpoint (OpenID Connect Core §5.3).
#[wasm_bindgen]
pub fn userinfo(input: JsValue) -> Result<JsValue, JsValue> {
    bind(input, crate::authorize::userinfo::userinfo)
}

/// One step of the revocation endpoint (RFC 7009).
#[wasm_bindgen]
pub fn revocation(input: JsValue) -> Result<JsValue, JsValue> {
    bind(input, crate::token::manage::revocation)
}

/// One step of the introspection endpoint (RFC 7662).
#[wasm_bindgen]
pub fn introspection(input: JsValue) -> Result<JsValue, JsValue> {
    bind(input, crate::token::manage::introspection)
}

/// The preview of an app edit or creation.
#[wasm_bindgen]
pub fn preview(input: JsValue) -> Result<JsValue, JsValue> {
    bind(input, api::preview)
}

/// Every revision's password eligibility.
#[wasm_bindgen]
pub fn eligibility(input: JsValue) -> Result<JsValue, JsValue> {
    bind(input, api::eligibility)
}

/// A9: whether a tenant's identity provider may be stored.
#[wasm_bindgen]
pub fn identity_provider(input: JsValue) -> Result<JsValue, JsValue> {
    bind(input, api::identity_provider)
}

/// An app's password-grant status, its revisions and its installs.
#[wasm_bindgen]
pub fn app_status(input: JsValue) -> Result<JsValue, JsValue> {
    bind(input, api::app_status)
}

/// PBKDF2 inside the module.
#[wasm_bindgen]
pub fn pbkdf2(input: JsValue) -> Result<JsValue, JsValue> {
    bind(input, api::pbkdf2)
}

/// A PHC string computed inside the module.
#[wasm_bindgen(js_name = hashPassword)]
pub fn hash_password(input: JsValue) -> Result<JsValue, JsValue> {
    bind(input, api::hash_password)
}

/// A client secret's stored HMAC.
#[wasm_bindgen(js_name = hashClientSecret)]
pub fn hash_client_secret(input: JsValue) -> Result<JsValue, JsValue> {
    bind(input, api::hash_client_secret_entry)
}

/// A new client secret from the host's entropy, and its HMAC to store.
#[wasm_bindgen(js_name = newClientSecret)]
pub fn new_client_secret(input: JsValue) -> Result<JsValue, JsValue> {
    bind(input, api::new_client_secret)
}

/// The same entry points by name, JSON text in and out: `{"ok": …}` or `{"error": …}`.
#[wasm_bindgen(js_name = callJson)]
pub fn call_json(entry: &str, input: &str) -> String {
    String::from_utf8(api::call(entry, input.as_bytes())).unwrap_or_default()
}
