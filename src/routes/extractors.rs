//! Extractor settings shared by every route, so that a body or parameter that
//! cannot be read is answered with a problem document, never actix's plain text.

use actix_web::error::{JsonPayloadError, PathError, PayloadError, QueryPayloadError};
use actix_web::web::{JsonConfig, PathConfig, PayloadConfig, QueryConfig, ServiceConfig};

use crate::error::ApiError;

/// Registers the JSON, raw-body, path and query extractor settings.
pub fn configure(cfg: &mut ServiceConfig, body_limit: usize) {
    cfg.app_data(
        JsonConfig::default()
            .limit(body_limit)
            .error_handler(move |err, _req| json_error(err, body_limit).into()),
    )
    .app_data(PayloadConfig::default().limit(body_limit))
    .app_data(PathConfig::default().error_handler(|err, _req| path_error(err).into()))
    .app_data(QueryConfig::default().error_handler(|err, _req| query_error(err).into()));
}

/// Maps a JSON body error to the problem we answer with.
pub fn json_error(err: JsonPayloadError, limit: usize) -> ApiError {
    match err {
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ApiError::PayloadTooLarge { limit }
        }
        JsonPayloadError::Payload(PayloadError::Overflow) => ApiError::PayloadTooLarge { limit },
        JsonPayloadError::ContentType => ApiError::UnsupportedMediaType {
            detail: "this endpoint takes a JSON body: send Content-Type: application/json".into(),
        },
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            ApiError::bad_request("invalid_body", format!("the JSON body does not fit: {e}"))
        }
        JsonPayloadError::Deserialize(e) => {
            ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}"))
        }
        JsonPayloadError::Payload(e) => ApiError::bad_request(
            "unreadable_body",
            format!("the body could not be read: {e}"),
        ),
        other => ApiError::bad_request("invalid_body", other.to_string()),
    }
}

fn path_error(err: PathError) -> ApiError {
    ApiError::bad_request(
        "invalid_path_parameter",
        format!("a path parameter is invalid: {err}"),
    )
}

fn query_error(err: QueryPayloadError) -> ApiError {
    ApiError::bad_request(
        "invalid_query",
        format!("the query string is invalid: {err}"),
    )
}
