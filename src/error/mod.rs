//! One error type for the HTTP API, rendered as RFC 9457 `application/problem+json`.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

mod codes;
pub use codes::CODES;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document. `code` is stable and meant for programs;
/// `title` and `detail` are for people.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:uipath-gateway:problem:not_found",
    "title": "Not Found",
    "status": 404,
    "detail": "No route matches GET /nope.",
    "code": "not_found"
}))]
pub struct Problem {
    /// A URI naming the kind of problem: `urn:uipath-gateway:problem:<code>`.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// The HTTP reason phrase.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this request, and how to fix it where we know.
    pub detail: String,
    /// A stable, machine-readable error code.
    pub code: String,
    /// For 422 answers (`validation_failed`, `invalid_arguments`, `mapping_failed`...):
    /// each field or argument, and what is wrong with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<crate::domain::problem::FieldProblem>>)]
    pub errors: Option<serde_json::Value>,
    /// For errors from Orchestrator: its `errorCode` (or OAuth `error`), when it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orchestrator_error_code: Option<String>,
    /// For `not_ready`: each readiness check and its result.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub checks: Option<serde_json::Value>,
}

/// Every error the HTTP API can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed (bad JSON, bad query, bad path parameter).
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    /// 401: no credentials, or wrong ones.
    #[error("{detail}")]
    Unauthorized { detail: String },
    /// 401: an inbound webhook's signature or token did not verify.
    #[error("{detail}")]
    SignatureRefused { code: &'static str, detail: String },
    /// 403: the credentials do not allow this.
    #[error("{detail}")]
    Forbidden { code: &'static str, detail: String },
    /// 409: the request conflicts with the current state (a name in use, an object in use).
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    /// 422: the body parsed but its content is invalid; `errors` names each field.
    #[error("{detail}")]
    Unprocessable {
        code: &'static str,
        detail: String,
        errors: serde_json::Value,
    },
    /// 502 or 503: Orchestrator failed or refused; its code and message are passed on.
    #[error("{detail}")]
    Upstream {
        status: u16,
        detail: String,
        orchestrator_code: Option<String>,
        retry_after: Option<u64>,
    },
    /// 404: no such route or object.
    #[error("{detail}")]
    NotFound { code: &'static str, detail: String },
    /// 405: the route exists but not for this method.
    #[error("{method} is not allowed on {path}; use {}", allowed.join(", "))]
    MethodNotAllowed {
        method: String,
        path: String,
        allowed: Vec<String>,
    },
    /// 413: the body is larger than `GATEWAY_BODY_LIMIT_BYTES`.
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 429: this API key or webhook sent more than its rate allows (`rate_limited`), or
    /// this client address holds too many connections (`too_many_connections`) or body
    /// bytes (`too_many_bodies`) at once.
    #[error("{detail}")]
    TooManyRequests {
        code: &'static str,
        detail: String,
        retry_after: u64,
    },
    /// 408: the request body stalled or arrived too slowly; the connection is closed.
    #[error("{detail}")]
    BodyTimeout { detail: String },
    /// 415: the body's Content-Type is not accepted here.
    #[error("{detail}")]
    UnsupportedMediaType { detail: String },
    /// 503: a dependency is down; try again after `retry_after` seconds.
    #[error("{detail}")]
    Unavailable {
        code: &'static str,
        detail: String,
        retry_after: u64,
        checks: Option<serde_json::Value>,
    },
    /// 503: the database cannot be reached. The request was not carried out.
    #[error("the database is unavailable")]
    DatabaseUnavailable(#[source] sqlx::Error),
    /// Any other status produced outside our handlers (by actix itself).
    #[error("{}", status.canonical_reason().unwrap_or("the request failed"))]
    Status {
        status: StatusCode,
        code: &'static str,
    },
    /// 500: a bug or an unexpected failure; details are logged, never returned.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            // A protocol error is the link to the database failing mid-exchange, like an I/O
            // error: never the request's fault. (The likeliest cause of two 500s seen once in
            // CI while PostgreSQL stopped under load; not reproduced in 11 runs since.)
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => ApiError::DatabaseUnavailable(err),
            // Class 08 (connection exception), 53 (insufficient resources), 57 (operator
            // intervention: the server is shutting down or restarting).
            sqlx::Error::Database(ref e)
                if e.code().is_some_and(|c| {
                    c.starts_with("08") || c.starts_with("53") || c.starts_with("57")
                }) =>
            {
                ApiError::DatabaseUnavailable(err)
            }
            // Class 22 (data exception): a value from the request that PostgreSQL cannot
            // store, such as a NUL byte in text or JSON. The caller's fault, never a 500.
            // Said in our own words: PostgreSQL's message is not for callers.
            sqlx::Error::Database(ref e) if e.code().is_some_and(|c| c.starts_with("22")) => {
                tracing::info!(sqlstate = ?e.code(), "a value in the request cannot be stored");
                ApiError::BadRequest {
                    code: "invalid_value",
                    detail: data_exception(e.code().as_deref().unwrap_or_default()).into(),
                }
            }
            other => ApiError::Internal(other.into()),
        }
    }
}

/// What a PostgreSQL data exception (SQLSTATE class 22) means for the caller.
fn data_exception(sqlstate: &str) -> &'static str {
    match sqlstate {
        "22021" | "22P05" => {
            "a text value in the request holds a NUL character (`\\u0000`) or bytes that are not UTF-8, which cannot be stored"
        }
        "22001" => "a value in the request is longer than can be stored",
        "22003" => "a number in the request is out of the range that can be stored",
        "22007" | "22008" => "a date or time in the request is invalid or out of range",
        _ => "a value in the request cannot be stored",
    }
}

impl ApiError {
    /// A write on the answer path that did not finish in time. `what` names what was
    /// being recorded (`job 1b2c...`), so the caller can look for it when the outcome is
    /// not known.
    pub fn late(late: crate::storage::batch::Late, what: &str) -> Self {
        use crate::storage::batch::Late;
        match late {
            Late::Database(e) => e.into(),
            Late::NotWritten(after) => ApiError::Unavailable {
                code: "database_unavailable",
                detail: format!(
                    "The database did not take the write within {} ms; nothing was recorded. Retrying is safe (send the same Idempotency-Key to be sure).",
                    after.as_millis()
                ),
                retry_after: 5,
                checks: None,
            },
            Late::Uncertain(after) => ApiError::Unavailable {
                code: "database_timeout",
                detail: format!(
                    "The database stopped answering while {what} was being committed (no answer within {} ms); it may have been recorded. Retry with the same Idempotency-Key, or look it up once the database is back.",
                    after.as_millis()
                ),
                retry_after: 5,
                checks: None,
            },
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        // A database error that travelled through anyhow keeps its meaning (unavailable,
        // or a value the caller sent that cannot be stored).
        match err.downcast::<sqlx::Error>() {
            Ok(e) => e.into(),
            Err(err) => ApiError::Internal(err),
        }
    }
}

impl ApiError {
    /// A 404 for an object that does not exist.
    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::NotFound {
            code,
            detail: detail.into(),
        }
    }

    /// A 422 listing each field and what is wrong with it.
    pub fn invalid(code: &'static str, problems: &[crate::domain::problem::FieldProblem]) -> Self {
        ApiError::Unprocessable {
            code,
            detail: problems
                .iter()
                .map(|p| format!("{}: {}", p.field, p.problem))
                .collect::<Vec<_>>()
                .join("; "),
            errors: serde_json::to_value(problems).expect("problems serialize"),
        }
    }

    /// A 400 with a stable code.
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            detail: detail.into(),
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::Forbidden { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::Unprocessable { code, .. }
            | ApiError::NotFound { code, .. }
            | ApiError::Unavailable { code, .. }
            | ApiError::Status { code, .. }
            | ApiError::TooManyRequests { code, .. }
            | ApiError::SignatureRefused { code, .. } => code,
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Unauthorized { .. } => "unauthorized",
            ApiError::Upstream { .. } => "orchestrator_error",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::BodyTimeout { .. } => "body_timeout",
            ApiError::UnsupportedMediaType { .. } => "unsupported_media_type",
            ApiError::DatabaseUnavailable(_) => "database_unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// The problem document for this error.
    pub fn problem(&self) -> Problem {
        debug_assert!(
            CODES.contains(&self.code()),
            "`{}` is missing from error::CODES",
            self.code()
        );
        let status = self.status_code();
        let detail = match self {
            ApiError::DatabaseUnavailable(_) => {
                "The database cannot be reached; nothing was changed. Retry later.".to_string()
            }
            ApiError::Internal(_) => {
                "An unexpected error occurred; it has been logged with this request's X-Request-Id."
                    .to_string()
            }
            other => other.to_string(),
        };
        let checks = match self {
            ApiError::Unavailable { checks, .. } => checks.clone(),
            _ => None,
        };
        let errors = match self {
            ApiError::Unprocessable { errors, .. } => Some(errors.clone()),
            _ => None,
        };
        let orchestrator_error_code = match self {
            ApiError::Upstream {
                orchestrator_code, ..
            } => orchestrator_code.clone(),
            _ => None,
        };
        Problem {
            problem_type: format!("urn:uipath-gateway:problem:{}", self.code()),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail,
            code: self.code().to_string(),
            errors,
            orchestrator_error_code,
            checks,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Unauthorized { .. } | ApiError::SignatureRefused { .. } => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Upstream { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable { .. } | ApiError::DatabaseUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Status { status, .. } => *status,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Internal(_) => tracing::error!(error = ?anyhow_chain(self), "request failed"),
            ApiError::DatabaseUnavailable(e) => {
                tracing::warn!(error = %e, "database unavailable")
            }
            _ => {}
        }
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        match self {
            ApiError::Unavailable { retry_after, .. } => {
                res.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            ApiError::DatabaseUnavailable(_) => {
                res.insert_header((header::RETRY_AFTER, "5"));
            }
            ApiError::TooManyRequests { retry_after, .. } => {
                res.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            ApiError::MethodNotAllowed { allowed, .. } => {
                res.insert_header((header::ALLOW, allowed.join(", ")));
            }
            ApiError::Unauthorized { .. } => {
                res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::Upstream {
                retry_after: Some(secs),
                ..
            } => {
                res.insert_header((header::RETRY_AFTER, secs.to_string()));
            }
            _ => {}
        }
        res.body(serde_json::to_vec(&self.problem()).expect("a problem always serializes"))
    }
}

/// Formats an error with its whole `source()` chain, for logs.
fn anyhow_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(src) = cur {
        out.push_str(": ");
        out.push_str(&src.to_string());
        cur = src.source();
    }
    out
}
