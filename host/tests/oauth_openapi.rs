//! The OpenAPI document of the OAuth 2.0 and OpenID Connect endpoints (`GET /openapi.json`)
//! against the server that serves it: every route of the router is described, every operation
//! described is served, and real answers carry the properties their schemas name (and no other).

mod common;

use serde_json::Value;
use std::collections::BTreeSet;

const ADMIN: &str = "test-admin-token-0123456789abcdef-0123456789";

use common::Demo as Running;

fn start() -> Running {
    common::demo(ADMIN)
}

fn document(run: &Running) -> Value {
    let mut response = common::agent()
        .get(format!("{}/openapi.json", run.base))
        .call()
        .expect("the document");
    assert_eq!(response.status().as_u16(), 200);
    serde_json::from_str(&response.body_mut().read_to_string().expect("body")).expect("JSON")
}

/// The properties a schema of the document names, and those it requires.
fn schema(doc: &Value, name: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let schema = &doc["components"]["schemas"][name];
    let properties = schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("no schema {name}"))
        .keys()
        .cloned()
        .collect();
    let required = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect();
    (properties, required)
}

/// Checks that `answer` has every property `name` requires and none it does not name.
fn conforms(doc: &Value, name: &str, answer: &Value) {
    let (properties, required) = schema(doc, name);
    let keys: BTreeSet<String> = answer
        .as_object()
        .unwrap_or_else(|| panic!("{name}: not an object: {answer}"))
        .keys()
        .cloned()
        .collect();
    let missing: Vec<_> = required.difference(&keys).collect();
    let unnamed: Vec<_> = keys.difference(&properties).collect();
    assert!(missing.is_empty(), "{name}: {answer} lacks {missing:?}");
    assert!(
        unnamed.is_empty(),
        "{name}: {answer} has {unnamed:?}, not in the schema"
    );
}

#[test]
fn every_route_of_the_router_is_described_and_every_operation_is_served() {
    let run = start();
    let doc = document(&run);
    assert!(doc["openapi"]
        .as_str()
        .unwrap_or_default()
        .starts_with("3."));
    let described: BTreeSet<String> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect();
    // The router's OAuth routes, read from its source: a route added without its description
    // fails here.
    let source = std::fs::read_to_string("src/http/mod.rs").expect("the router's source");
    // The first string literal after each `.route(`: the route's path.
    let routed: BTreeSet<String> = source
        .split(".route(")
        .skip(1)
        .filter_map(|call| call.split('"').nth(1))
        .filter(|s| s.starts_with("/tenants/") || s.starts_with("/.well-known/"))
        .map(str::to_string)
        .collect();
    assert!(routed.len() >= 9, "routes read from the source: {routed:?}");
    assert_eq!(described, routed);

    let agent = common::agent();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let url = format!("{}{}", run.base, path.replace("{tenant}", "acme"));
        for method in item.as_object().expect("path item").keys() {
            let request = ureq::http::Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(String::new())
                .expect("request");
            let status = agent.run(request).expect("an answer").status().as_u16();
            assert!(
                !matches!(status, 404 | 405 | 500),
                "{method} {path}: {status}"
            );
            let documented = item[method]["responses"]
                .as_object()
                .expect("responses")
                .keys()
                .any(|code| code == &status.to_string());
            assert!(
                documented,
                "{method} {path} answered {status}, not documented"
            );
            operations += 1;
        }
    }
    assert_eq!(operations, 11);
}

#[test]
fn real_answers_carry_what_their_schemas_name() {
    let run = start();
    let doc = document(&run);
    let (status, tokens) = common::token(
        &run.base,
        "acme",
        ("sync-1", "sync-1-secret"),
        "grant_type=client_credentials",
    );
    assert_eq!(status, 200, "{tokens}");
    conforms(&doc, "TokenAnswer", &tokens);

    let (status, refused) = common::token(
        &run.base,
        "acme",
        ("sync-1", "not-the-secret"),
        "grant_type=client_credentials",
    );
    assert_eq!(status, 401, "{refused}");
    conforms(&doc, "OAuthError", &refused);

    let auth = common::basic("sync-1", "sync-1-secret");
    let access = tokens["access_token"].as_str().expect("an access token");
    for (token, active) in [(access, true), ("not-a-token", false)] {
        let (status, answer) = common::post(
            &run.base,
            "/tenants/acme/connect/introspect",
            &auth,
            &format!("token={token}"),
        )
        .expect("introspection");
        assert_eq!(status, 200);
        assert_eq!(answer["active"], active, "{answer}");
        conforms(&doc, "Introspection", &answer);
    }
}
