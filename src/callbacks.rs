//! Callbacks: when a job ends, its job is POSTed to the caller's URL as a Standard
//! Webhooks message (`webhook-id`, `webhook-timestamp`, `webhook-signature`), signed
//! with the process's `whsec_` secret. Targets on loopback, private, link-local and
//! other non-public addresses are refused unless `allow_private_callbacks` is set, both
//! when the URL is given and, through the resolver, when it is called.

use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::domain::callback_target::is_public;
use serde::{Deserialize, Serialize};

/// How callbacks are delivered.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackSettings {
    /// Delay before each retry, in seconds; after the last one the callback is dead-lettered.
    pub retry_schedule_secs: Vec<u64>,
    /// Random spread of each delay, as a share of it (0 to 1).
    pub jitter: f64,
    /// Timeout of one delivery, in milliseconds.
    pub timeout_ms: u64,
    /// How often due deliveries are looked for, in milliseconds.
    pub poll_interval_ms: u64,
    /// Deliveries taken per pass.
    pub batch_size: i64,
}

/// The `webhook-signature` value for a message: `v1,` and the Base64 of HMAC-SHA256 over
/// `{msg_id}.{timestamp}.{body}`, keyed with the Base64-decoded secret after `whsec_`.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> anyhow::Result<String> {
    use base64::Engine;
    use hmac::{KeyInit, Mac};
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|e| anyhow::anyhow!("the callback secret is unusable: {e}"))?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key)
        .map_err(|e| anyhow::anyhow!("the callback secret is unusable: {e}"))?;
    mac.update(format!("{msg_id}.{timestamp}.").as_bytes());
    mac.update(body);
    Ok(format!("v1,{}", b64.encode(mac.finalize().into_bytes())))
}

/// Resolves names, keeping only public addresses (so DNS cannot point a callback inside).
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = all.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(format!(
                    "{host} resolves to no public address (private callbacks are not allowed)"
                )
                .into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// The client callbacks are sent with: no redirects, a timeout, and (unless private
/// targets are allowed) a resolver that drops non-public addresses.
pub fn http_client(settings: &CallbackSettings, allow_private: bool) -> reqwest::Client {
    let mut b = crate::orchestrator::http::builder()
        .timeout(Duration::from_millis(settings.timeout_ms))
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("uipath-gateway/", env!("CARGO_PKG_VERSION")));
    if !allow_private {
        b = b.dns_resolver(PublicOnly);
    }
    b.build().expect("the callback HTTP client builds")
}

/// The delay before retry number `attempt` (1 for the first retry), with jitter, or
/// None when the schedule has run out.
pub fn retry_delay(settings: &CallbackSettings, attempt: usize) -> Option<Duration> {
    let base = *settings.retry_schedule_secs.get(attempt.checked_sub(1)?)? as f64;
    let spread = if settings.jitter > 0.0 {
        rand::rng().random_range(-settings.jitter..=settings.jitter)
    } else {
        0.0
    };
    Some(Duration::from_secs_f64((base * (1.0 + spread)).max(0.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_runs_out() {
        let s = CallbackSettings {
            retry_schedule_secs: vec![5, 300],
            jitter: 0.2,
            timeout_ms: 1,
            poll_interval_ms: 1,
            batch_size: 1,
        };
        let first = retry_delay(&s, 1).unwrap().as_secs_f64();
        assert!((4.0..=6.0).contains(&first));
        assert!(retry_delay(&s, 2).is_some());
        assert!(retry_delay(&s, 3).is_none());
    }

    /// The Standard Webhooks specification's test vector (also Svix's).
    #[test]
    fn callbacks_are_signed_as_the_standard_webhooks_test_vector_says() {
        let signature = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(sign("whsec_not base64!", "m", 1, b"").is_err());
    }
}
