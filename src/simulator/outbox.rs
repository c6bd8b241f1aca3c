//! Outgoing webhooks: events sent to every webhook subscribed to their type (signed with
//! `X-UiPath-Signature`, never retried, a failure trips the webhook's breaker), and the
//! `ping` event.

use std::sync::Arc;

use base64::Engine;
use chrono::Utc;
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

use super::common::Sim;
use super::state::{random_token, ts};

/// Sends events (their type and body) to every webhook subscribed to that type, in the
/// background; dropped when a fault or a broken webhook says so.
pub fn deliver_payloads(sim: &Arc<Sim>, events: Vec<(&'static str, Value)>) {
    let mut sends = Vec::new();
    {
        let mut state = sim.lock();
        let now = state.now();
        let hooks: Vec<_> = state
            .webhooks
            .values()
            .filter(|w| w.enabled)
            .cloned()
            .collect();
        for (kind, payload) in &events {
            for hook in &hooks {
                let subscribed = hook.subscribe_to_all_events
                    || hook.events.iter().any(|e| {
                        e.get("EventType")
                            .and_then(Value::as_str)
                            .is_some_and(|t| t.eq_ignore_ascii_case(kind))
                    });
                if !subscribed {
                    continue;
                }
                let broken = state
                    .webhooks
                    .get(&hook.id)
                    .and_then(|w| w.broken_until)
                    .is_some_and(|t| t > now);
                let drop = if state.faults.drop_all_webhooks || broken {
                    true
                } else if state.faults.drop_webhooks > 0 {
                    state.faults.drop_webhooks -= 1;
                    true
                } else {
                    false
                };
                if drop {
                    state.counters.webhooks_dropped += 1;
                    continue;
                }
                state.counters.webhooks_sent += 1;
                let body = serde_json::to_vec(payload).expect("an event serializes");
                sends.push((hook.id, hook.url.clone(), hook.secret.clone(), body));
            }
        }
    }
    for (id, url, secret, body) in sends {
        send(sim, id, url, secret, body);
    }
}

/// The `ping` event (`PingEventDto`) that `Webhooks({id})/...Ping` sends, and answers.
pub fn ping_payload(hook: &super::state::Webhook, tenant_id: i64) -> Value {
    let now = ts(Utc::now());
    json!({
        "Type": "ping",
        "EventId": random_token("").chars().take(32).collect::<String>(),
        "EntityKey": hook.key,
        "Timestamp": now,
        "EventTime": now,
        "TenantId": tenant_id,
    })
}

/// Posts one signed webhook call in the background; a failure trips the webhook's breaker.
pub fn send(sim: &Arc<Sim>, id: i64, url: String, secret: Option<String>, body: Vec<u8>) {
    let sim = sim.clone();
    tokio::spawn(async move {
        let mut req = sim
            .http
            .post(&url)
            .header("content-type", "application/json");
        if let Some(secret) = secret {
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
                .expect("any key length");
            mac.update(&body);
            let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
            req = req.header("X-UiPath-Signature", sig);
        }
        let ok = req
            .body(body)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if !ok {
            // No retries: a failure trips the breaker, as in Orchestrator.
            let mut state = sim.lock();
            let until = state.now()
                + chrono::Duration::seconds(state.scenario.webhook_breaker_seconds as i64);
            if let Some(w) = state.webhooks.get_mut(&id) {
                w.broken_until = Some(until);
            }
        }
    });
}
