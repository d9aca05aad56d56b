//! The token endpoint's decision (T1–T9 and refresh rotation) as a pure step function: the host
//! calls [`token`] with what it has, and is told which records to fetch, which KDF to run, what
//! to sign, or the final response with its audit record and the effects to apply. The types of
//! those steps are in `steps.rs`; this file drives them.

use super::judge::settle;
use super::request::{self, HttpRequest, TokenRequest};
use super::rules::judge_request;
pub use super::steps::{
    code_family, code_sha256, refresh_token_sha256, Audit, Decision, Effect, KdfOutput, KdfPurpose,
    Lookup, Memo, Records, SignPurpose, SigningAlg, SigningKey, Step, TokenContext, TokenInput,
    TokenStep, ENTROPY_BYTES,
};
use crate::error::PolicyError;
use serde::Deserialize;

/// One step of the token endpoint for `input` (see the module's documentation).
pub fn token(input: &TokenInput) -> Result<TokenStep, PolicyError> {
    token_memo(input, &mut Memo::default())
}

/// One token request carried across its steps inside one instance: the first step parses the
/// whole input, later ones add only what the host looked up or derived ([`TokenResume`]).
pub struct TokenFlow {
    input: TokenInput,
    memo: Memo,
}

/// What the host adds to a [`TokenFlow`] after a step: the records it looked up, or the KDF.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenResume {
    /// Records looked up (each field as in [`Records`]).
    #[serde(default)]
    pub records: Records,
    /// The KDF's output.
    #[serde(default)]
    pub kdf: Option<KdfOutput>,
    /// The signature asked for by `need_signature`, base64url.
    #[serde(default)]
    pub signature: Option<String>,
    /// The ID token's signature asked for by `need_signature` (`purpose: id_token`), base64url.
    #[serde(default)]
    pub id_token_signature: Option<String>,
    /// The output of a `rehash` KDF step.
    #[serde(default)]
    pub rehash_kdf: Option<KdfOutput>,
}

impl TokenFlow {
    /// A flow for `input`; [`TokenFlow::step`] answers its first step.
    pub fn new(input: TokenInput) -> TokenFlow {
        TokenFlow {
            input,
            memo: Memo::default(),
        }
    }

    /// Starts a flow with the whole input and answers its first step.
    pub fn start(input: TokenInput) -> (TokenFlow, Result<TokenStep, PolicyError>) {
        let mut flow = TokenFlow::new(input);
        let step = flow.step();
        (flow, step)
    }

    /// The step for what the flow holds now.
    pub fn step(&mut self) -> Result<TokenStep, PolicyError> {
        token_memo(&self.input, &mut self.memo)
    }

    /// Adds what the host found and answers the next step.
    pub fn resume(&mut self, more: TokenResume) -> Result<TokenStep, PolicyError> {
        let records = &mut self.input.records;
        let TokenResume {
            records: new,
            kdf,
            signature,
            id_token_signature,
            rehash_kdf,
        } = more;
        if new.tenant.is_some() {
            records.tenant = new.tenant;
        }
        if new.client.is_some() {
            records.client = new.client;
        }
        if new.user.is_some() {
            records.user = new.user;
        }
        if new.refresh_token.is_some() {
            records.refresh_token = new.refresh_token;
        }
        if new.code.is_some() {
            records.code = new.code;
        }
        if new.consent.is_some() {
            records.consent = new.consent;
        }
        if kdf.is_some() {
            self.input.kdf = kdf;
        }
        if signature.is_some() {
            self.input.signature = signature;
        }
        if id_token_signature.is_some() {
            self.input.id_token_signature = id_token_signature;
        }
        if rehash_kdf.is_some() {
            self.input.rehash_kdf = rehash_kdf;
        }
        self.step()
    }
}

/// [`token`], reusing what `memo` holds from earlier steps of the same input.
pub fn token_memo(input: &TokenInput, memo: &mut Memo) -> Result<TokenStep, PolicyError> {
    settle(judge_request(input, memo))
}

/// Parses a request without judging it: for fuzzing and for hosts that log request shapes.
pub fn parse_request(http: &HttpRequest) -> Option<TokenRequest> {
    request::parse(http).ok().and_then(Result::ok)
}
