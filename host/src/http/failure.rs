//! Why a request could not be decided, and how that is answered (503s, logged).

use super::answer::unavailable;
use crate::guest::GuestError;
use crate::kdf::KdfError;
use crate::service::Service;
use axum::response::Response;

/// Why a request could not be decided.
pub(crate) enum Failure {
    Guest(GuestError),
    Store(anyhow::Error),
    LoginQueueFull,
    Module(String),
    /// The signing key could not sign (never its bytes in the message).
    Signing(anyhow::Error),
    /// The clock could not be read: nothing is decided without it.
    Clock(crate::settings::ClockError),
}

impl Failure {
    pub(crate) fn response(&self) -> Response {
        match self {
            Failure::Guest(e) => {
                tracing::error!(code = e.code(), "policy module failed: {e}");
                unavailable("the policy module could not answer; try again")
            }
            Failure::Store(e) => {
                tracing::error!("store failed: {e:#}");
                unavailable("the store could not answer; try again")
            }
            Failure::LoginQueueFull => {
                tracing::warn!("login queue full: a password request was turned away");
                unavailable("too many sign-ins are waiting; try again shortly")
            }
            Failure::Module(message) => {
                tracing::error!("policy module refused the host's input: {message}");
                unavailable("the policy module could not answer; try again")
            }
            Failure::Signing(e) => {
                tracing::error!("signing failed: {e:#}");
                unavailable("the access token could not be signed; try again")
            }
            Failure::Clock(e) => {
                tracing::error!("{e}; the request was not decided");
                unavailable("the server cannot tell the time; try again")
            }
        }
    }
}

impl From<GuestError> for Failure {
    fn from(e: GuestError) -> Self {
        Failure::Guest(e)
    }
}

impl From<KdfError> for Failure {
    fn from(e: KdfError) -> Self {
        match e {
            KdfError::QueueFull => Failure::LoginQueueFull,
            KdfError::Refused(message) => Failure::Module(message),
        }
    }
}

/// Counts a failure in the metrics and answers it.
pub(crate) fn failed(service: &Service, failure: &Failure) -> Response {
    match failure {
        Failure::Guest(e) => service.metrics.module_failure(e.code()),
        Failure::Module(_) => service.metrics.module_failure("policy_refused_host_input"),
        Failure::LoginQueueFull => service.metrics.login_queue_full(),
        Failure::Store(_) | Failure::Clock(_) | Failure::Signing(_) => {}
    }
    failure.response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_clock_answers_503() {
        let settings = crate::settings::ServerSettings {
            clock: crate::settings::Clock::Unreadable,
            ..Default::default()
        };
        let Err(e) = crate::settings::now(&settings) else {
            panic!("an unreadable clock gave a time");
        };
        let response = Failure::Clock(e).response();
        assert_eq!(
            response.status(),
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
