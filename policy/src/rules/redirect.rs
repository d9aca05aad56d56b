//! Redirect URIs (RULES.md §5): which ones a revision may register (A6), and whether the one an
//! authorization request sends is registered (C3).

/// At most this many redirect URIs per revision (A6).
pub const MAX_REDIRECT_URIS: usize = 10;

/// At most this many bytes in one redirect URI.
pub const MAX_REDIRECT_URI_LEN: usize = 2048;

/// A6: why `uri` may not be registered, in words; `None` when it may.
pub fn registration_problem(uri: &str) -> Option<String> {
    let shown = uri.escape_default();
    if uri.is_empty() || uri.len() > MAX_REDIRECT_URI_LEN {
        return Some(format!(
            "the redirect URI `{shown}` must be 1 to {MAX_REDIRECT_URI_LEN} bytes"
        ));
    }
    if uri.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
        return Some(format!(
            "the redirect URI `{shown}` has a space, a control character or a non-ASCII character: percent-encode it"
        ));
    }
    if uri.contains('#') {
        return Some(format!(
            "the redirect URI `{shown}` has a fragment (RFC 6749 §3.1.2)"
        ));
    }
    if uri.contains('*') {
        return Some(format!(
            "the redirect URI `{shown}` has a wildcard: register each URI in full"
        ));
    }
    let Some(parts) = Parts::of(uri) else {
        return Some(format!(
            "the redirect URI `{shown}` is not an absolute URI (it needs a scheme, as `https://`)"
        ));
    };
    match parts.scheme.as_str() {
        "https" => match parts.host {
            Some(host) if !host.is_empty() => None,
            _ => Some(format!("the redirect URI `{shown}` names no host")),
        },
        "http" => match parts.host {
            Some(host) if is_loopback(host) => None,
            _ => Some(format!(
                "the redirect URI `{shown}` uses `http` on a host that is not loopback: use `https`, or `http` on `127.0.0.1`, `[::1]` or `localhost` (RFC 8252 §7.3)"
            )),
        },
        scheme if scheme.contains('.') => None,
        scheme => Some(format!(
            "the redirect URI `{shown}` has the scheme `{scheme}`: use `https`, `http` on a loopback host, or a private-use scheme with a dot, as `com.example.app:/cb` (RFC 8252 §7.1)"
        )),
    }
}

/// C3: the registered URI that `sent` is (as a string; a loopback one may differ in port
/// only), or, when nothing was sent, the only registered one.
pub fn matching<'r>(registered: &'r [String], sent: Option<&str>) -> Option<&'r str> {
    let Some(sent) = sent else {
        return match registered {
            [only] => Some(only.as_str()),
            _ => None,
        };
    };
    registered
        .iter()
        .find(|r| r.as_str() == sent || same_loopback_but_port(r, sent))
        .map(String::as_str)
}

/// Both are `http` loopback URIs that are the same once their ports are left out.
fn same_loopback_but_port(registered: &str, sent: &str) -> bool {
    let (Some(a), Some(b)) = (Parts::of(registered), Parts::of(sent)) else {
        return false;
    };
    a.scheme == "http"
        && b.scheme == "http"
        && a.host.is_some_and(is_loopback)
        && a.host == b.host
        && a.rest == b.rest
        && b.port
            .is_none_or(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
}

/// `127.0.0.1`, `[::1]` or `localhost` (RFC 8252 §7.3).
pub(crate) fn is_loopback(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "[::1]") || host.eq_ignore_ascii_case("localhost")
}

/// The pieces of an absolute URI this module compares.
pub(crate) struct Parts<'a> {
    /// Lowercased.
    pub(crate) scheme: String,
    /// The host of an authority, when there is one.
    pub(crate) host: Option<&'a str>,
    /// The port, when there is one.
    pub(crate) port: Option<&'a str>,
    /// Everything after the authority (or after the scheme's `:` when there is none).
    pub(crate) rest: &'a str,
}

impl<'a> Parts<'a> {
    /// The parts of `uri`, when it is an absolute URI without credentials.
    pub(crate) fn of(uri: &'a str) -> Option<Parts<'a>> {
        let (scheme, after) = uri.split_once(':')?;
        let mut chars = scheme.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) {
            return None;
        }
        let scheme = scheme.to_ascii_lowercase();
        let Some(authority_and_rest) = after.strip_prefix("//") else {
            return Some(Parts {
                scheme,
                host: None,
                port: None,
                rest: after,
            });
        };
        let end = authority_and_rest
            .find(['/', '?'])
            .unwrap_or(authority_and_rest.len());
        let (authority, rest) = authority_and_rest.split_at(end);
        if authority.contains('@') {
            // Credentials in a redirect URI are refused (A6 asks for a plain absolute URI).
            return None;
        }
        let (host, port) = if let Some(v6_end) = authority.find(']') {
            let (host, tail) = authority.split_at(v6_end.saturating_add(1));
            match tail {
                "" => (host, None),
                t => (host, Some(t.strip_prefix(':')?)),
            }
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if port.is_some_and(|p| !p.bytes().all(|c| c.is_ascii_digit())) {
            return None;
        }
        Some(Parts {
            scheme,
            host: Some(host),
            port,
            rest,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests
mod tests {
    use super::*;

    #[test]
    fn a6_accepts_https_loopback_http_and_private_use_schemes() {
        for ok in [
            "https://crm.example/cb",
            "https://crm.example:8443/cb?x=1",
            "http://127.0.0.1:7000/cb",
            "http://[::1]/cb",
            "http://localhost:9/cb",
            "com.example.mobile:/cb",
        ] {
            assert_eq!(registration_problem(ok), None, "{ok}");
        }
    }

    #[test]
    fn a6_refuses_fragments_wildcards_plain_http_and_relative_uris() {
        for bad in [
            "",
            "/cb",
            "https://crm.example/cb#x",
            "https://*.crm.example/cb",
            "http://crm.example/cb",
            "http://127.0.0.2/cb",
            "myapp:/cb",
            "https:///cb",
            "https://user@crm.example/cb",
            "https://crm.example/c b",
            "javascript:alert(1)",
        ] {
            assert!(registration_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn c3_matches_as_a_string_and_loopback_in_any_port() {
        let registered = vec![
            "https://crm.example/cb".to_string(),
            "http://127.0.0.1:7000/cb".to_string(),
        ];
        assert!(matching(&registered, Some("https://crm.example/cb")).is_some());
        assert!(matching(&registered, Some("https://crm.example/cb/")).is_none());
        assert!(matching(&registered, Some("https://CRM.example/cb")).is_none());
        assert!(matching(&registered, Some("http://127.0.0.1:51234/cb")).is_some());
        assert!(matching(&registered, Some("http://127.0.0.1/cb")).is_some());
        assert!(matching(&registered, Some("http://127.0.0.1:5/other")).is_none());
        assert!(matching(&registered, Some("http://localhost:7000/cb")).is_none());
        assert!(matching(&registered, None).is_none());
        assert_eq!(
            matching(&registered[..1], None),
            Some("https://crm.example/cb")
        );
    }
}
