//! The frame of the admin API's OpenAPI 3 document: its info, server, security scheme, and the
//! schemas no body names. Each route adds its own operation, from its `#[utoipa::path]`, as
//! `routes()` registers it; the answers described are the handlers' own types. Served at
//! `/admin/api/v1/openapi.json`; a test runs schemathesis against it.

use super::users::UserAction;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// Adds the `admin_token` bearer scheme that `security` names.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document without its paths.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Granted admin API",
        description = "Apps, tenants, installs and users of a Granted token server; the audit log and the sunset report. Every app edit is judged by the same policy module the token endpoint runs.",
        version = "1"
    ),
    servers((url = "/admin/api/v1")),
    security(("admin_token" = [])),
    modifiers(&BearerAuth),
    components(schemas(UserAction))
)]
pub struct AdminApi;
