//! OpenTelemetry: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, one `/run` is exported as one
//! trace (the caller's `traceparent` -> the gateway's request -> its Orchestrator call),
//! and Orchestrator, and the job's callback, receive the trace context.

use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::setup::{eventually, provision};
use crate::helpers::{ADMIN_TOKEN, GatewayProcess};

/// Every span the collector stand-in received (OTLP/HTTP JSON).
async fn spans(collector: &MockServer) -> Vec<Value> {
    let mut out = Vec::new();
    for req in collector.received_requests().await.unwrap_or_default() {
        let Ok(doc) = serde_json::from_slice::<Value>(&req.body) else {
            continue;
        };
        for rs in doc["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let mut s = s.clone();
                    s["service"] = rs["resource"]["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|a| a["key"] == "service.name")
                        .map(|a| a["value"]["stringValue"].clone())
                        .unwrap_or_default();
                    out.push(s);
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn one_run_is_one_trace_from_the_caller_through_the_gateway_to_orchestrator() {
    let collector = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&collector)
        .await;
    let sim = crate::helpers::sim::spawn_sim(|_| {}).await;
    let (_, db) = crate::helpers::db::server().fresh_database().await;
    let keys = uipath_gateway::crypto::KeyRing::generate_spec("otel");
    let gw = GatewayProcess::serve_with(
        &[
            ("GATEWAY_PORT", "0".into()),
            ("DATABASE_URL", db.expose_secret().to_string()),
            ("GATEWAY_ENCRYPTION_KEYS", keys.expose_secret().to_string()),
            ("GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN.into()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.uri()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".into()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
            ("OTEL_SERVICE_NAME", "gateway-under-test".into()),
            ("GATEWAY_ALLOW_PRIVATE_CALLBACKS", "true".into()),
            ("GATEWAY_TRACKING__POLL_EVERY_SECS", "1".into()),
            ("GATEWAY_CALLBACKS__POLL_INTERVAL_MS", "200".into()),
        ],
        None,
    )
    .await;
    let http = uipath_gateway::orchestrator::http::builder()
        .build()
        .unwrap();
    let key = provision(&http, &gw.url(""), &sim, "client_credentials").await;

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&receiver)
        .await;
    let res = http
        .post(gw.url(&format!(
            "/run/Invoices?callback_url={}/done",
            receiver.uri()
        )))
        .bearer_auth(&key)
        .header("traceparent", format!("00-{trace}-{caller_span}-01"))
        .json(&json!({"in_Vendor": "ACME", "in_Amount": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);

    eventually(
        "the run's spans at the collector",
        Duration::from_secs(20),
        || async {
            spans(&collector)
                .await
                .iter()
                .any(|s| s["traceId"] == trace && s["name"] == "orchestrator_call")
        },
    )
    .await;
    let all = spans(&collector).await;
    let mine: Vec<&Value> = all.iter().filter(|s| s["traceId"] == trace).collect();
    let by_id = |id: &Value| mine.iter().find(|s| &s["spanId"] == id).copied();
    let server = mine
        .iter()
        .find(|s| s["name"] == "POST /run/{process}")
        .unwrap_or_else(|| panic!("no request span: {mine:#?}"));
    assert_eq!(
        server["parentSpanId"], caller_span,
        "the caller's span is its parent"
    );
    assert_eq!(server["service"], "gateway-under-test");
    // The Orchestrator call descends from the request.
    let call = mine
        .iter()
        .find(|s| s["name"] == "orchestrator_call")
        .unwrap();
    let mut at = *call;
    while at["spanId"] != server["spanId"] {
        at =
            by_id(&at["parentSpanId"]).unwrap_or_else(|| panic!("the call's chain breaks at {at}"));
    }
    // Orchestrator was told: the StartJobs call carries this trace, its parent the call.
    let starts = sim.calls("StartJobs").await;
    let header = starts[0]["headers"]["traceparent"]
        .as_str()
        .unwrap_or_default();
    assert!(
        header.starts_with(&format!("00-{trace}-")),
        "StartJobs traceparent: {header}"
    );
    assert!(
        header.contains(call["spanId"].as_str().unwrap()),
        "{header}"
    );
    // The callback, sent by a worker when the job ended, carries the same trace on.
    eventually("the callback", Duration::from_secs(30), || async {
        !receiver.received_requests().await.unwrap().is_empty()
    })
    .await;
    let callback = &receiver.received_requests().await.unwrap()[0];
    let header = callback
        .headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        header.starts_with(&format!("00-{trace}-")),
        "the callback's traceparent: {header}"
    );
    gw.signal(nix::sys::signal::Signal::SIGTERM).await;
}
