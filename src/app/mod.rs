//! The use cases, below the routes and above storage and Orchestrator: no actix types and
//! no SQL text here.

pub mod config_apply;
pub mod discovery;
pub mod dispatch;
pub mod hook_delivery;
pub mod process_check;
pub mod queue_definition;
pub mod release;
pub mod stop;
pub mod submit;

use crate::error::ApiError;
use crate::tokens::TokenError;

/// Maps a token or Orchestrator failure to the caller's answer, keeping Orchestrator's code.
pub fn upstream(e: TokenError) -> ApiError {
    match e {
        TokenError::Database(e) => e.into(),
        TokenError::Config(detail) => ApiError::Conflict {
            code: "connection_misconfigured",
            detail,
        },
        TokenError::Orchestrator(e) => {
            let status = if e.is_retryable() { 503 } else { 502 };
            ApiError::Upstream {
                status,
                detail: format!("Orchestrator: {e}"),
                orchestrator_code: e.error_code().map(String::from),
                retry_after: e
                    .retry_after()
                    .map(|d| d.as_secs().max(1))
                    .or(e.is_retryable().then_some(5)),
            }
        }
    }
}
