//! The stable codes of problem documents, grouped by the status that carries them.

/// Every `code` a problem document can carry (the enum of `Problem.code` in the OpenAPI
/// document). A debug build refuses to answer with a code missing here.
pub const CODES: &[&str] = &[
    // 400
    "invalid_body",
    "malformed_json",
    "invalid_value",
    "invalid_wait",
    "invalid_cursor",
    "invalid_query",
    "invalid_path_parameter",
    "invalid_idempotency_key",
    "invalid_strategy",
    "folder_required",
    "unreadable_body",
    "http_error",
    // 401
    "unauthorized",
    "signature_missing",
    "signature_malformed",
    "signature_invalid",
    "timestamp_missing",
    "timestamp_outside_window",
    "token_invalid",
    "delivery_id_missing",
    // 403
    "missing_scope",
    "admin_api_closed",
    // 404
    "not_found",
    "process_not_found",
    "job_not_found",
    "queue_not_found",
    "queue_item_not_found",
    "connection_not_found",
    "webhook_not_found",
    "hook_not_found",
    "delivery_not_found",
    "callback_not_found",
    "api_key_not_found",
    // 405, 408, 413, 415
    "method_not_allowed",
    "body_timeout",
    "payload_too_large",
    "unsupported_media_type",
    // 409
    "name_taken",
    "slug_taken",
    "idempotency_key_reused",
    "connection_in_use",
    "connection_misconfigured",
    "process_in_use",
    "process_gone",
    "job_ended",
    "not_dead_lettered",
    "not_replayable",
    "not_stoppable",
    // 422
    "validation_failed",
    "invalid_arguments",
    "invalid_content",
    "invalid_callback_url",
    "mapping_failed",
    "filter_failed",
    // 429
    "rate_limited",
    "too_many_connections",
    "too_many_bodies",
    // 500, 502, 503
    "internal_error",
    "orchestrator_error",
    "database_unavailable",
    "database_timeout",
    "not_ready",
    "metrics_unavailable",
];
