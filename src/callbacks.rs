//! Callbacks: when a job ends, its job is POSTed to the caller's URL as a Standard
//! Webhooks message (`webhook-id`, `webhook-timestamp`, `webhook-signature`), signed
//! with the process's `whsec_` secret. Targets on loopback, private, link-local and
//! other non-public addresses are refused unless `allow_private_callbacks` is set, both
//! when the URL is given and, through the resolver, when it is called.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use base64::Engine;
use rand::Rng;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use uuid::Uuid;

use crate::config::CallbackSettings;

/// The prefix of Standard Webhooks secrets.
pub const SECRET_PREFIX: &str = "whsec_";

/// A new secret: `whsec_` and 32 random bytes in Base64.
pub fn generate_secret() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// Whether a secret is `whsec_` and Base64 of 24 to 64 bytes.
pub fn valid_secret(secret: &str) -> bool {
    secret
        .strip_prefix(SECRET_PREFIX)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .is_some_and(|k| (24..=64).contains(&k.len()))
}

/// The associated data binding a sealed callback secret to its process.
pub fn aad(process_id: Uuid) -> String {
    format!("processes.callback_secret:{process_id}")
}

/// The `webhook-signature` value for a message.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> anyhow::Result<String> {
    let hook = standardwebhooks::Webhook::new(secret)
        .map_err(|e| anyhow::anyhow!("the callback secret is unusable: {e}"))?;
    hook.sign(msg_id, timestamp, body)
        .map_err(|e| anyhow::anyhow!("signing the callback: {e}"))
}

/// Whether an address is on the public internet (not loopback, private, link-local,
/// shared, documentation, multicast, unspecified or otherwise reserved).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site-local fec0::/10
                || (first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
                || first == 0x0064 // NAT64 64:ff9b::/96 reaches v4 space
                || v6 == Ipv6Addr::from(1u128))
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (64..128).contains(&o[1])) // shared 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF 192.0.0/24
        || (o[0] == 198 && (18..20).contains(&o[1])) // benchmarking
        || o[0] >= 240)
}

/// Checks a callback URL when it is given: absolute http(s), with a host that is not a
/// private address or `localhost` (unless private targets are allowed).
pub fn check_target(url: &str, allow_private: bool) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be an http or https URL".into());
    }
    let host = match parsed.host() {
        Some(h) => h,
        None => return Err("has no host".into()),
    };
    if url.len() > 2000 {
        return Err("is longer than 2000 characters".into());
    }
    if allow_private {
        return Ok(parsed);
    }
    let private = match host {
        url::Host::Ipv4(ip) => !is_public(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => !is_public(IpAddr::V6(ip)),
        url::Host::Domain(d) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost"
                || d.ends_with(".localhost")
                || d.ends_with(".local")
                || !d.contains('.')
        }
    };
    if private {
        return Err(
            "points at a loopback, private or link-local address; set GATEWAY_ALLOW_PRIVATE_CALLBACKS to allow it"
                .into(),
        );
    }
    Ok(parsed)
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
    let mut b = crate::orchestrator::client::builder()
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
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn targets_are_checked() {
        assert!(check_target("https://example.com/hook", false).is_ok());
        for bad in [
            "ftp://example.com/",
            "http://localhost:8080/",
            "http://127.0.0.1/",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data",
            "http://intranet/",
            "not a url",
        ] {
            assert!(check_target(bad, false).is_err(), "{bad}");
        }
        assert!(check_target("http://127.0.0.1:9/", true).is_ok());
    }

    #[test]
    fn secrets_are_whsec_base64() {
        let s = generate_secret();
        assert!(valid_secret(&s));
        assert!(!valid_secret("whsec_short"));
        assert!(!valid_secret("secret"));
    }

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
}
