//! The pages after C1–C8: sign-in (C9), change of an expired password (C10), consent (C11) and
//! the code (C12). Each action judges the authorization request again first.

use super::checks::{self, Authorized, Back};
use super::verdict::{End, Verdict};
use super::{Action, AuthorizationInput, Page, PageClient, PageDecision, SignedIn};
use crate::model::{CodeRecord, ConsentRecord, Timestamp, UserRecord};
use crate::token::judge::{Judge, INVALID_USER};
use crate::token::password::{self, Checked};
use crate::token::steps::{code_sha256, keys, Audit, Effect, Keys, Lookup, Step, TokenContext};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// At least this many characters in a new password (C10).
pub const MIN_PASSWORD_CHARS: usize = 8;
/// At most this many bytes in a new password.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// C1–C8, then the action.
pub(super) fn judge(input: &AuthorizationInput) -> Result<PageDecision, End> {
    let ctx = &input.context;
    let keys = keys(ctx)?;
    let mut judge = Judge::new(&input.request.tenant);
    judge.grant_type = Some("authorization_code");
    let (query, client_id) = checks::c1_well_formed(&input.request, &mut judge)?;
    let username = match &input.action {
        Action::Authorize => None,
        Action::SignIn { username, .. } => Some(username.as_str()),
        _ => input.signed_in.as_ref().map(|s| s.username.as_str()),
    };
    judge.username = username;
    records_needed(input, client_id, username, None)?;
    let (tenant, client, revision) =
        checks::c2_client(&input.request.tenant, client_id, &input.records, &mut judge)?;
    let redirect_uri = checks::c3_redirect_uri(&query, revision, &judge)?;
    let issuer = issuer(ctx, &tenant.tenant);
    let back = Back {
        redirect_uri,
        state: query.get("state"),
        issuer: &issuer,
    };
    checks::c4_response_type(&query, &back, &judge)?;
    checks::c5_code_app(revision, &back, &judge)?;
    let code_challenge = checks::c6_pkce(&query, &back, &judge)?;
    let scopes = checks::c7_scope(&query, revision, &back, &judge)?;
    checks::c8_no_sso(tenant, &back, &judge)?;
    let auth = Authorized {
        tenant,
        client,
        revision,
        redirect_uri,
        redirect_uri_sent: query.get("redirect_uri"),
        state: query.get("state"),
        code_challenge,
        scopes,
        nonce: query.get("nonce"),
    };
    let page = Pages {
        input,
        keys: &keys,
        judge: &judge,
        auth: &auth,
        back: &back,
    };
    match &input.action {
        Action::Authorize => Ok(page.sign_in(None, None)),
        Action::SignIn { username, password } => page.c9_sign_in(username, password),
        Action::ChangePassword {
            new_password,
            confirm_password,
        } => page.c10_change_password(new_password, confirm_password),
        Action::Consent { approve } => page.c11_answer(*approve),
        Action::Resume => page.resume(),
    }
}

/// The records an action needs: the tenant and the client, the user once one is named, and the
/// consent when `consent_app_id` is given.
fn records_needed(
    input: &AuthorizationInput,
    client_id: &str,
    username: Option<&str>,
    consent_app_id: Option<&str>,
) -> Verdict<()> {
    let records = &input.records;
    let missing = records.tenant.is_none()
        || records.client.is_none()
        || (username.is_some() && records.user.is_none())
        || (consent_app_id.is_some() && records.consent.is_none());
    if !missing {
        return Ok(());
    }
    Err(End::step(Step::NeedRecords {
        lookup: Lookup {
            tenant: input.request.tenant.clone(),
            client_id: client_id.to_string(),
            username: username.map(str::to_string),
            refresh_token_sha256: None,
            code_sha256: None,
            consent_app_id: consent_app_id.map(str::to_string),
            subject: None,
        },
    }))
}

/// A tenant's issuer: `{issuer}/tenants/{tenant}`, as in its tokens.
fn issuer(ctx: &TokenContext, tenant: &str) -> String {
    let mut out = ctx.issuer.trim_end_matches('/').to_string();
    out.push_str("/tenants/");
    out.push_str(tenant);
    out
}

/// One action on a request that passed C1–C8.
struct Pages<'a> {
    input: &'a AuthorizationInput,
    keys: &'a Keys,
    judge: &'a Judge<'a>,
    auth: &'a Authorized<'a>,
    back: &'a Back<'a>,
}

impl Pages<'_> {
    fn client(&self) -> PageClient {
        PageClient {
            tenant: self.auth.tenant.tenant.clone(),
            app_id: self.auth.client.app.app_id.clone(),
            client_id: self.auth.client.client_id.clone(),
            scopes: self.auth.scopes.clone(),
            redirect_uri: self.auth.redirect_uri.to_string(),
        }
    }

    /// The user named by the action, as the host found them.
    fn user(&self) -> Option<&UserRecord> {
        let name = self.judge.username?;
        self.input
            .records
            .user
            .as_ref()
            .and_then(Option::as_ref)
            .filter(|u| u.username == name)
    }

    /// The sign-in page; after a failure, with the one message and the failure's effects.
    fn sign_in(&self, failure: Option<(&str, &str)>, effects: Option<Vec<Effect>>) -> PageDecision {
        let (audit, message) = match failure {
            None => (
                self.judge.audit("pending", "C8", "sign_in", "sign_in"),
                None,
            ),
            Some((reason, cause)) => (
                self.judge.audit("denied", "C9", reason, cause),
                Some(INVALID_USER.to_string()),
            ),
        };
        PageDecision {
            page: Page::SignIn {
                client: self.client(),
                message,
            },
            audit,
            earlier: Vec::new(),
            effects: effects.unwrap_or_default(),
            signed_in: None,
        }
    }

    /// C9 and C10: the password, checked as T8 checks it (same KDF work, same one message, same
    /// lockout count); an expired one leads to the change-password page.
    fn c9_sign_in(&self, username: &str, typed: &str) -> Result<PageDecision, End> {
        let ctx = &self.input.context;
        let user = self.user();
        let checked = password::check(
            ctx,
            self.input.kdf.as_ref(),
            user,
            &self.auth.tenant.tenant,
            username,
            typed,
            &mut None,
        )?
        .map_err(End::step)?;
        let outdated = match checked {
            Checked::Refused { cause, effects } => {
                return Ok(self.sign_in(Some(("invalid_credentials", cause)), Some(effects)))
            }
            Checked::Verified { outdated } => outdated,
        };
        let mut effects = vec![Effect::ResetLoginFailures {
            tenant: self.auth.tenant.tenant.clone(),
            username: username.to_string(),
        }];
        let signed_in = SignedIn {
            username: username.to_string(),
            auth_time: ctx.now.unix(),
            must_change_password: false,
        };
        if self.expired(user) {
            return Ok(PageDecision {
                page: Page::ChangePassword {
                    client: self.client(),
                    username: username.to_string(),
                    message: None,
                },
                audit: self
                    .judge
                    .audit("denied", "C10", "password_expired", "password_expired"),
                earlier: Vec::new(),
                effects,
                signed_in: Some(SignedIn {
                    must_change_password: true,
                    ..signed_in
                }),
            });
        }
        if let (Some(replaces), Some(user)) = (outdated, user) {
            let hash = password::new_hash(
                ctx,
                &self.keys.entropy,
                self.input.rehash_kdf.as_ref(),
                typed,
            )?
            .map_err(End::step)?;
            effects.push(Effect::StorePasswordHash {
                tenant: self.auth.tenant.tenant.clone(),
                username: user.username.clone(),
                hash,
                replaces,
            });
        }
        self.c11_consented(signed_in, effects, Vec::new())
    }

    /// C10: older than the tenant's `password_max_age_days` (T9's arithmetic).
    fn expired(&self, user: Option<&UserRecord>) -> bool {
        let (Some(days), Some(user)) = (self.auth.tenant.password_max_age_days, user) else {
            return false;
        };
        match user.password_changed_at {
            Some(changed) => {
                self.input.context.now.seconds_since(changed) > i64::from(days) * 86_400
            }
            None => true,
        }
    }

    /// The user the transaction signed in, still able to sign in; `None` sends them back to the
    /// sign-in page.
    fn still_signed_in(&self, must_change: bool) -> Option<(&SignedIn, &UserRecord)> {
        let signed_in = self.input.signed_in.as_ref()?;
        let user = self.user()?;
        let able = password::user_problem(Some(user), self.input.context.now).is_none();
        (able && signed_in.must_change_password == must_change).then_some((signed_in, user))
    }

    fn sign_in_again(&self) -> PageDecision {
        PageDecision {
            audit: self
                .judge
                .audit("pending", "C9", "sign_in", "not_signed_in"),
            ..self.sign_in(None, None)
        }
    }

    /// C10, the change itself: the new password differs from the old (checked with the KDF
    /// against the stored hash), is hashed at the current parameters, and replaces the old.
    fn c10_change_password(&self, new: &str, confirm: &str) -> Result<PageDecision, End> {
        let Some((signed_in, user)) = self.still_signed_in(true) else {
            return Ok(self.sign_in_again());
        };
        let ctx = &self.input.context;
        let problem = if new != confirm {
            Some((
                "confirmation_differs",
                "the two new passwords are not the same".to_string(),
            ))
        } else if new.chars().count() < MIN_PASSWORD_CHARS || new.len() > MAX_PASSWORD_BYTES {
            Some((
                "password_too_short",
                format!("the new password must be {MIN_PASSWORD_CHARS} characters or more"),
            ))
        } else if password::is_current(ctx, self.input.kdf.as_ref(), user, new)?
            .map_err(End::step)?
        {
            Some((
                "password_unchanged",
                "the new password must differ from the old one".to_string(),
            ))
        } else {
            None
        };
        if let Some((cause, message)) = problem {
            return Ok(PageDecision {
                page: Page::ChangePassword {
                    client: self.client(),
                    username: user.username.clone(),
                    message: Some(message),
                },
                audit: self.judge.audit("denied", "C10", "password_expired", cause),
                earlier: Vec::new(),
                effects: Vec::new(),
                signed_in: Some(signed_in.clone()),
            });
        }
        let hash =
            password::new_hash(ctx, &self.keys.entropy, self.input.rehash_kdf.as_ref(), new)?
                .map_err(End::step)?;
        let effects = vec![Effect::ChangePassword {
            tenant: self.auth.tenant.tenant.clone(),
            username: user.username.clone(),
            hash,
            replaces: user.password_hash.clone().unwrap_or_default(),
            changed_at: ctx.now,
        }];
        let changed = self
            .judge
            .audit("granted", "C10", "password_changed", "password_changed");
        let signed_in = SignedIn {
            must_change_password: false,
            ..signed_in.clone()
        };
        self.c11_consented(signed_in, effects, vec![changed])
    }

    /// Back after a change of password: on to consent or the code.
    fn resume(&self) -> Result<PageDecision, End> {
        match self.still_signed_in(false) {
            Some((signed_in, _)) => self.c11_consented(signed_in.clone(), Vec::new(), Vec::new()),
            None => Ok(self.sign_in_again()),
        }
    }

    /// C11: a consent kept for this app in this tenant that covers the scopes asked for leads to
    /// the code; otherwise the consent page.
    fn c11_consented(
        &self,
        signed_in: SignedIn,
        effects: Vec<Effect>,
        earlier: Vec<Audit>,
    ) -> Result<PageDecision, End> {
        let app_id = self.auth.client.app.app_id.as_str();
        records_needed(
            self.input,
            &self.auth.client.client_id,
            Some(&signed_in.username),
            Some(app_id),
        )?;
        let kept = self.input.records.consent.as_ref().and_then(Option::as_ref);
        let covers = kept.is_some_and(|c| {
            c.tenant == self.auth.tenant.tenant
                && c.username == signed_in.username
                && c.app_id == app_id
                && self.auth.scopes.iter().all(|s| c.scopes.contains(s))
        });
        if covers {
            let mut decision = self.c12_code(&signed_in, effects)?;
            decision.earlier = earlier;
            return Ok(decision);
        }
        Ok(PageDecision {
            page: Page::Consent {
                client: self.client(),
                username: signed_in.username.clone(),
            },
            audit: self.judge.audit("pending", "C11", "consent", "consent"),
            earlier,
            effects,
            signed_in: Some(signed_in),
        })
    }

    /// C11, the answer: a refusal goes back as `access_denied`; an approval is kept and leads to
    /// the code.
    fn c11_answer(&self, approve: bool) -> Result<PageDecision, End> {
        let Some((signed_in, user)) = self.still_signed_in(false) else {
            return Ok(self.sign_in_again());
        };
        if !approve {
            let location = self.back.location(&[
                ("error", "access_denied"),
                ("error_description", "the user did not allow this app"),
            ]);
            return Ok(PageDecision {
                page: Page::Redirect { location },
                audit: self
                    .judge
                    .audit("denied", "C11", "consent_denied", "consent_denied"),
                earlier: Vec::new(),
                effects: Vec::new(),
                signed_in: None,
            });
        }
        let effects = vec![Effect::StoreConsent {
            record: ConsentRecord {
                tenant: self.auth.tenant.tenant.clone(),
                username: user.username.clone(),
                app_id: self.auth.client.app.app_id.clone(),
                scopes: self.auth.scopes.clone(),
            },
        }];
        self.c12_code(signed_in, effects)
    }

    /// C12: a random code, stored only as its hash and bound to everything the exchange checks,
    /// sent back to the redirect URI with `state` and `iss`.
    fn c12_code(
        &self,
        signed_in: &SignedIn,
        mut effects: Vec<Effect>,
    ) -> Result<PageDecision, End> {
        let auth = self.auth;
        let ctx = &self.input.context;
        let random = self.keys.entropy.get(0..32).unwrap_or_default();
        let code = URL_SAFE_NO_PAD.encode(random);
        effects.push(Effect::StoreCode {
            record: CodeRecord {
                code_sha256: code_sha256(&code),
                tenant: auth.tenant.tenant.clone(),
                client_id: auth.client.client_id.clone(),
                rev: auth.revision.rev,
                redirect_uri: auth.redirect_uri_sent.map(str::to_string),
                code_challenge: auth.code_challenge.to_string(),
                scopes: auth.scopes.clone(),
                username: signed_in.username.clone(),
                nonce: auth.nonce.map(str::to_string),
                auth_time: Timestamp::from_unix(signed_in.auth_time),
                issued_at: ctx.now,
                used: false,
            },
        });
        Ok(PageDecision {
            page: Page::Redirect {
                location: self.back.location(&[("code", &code)]),
            },
            audit: self
                .judge
                .audit("granted", "C12", "code_issued", "code_issued"),
            earlier: Vec::new(),
            effects,
            signed_in: None,
        })
    }
}
