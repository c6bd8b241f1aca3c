//! The gate every request passes before a handler reads it. It bounds what one client
//! address can hold (connections, and body bytes being read), gives every request body a
//! deadline and a minimum rate, and checks credentials before any body is read, so a
//! caller without them costs a header parse and no more.

use std::cell::Cell;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{HttpMessage, HttpResponse, ResponseError, web};
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

use super::RouteTable;
use super::auth::Principal;
use crate::config::ClientLimitSettings;
use crate::error::ApiError;
use crate::limits::ClientLimits;
use crate::state::AppState;

/// Why a body was cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// It paused longer than the timeout, or fell below the minimum rate.
    Slow,
    /// Its address has too many body bytes being read.
    Crowded,
}

impl Cut {
    fn error(self, s: &ClientLimitSettings) -> ApiError {
        match self {
            Cut::Slow => ApiError::BodyTimeout {
                detail: format!(
                    "the request body stalled or arrived too slowly (a body may pause at most {} s and must average {} bytes/s); the connection is closed",
                    s.body_timeout_secs, s.body_min_bytes_per_sec
                ),
            },
            Cut::Crowded => ApiError::TooManyRequests {
                code: "too_many_bodies",
                detail: format!(
                    "this client address has more than {} bytes of request bodies being read at once; retry after the time in Retry-After",
                    s.body_bytes_per_address
                ),
                retry_after: 1,
            },
        }
    }
}

/// A request body read under a deadline and its address's share of body bytes.
struct Guarded {
    inner: Payload,
    limits: Arc<ClientLimits>,
    ip: Option<IpAddr>,
    /// Bytes taken from the address's share (given back when the request ends).
    taken: Rc<Cell<usize>>,
    cut: Rc<Cell<Option<Cut>>>,
    started: Instant,
    received: u64,
    timer: Pin<Box<Sleep>>,
}

impl Guarded {
    /// The next moment the body is too slow: a pause of `body_timeout_secs`, or an
    /// average below `body_min_bytes_per_sec` after the first `body_timeout_secs`.
    fn deadline(&self) -> Instant {
        let s = &self.limits.settings;
        let pause = Duration::from_secs(s.body_timeout_secs);
        let earned =
            Duration::from_secs_f64(self.received as f64 / s.body_min_bytes_per_sec as f64);
        (Instant::now() + pause).min(self.started + pause + earned)
    }

    fn fail(&mut self, cut: Cut) -> Poll<Option<Result<Bytes, PayloadError>>> {
        self.cut.set(Some(cut));
        let kind = match cut {
            Cut::Slow => std::io::ErrorKind::TimedOut,
            Cut::Crowded => std::io::ErrorKind::Other,
        };
        Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
            kind,
            "request body refused by the gate",
        )))))
    }
}

impl Stream for Guarded {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.cut.get().is_some() {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(ip) = this.ip {
                    if !this.limits.take_body(ip, chunk.len()) {
                        return this.fail(Cut::Crowded);
                    }
                    this.taken.set(this.taken.get() + chunk.len());
                }
                this.received += chunk.len() as u64;
                let next = this.deadline();
                this.timer.as_mut().reset(next);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => this.fail(Cut::Slow),
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }
}

/// True when the request says it has a body.
fn has_body(req: &ServiceRequest) -> bool {
    let h = req.headers();
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// Routes that never need credentials and whose bodies are not guarded (health,
/// readiness, metrics, the document and its UI, the console's page), and those that check their own
/// credentials (webhook deliveries, Orchestrator's events).
fn public(path: &str) -> (bool, bool) {
    let unlimited = matches!(path, "/healthz" | "/readyz" | "/metrics" | "/openapi.json")
        || path == "/docs"
        || path.starts_with("/docs/")
        || path == "/console"
        || path.starts_with("/console/");
    let own_check = path.starts_with("/hooks/") || path.starts_with("/orchestrator/events/");
    (unlimited, unlimited || own_check)
}

/// Checks the credentials a request presents. `Ok(None)` when it presents none.
async fn credentials(
    req: &ServiceRequest,
    state: &AppState,
) -> Result<Option<Principal>, ApiError> {
    let http = req.request();
    if let Some(key) = super::auth::presented_key(http) {
        let row = state
            .lookups
            .api_key(&state.pool, &super::auth::hash(key))
            .await?
            .ok_or_else(|| ApiError::Unauthorized {
                detail: "the API key is not valid, revoked or expired".into(),
            })?;
        state.limits.api_key(row.id)?;
        return Ok(Some(Principal::Key(row)));
    }
    let bearer = http
        .headers()
        .get(header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes().starts_with(b"Bearer "));
    if bearer {
        super::auth::admin_token(http)?;
        return Ok(Some(Principal::AdminToken));
    }
    Ok(None)
}

/// The middleware: the connection's share, credentials, then the body under its guard.
pub async fn gate(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let (unlimited, no_credentials) = public(req.path());
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    if !no_credentials {
        match credentials(&req, &state).await {
            Ok(Some(principal)) => {
                req.extensions_mut().insert(principal);
            }
            outcome => {
                // Only an operation that needs credentials is refused here: an unknown
                // path still gets its 404, a known one with another method its 405.
                let needed = req
                    .app_data::<web::Data<RouteTable>>()
                    .and_then(|t| t.credentials(req.method().as_str(), req.path()));
                if let Some(admin) = needed {
                    let refusal = match outcome {
                        Err(e) => e,
                        // None presented: say what this operation takes.
                        Ok(_) if admin => match super::auth::admin_token(req.request()) {
                            Err(e) => e,
                            Ok(_) => anyhow::anyhow!("an admin token passed unseen").into(),
                        },
                        Ok(_) => ApiError::Unauthorized {
                            detail: super::auth::NO_KEY.into(),
                        },
                    };
                    return Ok(req.into_response(closing(refusal.error_response())));
                }
            }
        }
    }
    if unlimited || !has_body(&req) {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let limits = state.client_limits.clone();
    let ip = req.peer_addr().map(|a| a.ip());
    let taken = Rc::new(Cell::new(0));
    let cut = Rc::new(Cell::new(None));
    let mut guarded = Guarded {
        inner: req.take_payload(),
        limits: limits.clone(),
        ip,
        taken: taken.clone(),
        cut: cut.clone(),
        started: Instant::now(),
        received: 0,
        timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
    };
    let first = guarded.deadline();
    guarded.timer.as_mut().reset(first);
    req.set_payload(Payload::Stream {
        payload: Box::pin(guarded),
    });
    let outcome = next.call(req).await;
    if let Some(ip) = ip {
        limits.give_back_body(ip, taken.get());
    }
    let res = outcome?.map_into_boxed_body();
    Ok(match cut.get() {
        // Whatever the handler made of the broken body, the answer says what happened.
        Some(c) => res.into_response(closing(c.error(&limits.settings).error_response())),
        None => res,
    })
}

/// The response, with the connection closed after it (the body was not read to its end).
fn closing(mut res: HttpResponse) -> HttpResponse {
    res.head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    res
}
