//! Logging with `tracing`, and the per-request id.

use std::io::IsTerminal;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, ResponseError};
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, Settings};
use crate::error::ApiError;

/// The header carrying the request id, in and out.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Installs the global subscriber. Call once, before anything logs.
pub fn init(settings: &Settings) {
    let filter =
        EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(&settings.log_level));
    let json = match settings.log_format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let fmt = tracing_subscriber::fmt::layer().with_target(true);
    let fmt = if json {
        fmt.json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed()
    } else {
        fmt.boxed()
    };
    // A second init (as in tests) is harmless: the first subscriber stays.
    // The log level filters the log lines only; exported spans have their own filter.
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(crate::otel::layer())
        .try_init();
}

/// The id of one request, from `X-Request-Id` or generated.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// When the request arrived.
#[derive(Debug, Clone, Copy)]
struct Arrived(Instant);

/// Accepts a caller's id only if it is short and printable, so it is safe in logs and headers.
fn valid_incoming(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(&b));
    ok.then(|| s.to_string())
}

/// Middleware: assigns the request id, returns it on every response, and turns
/// any error answer without a body (actix's own 404/405/...) into problem+json.
pub async fn request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(valid_incoming)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    req.extensions_mut().insert(Arrived(Instant::now()));
    // Handler and extractor errors arrive here as responses already; an `Err` can only
    // come from a middleware and is rendered by its own `ResponseError`.
    let mut res = next.call(req).await?.map_into_boxed_body();
    if res.status().as_u16() >= 400 && !is_problem(&res) {
        res = problem_for_empty(res);
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    record_metrics(&res);
    Ok(res)
}

/// Counts the request by route pattern and status; times `/run` and `/queues`.
fn record_metrics(res: &ServiceResponse<BoxBody>) {
    let req = res.request();
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let status = res.status().as_u16();
    crate::metrics::http_request(&route, req.method().as_str(), status);
    let (kind, param) = match route.as_str() {
        "/run/{process}" => ("job", "process"),
        "/queues/{queue}" => ("queue_item", "queue"),
        _ => return,
    };
    if let Some(a) = req.extensions().get::<Arrived>() {
        // Only an answer that found the process names it (others may name anything).
        let known = matches!(status, 200..=299 | 409 | 422);
        let target = req.match_info().get(param).filter(|_| known);
        crate::metrics::run_latency(a.0.elapsed().as_secs_f64(), status, kind, target);
    }
}

/// True when the answer is already a problem document (all of ours are; actix's own
/// errors, such as a raw body over the limit, are plain text or empty).
fn is_problem(res: &ServiceResponse<BoxBody>) -> bool {
    let empty = matches!(
        res.response().body().size(),
        actix_web::body::BodySize::Sized(0) | actix_web::body::BodySize::None
    );
    !empty
        && res
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes() == crate::error::PROBLEM_JSON.as_bytes())
}

fn problem_for_empty(res: ServiceResponse<BoxBody>) -> ServiceResponse<BoxBody> {
    let status = res.status();
    let method = res.request().method().to_string();
    let path = res.request().path().to_string();
    let error = match status.as_u16() {
        404 => ApiError::not_found("not_found", format!("No route matches {method} {path}.")),
        405 => {
            let allowed = res
                .headers()
                .get(actix_web::http::header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(',').map(|m| m.trim().to_string()).collect())
                .unwrap_or_default();
            ApiError::MethodNotAllowed {
                method,
                path,
                allowed,
            }
        }
        _ => ApiError::Status {
            status,
            code: "http_error",
        },
    };
    let error = match (status.as_u16(), error) {
        (413, _) => ApiError::PayloadTooLarge {
            limit: res
                .request()
                .app_data::<actix_web::web::Data<crate::state::AppState>>()
                .map_or(0, |s| s.settings.body_limit_bytes),
        },
        (_, e) => e,
    };
    let mut new = error.error_response();
    for (name, value) in res.headers() {
        if name != actix_web::http::header::CONTENT_TYPE
            && name != actix_web::http::header::CONTENT_LENGTH
        {
            new.headers_mut().insert(name.clone(), value.clone());
        }
    }
    res.into_response(new)
}

/// Builds each request's root span with our request id.
pub struct GatewayRootSpan;

impl RootSpanBuilder for GatewayRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let id = request
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        let route = request
            .match_pattern()
            .unwrap_or_else(|| "unmatched".into());
        let span = tracing::info_span!(
            "http_request",
            otel.name = %format!("{} {route}", request.method()),
            otel.kind = "server",
            request_id = %id,
            http.method = %request.method(),
            http.route = %route,
            http.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            exception.message = tracing::field::Empty,
            exception.details = tracing::field::Empty,
        );
        crate::otel::adopt_parent(&span, request.headers());
        span
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        DefaultRootSpanBuilder::on_request_end(span.clone(), outcome);
        if let Ok(res) = outcome {
            let elapsed_us = res
                .request()
                .extensions()
                .get::<Arrived>()
                .map(|a| a.0.elapsed().as_micros() as u64)
                .unwrap_or_default();
            span.in_scope(|| {
                tracing::info!(
                    status = res.status().as_u16(),
                    elapsed_us,
                    "request completed"
                )
            });
        }
    }
}
