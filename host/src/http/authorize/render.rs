//! The authorization pages as HTML (askama templates in `host/templates/`, escaped by the
//! template engine, never concatenated), with the admin page's strict Content-Security-Policy:
//! only this server's stylesheet, no script, and forms that post only to this server, or, for
//! the answer that redirects, to the app's checked redirect URI.

use crate::http::answer::page_headers;
use askama::Template;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use granted_policy::authorize::{PageClient, MIN_PASSWORD_CHARS};

/// The pages' stylesheet, served at [`STYLE_PATH`].
pub(crate) const STYLE: &str = include_str!("../../../templates/pages.css");
/// Where the stylesheet is served.
pub(crate) const STYLE_PATH: &str = "/connect/pages.css";

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignIn<'a> {
    client: &'a PageClient,
    message: Option<&'a str>,
    action: &'a str,
    csrf: &'a str,
}

#[derive(Template)]
#[template(path = "change_password.html")]
struct ChangePassword<'a> {
    client: &'a PageClient,
    username: &'a str,
    message: Option<&'a str>,
    action: &'a str,
    csrf: &'a str,
    min_chars: usize,
}

#[derive(Template)]
#[template(path = "consent.html")]
struct Consent<'a> {
    client: &'a PageClient,
    username: &'a str,
    action: &'a str,
    csrf: &'a str,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    heading: &'a str,
    description: &'a str,
    error: Option<&'a str>,
}

/// What a form posts to and with.
pub(crate) struct Form<'a> {
    /// The authorization endpoint with the request's query.
    pub(crate) action: &'a str,
    /// The transaction's CSRF token.
    pub(crate) csrf: &'a str,
}

/// The sign-in page (C9).
pub(crate) fn sign_in(client: &PageClient, message: Option<&str>, form: &Form<'_>) -> Response {
    let status = if message.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    let page = SignIn {
        client,
        message,
        action: form.action,
        csrf: form.csrf,
    };
    html(status, page.render(), Some(&client.redirect_uri))
}

/// The change-password page (C10).
pub(crate) fn change_password(
    client: &PageClient,
    username: &str,
    message: Option<&str>,
    form: &Form<'_>,
) -> Response {
    let status = if message.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let page = ChangePassword {
        client,
        username,
        message,
        action: form.action,
        csrf: form.csrf,
        min_chars: MIN_PASSWORD_CHARS,
    };
    html(status, page.render(), Some(&client.redirect_uri))
}

/// The consent page (C11).
pub(crate) fn consent(client: &PageClient, username: &str, form: &Form<'_>) -> Response {
    let page = Consent {
        client,
        username,
        action: form.action,
        csrf: form.csrf,
    };
    html(StatusCode::OK, page.render(), Some(&client.redirect_uri))
}

/// An error page on this server: the user is sent nowhere.
pub(crate) fn error(status: StatusCode, error: Option<&str>, description: &str) -> Response {
    let heading = if status.is_server_error() {
        "The server could not answer"
    } else {
        "This sign-in cannot go on"
    };
    let page = ErrorPage {
        heading,
        description,
        error,
    };
    html(status, page.render(), None)
}

/// A rendered page with the headers every page carries.
fn html(
    status: StatusCode,
    rendered: askama::Result<String>,
    redirect_uri: Option<&str>,
) -> Response {
    let body = match rendered {
        Ok(body) => body,
        Err(e) => {
            tracing::error!("a page could not be rendered: {e}");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response();
        }
    };
    let mut response = (status, body).into_response();
    // A redirect URI that cannot stand in a header (it was checked, so this is not expected)
    // leaves the page with the policy that allows no form target but this server.
    let csp = HeaderValue::from_str(&csp(redirect_uri))
        .unwrap_or_else(|_| HeaderValue::from_static(SELF_ONLY_CSP));
    page_headers(&mut response, "text/html; charset=utf-8", "no-store", csp);
    response
}

/// [`csp`] with no redirect URI.
const SELF_ONLY_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The admin page's policy, without script or wasm (the pages have none). A form's answer may
/// redirect to the app (`form-action` applies to that redirect in browsers), so the checked
/// redirect URI's origin, or its private-use scheme, is allowed there too.
pub(crate) fn csp(redirect_uri: Option<&str>) -> String {
    let back = redirect_uri.and_then(form_target).unwrap_or_default();
    format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; \
         form-action 'self'{back}; frame-ancestors 'none'"
    )
}

/// ` origin` for an http(s) redirect URI, ` scheme:` for a private-use one; nothing for what
/// a CSP source cannot say safely.
fn form_target(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once(':')?;
    let scheme_ok = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return None;
    }
    match scheme {
        "http" | "https" => {
            let authority = rest.strip_prefix("//")?;
            let end = authority.find(['/', '?', '#']).unwrap_or(authority.len());
            let authority = &authority[..end];
            let safe = !authority.is_empty()
                && authority
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
            safe.then(|| format!(" {scheme}://{authority}"))
        }
        _ => Some(format!(" {scheme}:")),
    }
}

/// The pages' stylesheet.
pub(crate) async fn style() -> Response {
    let mut response = STYLE.into_response();
    page_headers(
        &mut response,
        "text/css; charset=utf-8",
        "no-cache",
        HeaderValue::from_static(SELF_ONLY_CSP),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> PageClient {
        PageClient {
            tenant: "acme".into(),
            app_id: "crm <b>".into(),
            client_id: "c1".into(),
            scopes: vec!["openid".into(), "read\"><script>".into()],
            redirect_uri: "https://app.example/cb".into(),
        }
    }

    #[test]
    fn the_fallback_policy_is_the_one_without_a_redirect_uri() {
        assert_eq!(csp(None), SELF_ONLY_CSP);
    }

    #[test]
    fn the_pages_escape_what_they_show() {
        let form = Form {
            action: "/tenants/acme/connect/authorize?client_id=c1&x=\"",
            csrf: "t",
        };
        let page = Consent {
            client: &client(),
            username: "<alice>",
            action: form.action,
            csrf: form.csrf,
        }
        .render()
        .unwrap();
        assert!(!page.contains("<script>"));
        assert!(!page.contains("<alice>"));
        assert!(!page.contains("crm <b>"));
        assert!(page.contains("alice"), "the name is shown, escaped");
        assert!(page.contains("<label") || page.contains("<button"));
    }

    #[test]
    fn the_sign_in_page_labels_its_fields_and_carries_the_csrf_token() {
        let page = SignIn {
            client: &client(),
            message: Some("wrong"),
            action: "/a",
            csrf: "tok",
        }
        .render()
        .unwrap();
        assert!(page.contains(r#"<label for="username">"#));
        assert!(page.contains(r#"<label for="password">"#));
        assert!(page.contains(r#"name="csrf" value="tok""#));
        assert!(page.contains("acme"));
    }

    #[test]
    fn form_action_allows_only_this_server_and_the_redirect_uri() {
        assert_eq!(
            csp(Some("https://app.example:8443/cb?x=1")),
            "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; \
             form-action 'self' https://app.example:8443; frame-ancestors 'none'"
        );
        assert!(csp(Some("com.example.app:/cb")).contains("form-action 'self' com.example.app:;"));
        assert!(csp(Some("http://127.0.0.1:9/cb")).contains("'self' http://127.0.0.1:9;"));
        assert!(csp(Some("https://a b;script-src *")).contains("form-action 'self';"));
        assert!(csp(None).contains("form-action 'self';"));
    }
}
