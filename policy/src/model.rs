//! The data model of RULES.md §1: apps and their revisions, tenants, installs, users.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// An instant, read and written as RFC 3339 (`2021-06-18T00:00:00Z`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// Parses an RFC 3339 instant.
    pub fn parse(text: &str) -> Option<Self> {
        if let Some(t) = Self::parse_plain(text) {
            return Some(t);
        }
        // Kept in UTC: an instant whose UTC form is out of range (`9999-12-31T23:30:00-01:00`) is refused here.
        OffsetDateTime::parse(text, &Rfc3339)
            .ok()
            .and_then(|t| t.checked_to_offset(time::UtcOffset::UTC))
            .map(Self)
    }

    /// The form this server writes, `YYYY-MM-DDTHH:MM:SSZ`, read without the general parser
    /// (measured: the `time` crate's RFC 3339 parser was a visible part of a token request in
    /// wasm). Anything else (fractions, offsets, lowercase, leap seconds) is `None` here and goes
    /// to the general parser; both give the same instant (a test checks it).
    fn parse_plain(text: &str) -> Option<Self> {
        let b: &[u8; 20] = text.as_bytes().try_into().ok()?;
        let [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1, b'T', h0, h1, b':', n0, n1, b':', s0, s1, b'Z'] =
            *b
        else {
            return None;
        };
        let num = |digits: &[u8]| {
            digits.iter().try_fold(0u16, |acc, &c| {
                c.is_ascii_digit().then(|| acc * 10 + u16::from(c - b'0'))
            })
        };
        let year = i32::from(num(&[y0, y1, y2, y3])?);
        let month = time::Month::try_from(u8::try_from(num(&[m0, m1])?).ok()?).ok()?;
        let [day, hour, minute, second] = [[d0, d1], [h0, h1], [n0, n1], [s0, s1]]
            .map(|two| num(&two).and_then(|v| u8::try_from(v).ok()));
        let date = time::Date::from_calendar_date(year, month, day?).ok()?;
        let clock = time::Time::from_hms(hour?, minute?, second?).ok()?;
        Some(Self(time::PrimitiveDateTime::new(date, clock).assume_utc()))
    }

    /// An instant from seconds since the Unix epoch.
    pub fn from_unix(seconds: i64) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp(seconds).ok().map(Self)
    }

    /// Whole seconds from `earlier` to this instant (negative if `earlier` is later).
    pub fn seconds_since(self, earlier: Timestamp) -> i64 {
        self.unix().saturating_sub(earlier.unix())
    }

    /// Whole seconds since the Unix epoch.
    pub fn unix(self) -> i64 {
        self.0.unix_timestamp()
    }

    /// This instant moved by `seconds`, saturating at the ends of the range.
    pub fn plus_seconds(self, seconds: i64) -> Self {
        match self.0.checked_add(time::Duration::seconds(seconds)) {
            Some(t) => Self(t),
            None if seconds >= 0 => Self(time::PrimitiveDateTime::MAX.assume_utc()),
            None => Self(time::PrimitiveDateTime::MIN.assume_utc()),
        }
    }

    /// RFC 3339 text in UTC.
    pub fn to_rfc3339(self) -> String {
        let t = self.0;
        // Whole seconds in UTC, years 0–9999 (every instant this server makes): written directly,
        // as the `time` crate writes them (a test checks it); anything else by the crate.
        if t.offset().is_utc() && t.nanosecond() == 0 && (0..=9999).contains(&t.year()) {
            let mut out = String::with_capacity(20);
            let two = |out: &mut String, v: u8| {
                out.push(char::from(b'0' + v / 10));
                out.push(char::from(b'0' + v % 10));
            };
            let year = t.year().unsigned_abs();
            two(&mut out, (year / 100) as u8);
            two(&mut out, (year % 100) as u8);
            out.push('-');
            two(&mut out, u8::from(t.month()));
            out.push('-');
            two(&mut out, t.day());
            out.push('T');
            two(&mut out, t.hour());
            out.push(':');
            two(&mut out, t.minute());
            out.push(':');
            two(&mut out, t.second());
            out.push('Z');
            return out;
        }
        t.format(&Rfc3339).unwrap_or_default()
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// Reads the text where it is, without a copy.
        struct Instant;
        impl serde::de::Visitor<'_> for Instant {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 instant")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Timestamp, E> {
                Timestamp::parse(text)
                    .ok_or_else(|| E::custom(format!("`{text}` is not an RFC 3339 instant")))
            }
        }
        d.deserialize_str(Instant)
    }
}

/// The default sunset instant `S` of RULES.md §1.
pub const DEFAULT_SUNSET: &str = "2021-06-18T00:00:00Z";

/// The default sunset instant as a value.
pub fn default_sunset() -> Timestamp {
    // 2021-06-18T00:00:00Z
    Timestamp::from_unix(1_623_974_400).unwrap_or(Timestamp(OffsetDateTime::UNIX_EPOCH))
}

/// The one grant type a revision configures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    /// RFC 6749 §4.3, being sunset.
    Password,
    /// RFC 6749 §4.4.
    ClientCredentials,
    /// RFC 6749 §4.1.
    AuthorizationCode,
    /// RFC 6749 §4.2.
    Implicit,
}

impl GrantType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::Password => "password",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::Implicit => "implicit",
        }
    }
}

/// One revision of an app's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Revision {
    /// 1, 2, … in order.
    pub rev: u32,
    /// When the edit was made.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
    /// The client identifier this revision uses.
    pub client_id: String,
    /// The one grant type of this revision.
    pub grant_type: GrantType,
    /// The scopes a token for this revision may carry.
    pub scopes: Vec<String>,
    /// Where the authorization endpoint may send a user back (RULES.md §5, A6); none for the
    /// other grant types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirect_uris: Vec<String>,
    /// Whether the client holds a secret (A7); `confidential` when absent.
    #[serde(default, skip_serializing_if = "ClientType::is_confidential")]
    pub client_type: ClientType,
}

/// Whether a client authenticates with a secret (RULES.md §5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ClientType {
    /// Authenticates with its secret at the token endpoint.
    #[default]
    Confidential,
    /// A browser or native app that holds no secret and relies on PKCE alone.
    Public,
}

impl ClientType {
    /// Whether this is the default, `confidential` (left out of the JSON).
    pub fn is_confidential(&self) -> bool {
        *self == ClientType::Confidential
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientType::Confidential => "confidential",
            ClientType::Public => "public",
        }
    }
}

/// An app: its id, creation instant and revisions, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// Stable id of the app.
    pub app_id: String,
    /// When revision 1 was made.
    pub created_at: Timestamp,
    /// Revisions, oldest first; never edited, only appended.
    pub revisions: Vec<Revision>,
}

impl App {
    /// The revision numbered `rev`, if the app has it.
    pub fn revision(&self, rev: u32) -> Option<(usize, &Revision)> {
        self.revisions
            .iter()
            .enumerate()
            .find(|(_, r)| r.rev == rev)
    }

    /// The latest revision.
    pub fn latest(&self) -> Option<&Revision> {
        self.revisions.last()
    }
}

/// A tenant's installation of an app, pinned to one revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Install {
    /// The installed app.
    pub app_id: String,
    /// The pinned revision.
    pub rev: u32,
}

/// How a user signs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SignIn {
    /// Username and password with this server.
    Direct,
    /// Through the tenant's identity provider only.
    Sso,
}

/// A tenant's identity provider (RULES.md §6): this server's registration there, as the policy
/// reads it. Its client secret is the host's alone (sealed at rest, used for the token request).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IdentityProvider {
    /// The provider's issuer (OpenID Connect Discovery's `issuer`).
    pub issuer: String,
    /// This server's `client_id` at the provider.
    pub client_id: String,
    /// The scopes asked for; `openid profile email` when absent.
    #[serde(default = "default_provider_scopes")]
    pub scopes: Vec<String>,
    /// The ID token claim that names a user; `preferred_username` when absent.
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// A first sign-in may link to an existing `sso` user of that name (F7).
    #[serde(default)]
    pub link_existing: bool,
    /// A first sign-in that matches no user creates an `sso` user (F7).
    #[serde(default)]
    pub provision: bool,
}

/// The scopes a provider is asked for by default.
pub fn default_provider_scopes() -> Vec<String> {
    ["openid", "profile", "email"].map(String::from).to_vec()
}

/// The claim that names a user by default.
pub fn default_username_claim() -> String {
    "preferred_username".into()
}

/// The provider's `iss` and `sub` of an `sso` user, set at its first federated sign-in (§6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FederatedSubject {
    /// The provider's issuer.
    pub iss: String,
    /// The user's subject there.
    pub sub: String,
}

/// A tenant's settings as the policy reads them (its users are looked up one by one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    /// The tenant's name, as in the token endpoint's path.
    pub tenant: String,
    /// Whether every user must sign in through SSO.
    pub sso_required: bool,
    /// Passwords older than this are refused (T9); null: never.
    #[serde(default)]
    pub password_max_age_days: Option<u32>,
    /// The tenant's installs.
    #[serde(default)]
    pub installs: Vec<Install>,
    /// Its identity provider (§6), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_provider: Option<IdentityProvider>,
}

/// A stored user, as the token endpoint needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Unique within the tenant.
    pub username: String,
    /// The stable subject identifier (§5): assigned once, never reused; the username when the
    /// host has none for this user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// How the user signs in.
    pub sign_in: SignIn,
    /// PHC string (`$pbkdf2-sha256$…`) or Django's `pbkdf2_sha256$…`; absent for SSO users.
    #[serde(default)]
    pub password_hash: Option<String>,
    /// When the password was last set.
    #[serde(default)]
    pub password_changed_at: Option<Timestamp>,
    /// A disabled user cannot get tokens.
    #[serde(default)]
    pub disabled: bool,
    /// Set by the host's brute-force protection: locked until this instant.
    #[serde(default)]
    pub locked_until: Option<Timestamp>,
    /// For an `sso` user signed in through the tenant's provider: who it is there (§6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federated_subject: Option<FederatedSubject>,
}

impl UserRecord {
    /// The subject identifier tokens carry for this user.
    pub fn subject(&self) -> &str {
        self.sub.as_deref().unwrap_or(&self.username)
    }
}

/// A `client_id` as the host stores it: the app it belongs to and its secret's HMAC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    /// The client identifier.
    pub client_id: String,
    /// HMAC-SHA256 of the secret under the server's client-secret key, base64; empty for a
    /// `client_id` that has no secret (a public client's).
    #[serde(default)]
    pub secret_hmac: String,
    /// The app that owns this `client_id`, with its whole revision history.
    pub app: App,
}

/// Where a refresh token stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshStatus {
    /// Not yet used.
    Active,
    /// Exchanged once already: presenting it again is reuse.
    Used,
    /// Its family was revoked.
    Revoked,
}

/// A stored refresh token: only the SHA-256 of the token is ever kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshTokenRecord {
    /// SHA-256 of the token, base64url without padding.
    pub token_sha256: String,
    /// All tokens rotated from one grant share a family.
    pub family_id: String,
    /// The tenant it was issued in.
    pub tenant: String,
    /// The `client_id` it was issued to.
    pub client_id: String,
    /// The user it was issued for.
    pub username: Option<String>,
    /// The scope granted, space-separated.
    pub scope: String,
    /// The grant that started the family.
    pub grant_type: GrantType,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// When it stops working.
    pub expires_at: Timestamp,
    /// Active, used or revoked.
    pub status: RefreshStatus,
}

/// An authorization code as stored (C12): only its SHA-256 is kept, with everything it is bound to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRecord {
    /// SHA-256 of the code, base64url without padding.
    pub code_sha256: String,
    /// The tenant it was issued in.
    pub tenant: String,
    /// The `client_id` it was issued to.
    pub client_id: String,
    /// The revision the tenant's install pinned when it was issued.
    pub rev: u32,
    /// The `redirect_uri` sent to the authorization endpoint; null when none was sent (X3).
    #[serde(default)]
    pub redirect_uri: Option<String>,
    /// The PKCE challenge (S256).
    pub code_challenge: String,
    /// The scopes granted.
    pub scopes: Vec<String>,
    /// The user who signed in.
    pub username: String,
    /// The OpenID Connect `nonce` sent, if any.
    #[serde(default)]
    pub nonce: Option<String>,
    /// When the user signed in (`auth_time`); the issue instant when absent.
    #[serde(default)]
    pub auth_time: Option<Timestamp>,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// Whether it was exchanged already.
    #[serde(default)]
    pub used: bool,
}

/// A user's consent to an app in a tenant (C11).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRecord {
    /// The tenant.
    pub tenant: String,
    /// The user.
    pub username: String,
    /// The app.
    pub app_id: String,
    /// The scopes consented to.
    pub scopes: Vec<String>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests
mod tests {
    use super::*;

    /// Regression: an offset that pushes the UTC instant past year 9999 panicked when formatted.
    #[test]
    fn an_instant_out_of_range_in_utc_is_refused_not_a_panic() {
        assert!(Timestamp::parse("9999-12-31T23:30:00-01:00").is_none());
        let t = Timestamp::parse("2026-11-25T12:00:00+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-25T10:00:00Z");
    }

    fn general_parse(text: &str) -> Option<Timestamp> {
        OffsetDateTime::parse(text, &Rfc3339)
            .ok()
            .and_then(|t| t.checked_to_offset(time::UtcOffset::UTC))
            .map(Timestamp)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// The direct writer and reader of `YYYY-MM-DDTHH:MM:SSZ` agree with the `time` crate.
        #[test]
        fn the_plain_form_is_written_and_read_as_the_time_crate_does(
            seconds in -62_167_219_200i64..253_402_300_800i64,
        ) {
            let t = Timestamp::from_unix(seconds).unwrap();
            let text = t.to_rfc3339();
            proptest::prop_assert_eq!(&text, &t.0.format(&Rfc3339).unwrap());
            proptest::prop_assert_eq!(Timestamp::parse_plain(&text), Some(t));
            proptest::prop_assert_eq!(general_parse(&text), Some(t));
        }

        /// Any 20-character text: the direct reader accepts only what the general parser reads the same.
        #[test]
        fn the_plain_reader_never_disagrees(
            text in "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}[Zz]",
        ) {
            if let Some(t) = Timestamp::parse_plain(&text) {
                proptest::prop_assert_eq!(general_parse(&text), Some(t));
            }
            proptest::prop_assert_eq!(Timestamp::parse(&text), general_parse(&text));
        }
    }

    #[test]
    fn the_plain_reader_leaves_other_forms_to_the_general_parser() {
        for text in [
            "2026-11-25T12:00:00.5Z",
            "2026-11-25t12:00:00z",
            "2016-12-31T23:59:60Z",
            "2026-11-25T12:00:00+00:00",
            "2026-02-30T12:00:00Z",
            "2026-11-25T24:00:00Z",
        ] {
            assert!(Timestamp::parse_plain(text).is_none(), "{text}");
            assert_eq!(Timestamp::parse(text), general_parse(text), "{text}");
        }
        assert_eq!(
            Timestamp::parse("2026-11-25T12:00:00.5Z")
                .unwrap()
                .to_rfc3339(),
            "2026-11-25T12:00:00.5Z"
        );
    }

    #[test]
    fn moving_past_the_end_saturates() {
        let t = Timestamp::parse("9999-12-31T00:00:00Z").unwrap();
        assert!(t.plus_seconds(i64::MAX / 2) > t);
        assert!(t.plus_seconds(-(i64::MAX / 2)) < t);
    }
}
