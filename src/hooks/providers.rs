//! The signature schemes of the providers we know: GitHub, Stripe, Slack, Shopify, UiPath
//! Orchestrator and Standard Webhooks.

use base64::Engine;
use hmac::Mac;

use super::verify::*;

/// GitHub: `X-Hub-Signature-256: sha256=<hex>` over the body.
pub(super) struct GitHub;

impl GitHub {
    fn signature(req: &Request) -> Result<Vec<u8>, Refusal> {
        let h = required(req, "X-Hub-Signature-256")?;
        let sig = h.strip_prefix("sha256=").ok_or_else(|| {
            refuse(
                "signature_malformed",
                "X-Hub-Signature-256 must start with sha256=",
            )
        })?;
        hex_value(sig, "X-Hub-Signature-256")
    }
}

impl Verifier for GitHub {
    fn precheck(&self, req: &Request, _: &[String], _: i64) -> Result<(), Refusal> {
        Self::signature(req)?;
        delivery_id(req, "X-GitHub-Delivery")
    }
    fn signs_a_timestamp(&self) -> bool {
        false
    }
    fn verify(&self, req: &Request, secrets: &[String], _: i64) -> Result<(), Refusal> {
        let given = Self::signature(req)?;
        any_sha256(secrets, &[req.body], &given)
            .then_some(())
            .ok_or_else(|| mismatch("X-Hub-Signature-256"))
    }
}

/// Stripe: `Stripe-Signature: t=<ts>,v1=<hex>[,v1=...]` over `{t}.{body}`.
pub(super) struct Stripe;

impl Stripe {
    /// The `t=` value (as sent) and the `v1=` signatures, once the window is checked.
    fn header(req: &Request, tolerance: i64) -> Result<(String, Vec<String>), Refusal> {
        let h = required(req, "Stripe-Signature")?;
        let mut t = None;
        let mut v1 = Vec::new();
        for part in h.split(',') {
            match part.trim().split_once('=') {
                Some(("t", v)) => t = Some(v.to_string()),
                Some(("v1", v)) => v1.push(v.to_string()),
                _ => {}
            }
        }
        let t =
            t.ok_or_else(|| refuse("timestamp_missing", "Stripe-Signature has no t= timestamp"))?;
        let ts: i64 = t
            .parse()
            .map_err(|_| refuse("timestamp_missing", "Stripe-Signature's t= is not a number"))?;
        if v1.is_empty() {
            return Err(refuse(
                "signature_missing",
                "Stripe-Signature has no v1= signature",
            ));
        }
        if (req.now - ts).abs() > tolerance {
            return Err(refuse(
                "timestamp_outside_window",
                format!("Stripe-Signature's t= is outside the {tolerance}-second window"),
            ));
        }
        Ok((t, v1))
    }
}

impl Verifier for Stripe {
    fn precheck(&self, req: &Request, _: &[String], tolerance: i64) -> Result<(), Refusal> {
        Self::header(req, tolerance).map(|_| ())
    }
    fn signs_a_timestamp(&self) -> bool {
        true
    }
    fn verify(&self, req: &Request, secrets: &[String], tolerance: i64) -> Result<(), Refusal> {
        let (t, v1) = Self::header(req, tolerance)?;
        let prefix = format!("{t}.");
        for sig in &v1 {
            let Ok(given) = hex::decode(sig) else {
                continue;
            };
            if any_sha256(secrets, &[prefix.as_bytes(), req.body], &given) {
                return Ok(());
            }
        }
        Err(mismatch("Stripe-Signature"))
    }
}

/// Slack: `X-Slack-Signature: v0=<hex>` over `v0:{ts}:{body}`, with
/// `X-Slack-Request-Timestamp` inside the window.
pub(super) struct Slack;

impl Slack {
    fn header(req: &Request, tolerance: i64) -> Result<(i64, Vec<u8>), Refusal> {
        let h = required(req, "X-Slack-Signature")?;
        let ts = timestamp(req, "X-Slack-Request-Timestamp", tolerance)?;
        let sig = h.strip_prefix("v0=").ok_or_else(|| {
            refuse(
                "signature_malformed",
                "X-Slack-Signature must start with v0=",
            )
        })?;
        Ok((ts, hex_value(sig, "X-Slack-Signature")?))
    }
}

impl Verifier for Slack {
    fn precheck(&self, req: &Request, _: &[String], tolerance: i64) -> Result<(), Refusal> {
        Self::header(req, tolerance).map(|_| ())
    }
    fn signs_a_timestamp(&self) -> bool {
        true
    }
    fn verify(&self, req: &Request, secrets: &[String], tolerance: i64) -> Result<(), Refusal> {
        let (ts, given) = Self::header(req, tolerance)?;
        let base = format!("v0:{ts}:");
        any_sha256(secrets, &[base.as_bytes(), req.body], &given)
            .then_some(())
            .ok_or_else(|| mismatch("X-Slack-Signature"))
    }
}

/// Shopify: `X-Shopify-Hmac-SHA256`, Base64 over the body.
pub(super) struct Shopify;

impl Verifier for Shopify {
    fn precheck(&self, req: &Request, _: &[String], _: i64) -> Result<(), Refusal> {
        base64_value(
            &required(req, "X-Shopify-Hmac-SHA256")?,
            "X-Shopify-Hmac-SHA256",
        )?;
        delivery_id(req, "X-Shopify-Webhook-Id")
    }
    fn signs_a_timestamp(&self) -> bool {
        false
    }
    fn verify(&self, req: &Request, secrets: &[String], _: i64) -> Result<(), Refusal> {
        let h = required(req, "X-Shopify-Hmac-SHA256")?;
        let given = base64_value(&h, "X-Shopify-Hmac-SHA256")?;
        any_sha256(secrets, &[req.body], &given)
            .then_some(())
            .ok_or_else(|| mismatch("X-Shopify-Hmac-SHA256"))
    }
}

/// UiPath Orchestrator: `X-UiPath-Signature`, Base64 over the body.
pub(super) struct UiPath;

impl Verifier for UiPath {
    fn precheck(&self, req: &Request, _: &[String], _: i64) -> Result<(), Refusal> {
        base64_value(&required(req, "X-UiPath-Signature")?, "X-UiPath-Signature").map(|_| ())
    }
    fn signs_a_timestamp(&self) -> bool {
        false
    }
    fn verify(&self, req: &Request, secrets: &[String], _: i64) -> Result<(), Refusal> {
        let h = required(req, "X-UiPath-Signature")?;
        let given = base64_value(&h, "X-UiPath-Signature")?;
        any_sha256(secrets, &[req.body], &given)
            .then_some(())
            .ok_or_else(|| mismatch("X-UiPath-Signature"))
    }
}

/// Standard Webhooks: `webhook-signature: v1,<base64> ...` over `{id}.{ts}.{body}`, keyed
/// with the Base64 after `whsec_` (callbacks are signed the same way, `callbacks::sign`). Svix sends
/// the same scheme as `svix-id`, `svix-timestamp` and `svix-signature`.
pub(super) struct StandardWebhooks;

/// The id, timestamp and signature headers a sender uses: Svix's when it sends `svix-id`
/// and no `webhook-id`, else the standard's (named in any refusal).
fn standard_headers(req: &Request) -> [&'static str; 3] {
    if (req.header)("webhook-id").is_none() && (req.header)("svix-id").is_some() {
        ["svix-id", "svix-timestamp", "svix-signature"]
    } else {
        ["webhook-id", "webhook-timestamp", "webhook-signature"]
    }
}

impl Verifier for StandardWebhooks {
    fn precheck(&self, req: &Request, _: &[String], tolerance: i64) -> Result<(), Refusal> {
        let [id, ts, sig] = standard_headers(req);
        required(req, id)?;
        required(req, sig)?;
        timestamp(req, ts, tolerance).map(|_| ())
    }
    fn signs_a_timestamp(&self) -> bool {
        true
    }
    fn verify(&self, req: &Request, secrets: &[String], tolerance: i64) -> Result<(), Refusal> {
        let [id_header, ts_header, sig_header] = standard_headers(req);
        let id = required(req, id_header)?;
        let sigs = required(req, sig_header)?;
        let ts = timestamp(req, ts_header, tolerance)?;
        let given: Vec<Vec<u8>> = sigs
            .split(' ')
            .filter_map(|s| s.split_once(','))
            .filter(|(v, _)| *v == "v1")
            .filter_map(|(_, s)| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .collect();
        if given.is_empty() {
            return Err(refuse(
                "signature_malformed",
                format!("{sig_header} has no v1,<base64> entry"),
            ));
        }
        let prefix = format!("{id}.{ts}.");
        for secret in secrets {
            let key = secret.strip_prefix("whsec_").unwrap_or(secret);
            let Ok(key) = base64::engine::general_purpose::STANDARD.decode(key) else {
                continue;
            };
            for g in &given {
                let mut mac = hmac_sha256(&key);
                mac.update(prefix.as_bytes());
                mac.update(req.body);
                if mac.verify_slice(g).is_ok() {
                    return Ok(());
                }
            }
        }
        Err(mismatch(sig_header))
    }
}
