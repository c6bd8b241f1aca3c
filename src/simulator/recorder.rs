//! The middleware every simulated call passes: it records the call (secrets masked) for
//! `/_sim/calls`, and injects the faults a test asked for.

use std::collections::BTreeMap;

use actix_web::Error;
use actix_web::body::BoxBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes};
use serde_json::Value;

use super::common::{Sim, or_error};
use super::state::CallRecord;

const SECRET_KEYS: [&str; 8] = [
    "password",
    "client_secret",
    "refresh_token",
    "code",
    "code_verifier",
    "secret",
    "access_token",
    "id_token",
];
fn mask_body(bytes: &[u8], form: bool) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    if form && let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(bytes) {
        let map = pairs
            .into_iter()
            .map(|(k, v)| {
                let masked = SECRET_KEYS.contains(&k.to_ascii_lowercase().as_str());
                (k, Value::String(if masked { "***".into() } else { v }))
            })
            .collect();
        return Value::Object(map);
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let masked = SECRET_KEYS.contains(&k.to_ascii_lowercase().as_str());
                    (
                        k,
                        if masked {
                            Value::String("***".into())
                        } else {
                            v
                        },
                    )
                })
                .collect(),
        ),
        Ok(v) => v,
        Err(_) => Value::String(String::from_utf8_lossy(bytes).into_owned()),
    }
}

fn masked_headers(req: &ServiceRequest) -> BTreeMap<String, String> {
    req.headers()
        .iter()
        .map(|(k, v)| {
            let name = k.as_str().to_string();
            let value = match name.as_str() {
                "authorization" => {
                    let v = v.to_str().unwrap_or("");
                    format!("{} ***", v.split(' ').next().unwrap_or(""))
                }
                "cookie" => "***".into(),
                _ => String::from_utf8_lossy(v.as_bytes()).into_owned(),
            };
            (name, value)
        })
        .collect()
}

/// Middleware: records each call (with secrets masked) and applies injected faults.
/// Control calls under `/__sim/` are neither recorded nor faulted.
pub async fn record_and_inject(
    mut req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(sim) = req.app_data::<web::Data<Sim>>().cloned() else {
        return next.call(req).await;
    };
    if req.path().starts_with("/__sim") {
        return next.call(req).await;
    }
    let body = req.extract::<Bytes>().await.unwrap_or_default();
    req.set_payload(Payload::from(body.clone()));
    let form = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let mut record = CallRecord {
        seq: 0,
        at: chrono::Utc::now(),
        method: req.method().to_string(),
        path: req.path().to_string(),
        query: req.query_string().to_string(),
        headers: masked_headers(&req),
        body: mask_body(&body, form),
        status: 0,
    };
    let (latency, error, hang) = sim.lock().take_fault(req.path());
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(hang) = hang {
        tokio::time::sleep(hang).await;
    }
    let res = match error {
        Some(fault) => {
            let mut res = or_error(
                fault.status,
                0,
                "Injected fault: the service is unavailable.",
            );
            if let Some(secs) = fault.retry_after {
                res.headers_mut().insert(
                    actix_web::http::header::RETRY_AFTER,
                    actix_web::http::header::HeaderValue::from(secs),
                );
            }
            req.into_response(res)
        }
        None => next.call(req).await?,
    };
    record.status = res.status().as_u16();
    sim.lock().record_call(record);
    Ok(res)
}
