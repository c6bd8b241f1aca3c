//! What can go wrong when talking to Orchestrator, typed so callers know what to do.

use std::time::Duration;

/// An Orchestrator or identity-server failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OrchestratorError {
    /// 401, or a token request refused (`invalid_client`, `invalid_grant`, bad password).
    #[error("authentication failed ({status}{}): {message}", code_suffix(.error_code))]
    Auth {
        status: u16,
        error_code: Option<String>,
        message: String,
    },
    /// 403: the token lacks a scope or the user a folder permission.
    #[error("permission denied ({status}{}): {message}", code_suffix(.error_code))]
    Permission {
        status: u16,
        error_code: Option<String>,
        message: String,
    },
    /// 404: no such release, job, folder or tenant.
    #[error("not found ({status}{}): {message}", code_suffix(.error_code))]
    NotFound {
        status: u16,
        error_code: Option<String>,
        message: String,
    },
    /// 400, 409, 422 (any other 4xx): the request was refused for its content; retrying
    /// will not help.
    #[error("invalid request ({status}{}): {message}", code_suffix(.error_code))]
    InvalidRequest {
        status: u16,
        error_code: Option<String>,
        message: String,
    },
    /// 429: over a rate limit; `retry_after` when Orchestrator said.
    #[error("rate limited (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    /// The request did not reach Orchestrator, or Orchestrator said it is unavailable
    /// before acting (503 and the like on reads).
    #[error("Orchestrator is unavailable: {message}")]
    Unavailable {
        status: Option<u16>,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The traffic governor held the call back (the tenant is paused, its circuit is
    /// open, or its list budget is spent): nothing was sent.
    #[error("held back by the traffic governor ({reason}) for {wait:?}")]
    Held {
        wait: Duration,
        reason: &'static str,
    },
    /// A write was sent but its outcome is unknown (timeout, connection lost, 5xx after
    /// sending): look the job up by its Reference before trying again.
    #[error("the outcome is unknown: {message}")]
    Ambiguous {
        status: Option<u16>,
        message: String,
    },
}

fn code_suffix(code: &Option<String>) -> String {
    code.as_ref()
        .map(|c| format!(", code {c}"))
        .unwrap_or_default()
}

impl OrchestratorError {
    /// True when the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Unavailable { .. }
                | Self::Ambiguous { .. }
                | Self::Held { .. }
        )
    }

    /// How long Orchestrator asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } | Self::Unavailable { retry_after, .. } => {
                *retry_after
            }
            Self::Held { wait, .. } => Some(*wait),
            _ => None,
        }
    }

    /// Orchestrator's `errorCode` (or the OAuth `error`), if any.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            Self::Auth { error_code, .. }
            | Self::Permission { error_code, .. }
            | Self::NotFound { error_code, .. }
            | Self::InvalidRequest { error_code, .. } => error_code.as_deref(),
            _ => None,
        }
    }

    /// Classifies an error answer. `sent_write` is true for a POST whose effect may
    /// have happened (StartJobs): then a 5xx is ambiguous, not simply unavailable.
    pub fn from_status(
        status: u16,
        body: &[u8],
        retry_after: Option<Duration>,
        sent_write: bool,
    ) -> Self {
        let parsed: super::models::ErrorBody = serde_json::from_slice(body).unwrap_or_default();
        let oauth: super::models::OAuthErrorBody = serde_json::from_slice(body).unwrap_or_default();
        let error_code = parsed
            .error_code
            .map(|c| c.to_string())
            .or(oauth.error.clone());
        let message = parsed
            .text()
            .or(oauth.error_description)
            .or(oauth.error)
            .unwrap_or_else(|| format!("HTTP {status} with no error message"));
        match status {
            401 => Self::Auth {
                status,
                error_code,
                message,
            },
            403 => Self::Permission {
                status,
                error_code,
                message,
            },
            404 => Self::NotFound {
                status,
                error_code,
                message,
            },
            429 => Self::RateLimited { retry_after },
            // 408: the server, or a proxy before it, gave up waiting for the request. Worth
            // trying again; a write may still have reached Orchestrator behind a proxy, so
            // it is looked up by its Reference first.
            408 if sent_write => Self::Ambiguous {
                status: Some(status),
                message,
            },
            408 => Self::Unavailable {
                status: Some(status),
                message,
                retry_after,
            },
            500..=599 if sent_write && status != 503 => Self::Ambiguous {
                status: Some(status),
                message,
            },
            500..=599 => Self::Unavailable {
                status: Some(status),
                message,
                retry_after,
            },
            _ => Self::InvalidRequest {
                status,
                error_code,
                message,
            },
        }
    }

    /// Classifies a transport error.
    pub fn from_transport(err: &reqwest::Error, sent_write: bool) -> Self {
        // A connect failure means nothing was sent; anything later may have been acted on.
        let message = strip_url(err);
        if err.is_connect() || !sent_write {
            Self::Unavailable {
                status: None,
                message,
                retry_after: None,
            }
        } else {
            Self::Ambiguous {
                status: None,
                message,
            }
        }
    }
}

/// The error's text without its URL (which may hold a tenant path, never a secret, but is noise).
fn strip_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(url.as_str(), "");
    }
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
