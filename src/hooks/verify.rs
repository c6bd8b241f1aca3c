//! Signature schemes of inbound webhooks, one verifier per scheme behind one trait.
//! Every check runs over the raw body bytes and compares in constant time (the MAC's
//! own `verify_slice`, or `subtle` for tokens). Failures say what was wrong, never
//! what was expected.

use base64::Engine;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

/// What a verifier sees of a request.
pub struct Request<'a> {
    /// Header lookup (case-insensitive).
    pub header: &'a dyn Fn(&str) -> Option<String>,
    /// The raw body.
    pub body: &'a [u8],
    /// Unix seconds now (injected, so published vectors with old timestamps can be checked).
    pub now: i64,
}

/// Why a delivery was refused (shown to the sender; never the expected value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Stable code: `signature_missing`, `signature_malformed`, `signature_invalid`,
    /// `timestamp_missing`, `timestamp_outside_window`, `token_invalid`.
    pub code: &'static str,
    /// What was wrong, in words.
    pub detail: String,
}

fn refuse(code: &'static str, detail: impl Into<String>) -> Refusal {
    Refusal {
        code,
        detail: detail.into(),
    }
}

/// A signature scheme.
pub trait Verifier: Send + Sync {
    /// Checks the request against any of the secrets (several may be active while one
    /// is rotated). `tolerance` is the accepted clock difference, in seconds.
    fn verify(&self, req: &Request, secrets: &[String], tolerance: i64) -> Result<(), Refusal>;

    /// What can be checked from the headers alone, before the body is read: the
    /// signature header is there and well formed, a timestamp is inside the window, the
    /// provider's delivery id is there, a token is right. A delivery that fails here
    /// costs the gateway no body. (`req.body` is empty.)
    fn precheck(&self, req: &Request, secrets: &[String], tolerance: i64) -> Result<(), Refusal>;

    /// Whether the signature covers a timestamp. Without one, a captured delivery can be
    /// sent again: the gateway then drops repeats of the same signed bytes.
    fn signs_a_timestamp(&self) -> bool;
}

/// Settings of the `hmac` and `token` schemes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemeConfig {
    /// `hmac`, `token`: the header carrying the signature or the token.
    pub header: Option<String>,
    /// `hmac`: `sha256` (default) or `sha512`.
    pub algorithm: Option<String>,
    /// `hmac`: `hex` (default) or `base64`.
    pub encoding: Option<String>,
    /// `hmac`, `token`: text before the value, e.g. `sha256=` or `Bearer `.
    pub prefix: Option<String>,
    /// `hmac`: a header holding a Unix timestamp, checked against the tolerance.
    pub timestamp_header: Option<String>,
    /// `hmac`: what is signed, with `{timestamp}` and `{body}` (default `{body}`).
    pub signed_payload: Option<String>,
}

/// The schemes, by name.
pub const SCHEMES: [&str; 9] = [
    "github",
    "stripe",
    "slack",
    "shopify",
    "standard_webhooks",
    "uipath",
    "hmac",
    "token",
    "none",
];

/// The verifier of a scheme with its settings (None for an unknown scheme).
pub fn verifier(scheme: &str, config: &SchemeConfig) -> Option<Box<dyn Verifier>> {
    Some(match scheme {
        "github" => Box::new(GitHub),
        "stripe" => Box::new(Stripe),
        "slack" => Box::new(Slack),
        "shopify" => Box::new(Shopify),
        "standard_webhooks" => Box::new(StandardWebhooks),
        "uipath" => Box::new(UiPath),
        "hmac" => Box::new(Generic(config.clone())),
        "token" => Box::new(Token(config.clone())),
        "none" => Box::new(Public),
        _ => return None,
    })
}

/// Problems with a scheme's settings, for a 422 at definition time.
pub fn check_config(scheme: &str, c: &SchemeConfig) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let mut bad = |f: &str, p: &str| problems.push((format!("config.{f}"), p.to_string()));
    match scheme {
        "hmac" => {
            if c.header.as_deref().is_none_or(str::is_empty) {
                bad("header", "required: the header carrying the signature");
            }
            if !matches!(c.algorithm.as_deref(), None | Some("sha256" | "sha512")) {
                bad("algorithm", "must be sha256 or sha512");
            }
            if !matches!(c.encoding.as_deref(), None | Some("hex" | "base64")) {
                bad("encoding", "must be hex or base64");
            }
            if let Some(p) = &c.signed_payload {
                if !p.contains("{body}") {
                    bad("signed_payload", "must contain {body}");
                }
                if p.contains("{timestamp}") && c.timestamp_header.is_none() {
                    bad("signed_payload", "uses {timestamp}: set timestamp_header");
                }
            }
        }
        "token" => {
            if c.header.as_deref().is_none_or(str::is_empty) {
                bad("header", "required: the header carrying the token");
            }
        }
        _ => {
            if *c != SchemeConfig::default() {
                bad("", "only the hmac and token schemes take settings");
            }
        }
    }
    problems
}

fn hmac_sha256(key: &[u8]) -> hmac::Hmac<sha2::Sha256> {
    hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length")
}

/// Checks `given` against HMAC-SHA256(secret, parts...) for any secret, in constant time.
fn any_sha256(secrets: &[String], parts: &[&[u8]], given: &[u8]) -> bool {
    secrets.iter().any(|s| {
        let mut mac = hmac_sha256(s.as_bytes());
        for p in parts {
            mac.update(p);
        }
        mac.verify_slice(given).is_ok()
    })
}

fn required(req: &Request, name: &str) -> Result<String, Refusal> {
    (req.header)(name)
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| refuse("signature_missing", format!("the {name} header is missing")))
}

/// The provider's delivery id, which it always sends: a delivery without one is not theirs.
fn delivery_id(req: &Request, name: &str) -> Result<(), Refusal> {
    (req.header)(name)
        .filter(|v| !v.trim().is_empty())
        .map(|_| ())
        .ok_or_else(|| {
            refuse(
                "delivery_id_missing",
                format!("the {name} header is missing (the provider sends it with every delivery)"),
            )
        })
}

fn timestamp(req: &Request, name: &str, tolerance: i64) -> Result<i64, Refusal> {
    let raw = (req.header)(name)
        .ok_or_else(|| refuse("timestamp_missing", format!("the {name} header is missing")))?;
    let ts: i64 = raw.trim().parse().map_err(|_| {
        refuse(
            "timestamp_missing",
            format!("{name} is not a Unix timestamp"),
        )
    })?;
    if (req.now - ts).abs() > tolerance {
        return Err(refuse(
            "timestamp_outside_window",
            format!(
                "{name} is outside the {tolerance}-second window (check the sender's clock, or a replay)"
            ),
        ));
    }
    Ok(ts)
}

fn hex_value(text: &str, what: &str) -> Result<Vec<u8>, Refusal> {
    hex::decode(text.trim())
        .map_err(|_| refuse("signature_malformed", format!("{what} is not hexadecimal")))
}

fn base64_value(text: &str, what: &str) -> Result<Vec<u8>, Refusal> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| refuse("signature_malformed", format!("{what} is not Base64")))
}

fn mismatch(what: &str) -> Refusal {
    refuse(
        "signature_invalid",
        format!("{what} does not match the body (wrong secret, or the body was changed)"),
    )
}

/// GitHub: `X-Hub-Signature-256: sha256=<hex>` over the body.
struct GitHub;
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
struct Stripe;
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
struct Slack;
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
struct Shopify;
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
struct UiPath;
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
/// with the Base64 after `whsec_` (signed with the `standardwebhooks` crate).
struct StandardWebhooks;
impl Verifier for StandardWebhooks {
    fn precheck(&self, req: &Request, _: &[String], tolerance: i64) -> Result<(), Refusal> {
        required(req, "webhook-id")?;
        required(req, "webhook-signature")?;
        timestamp(req, "webhook-timestamp", tolerance).map(|_| ())
    }
    fn signs_a_timestamp(&self) -> bool {
        true
    }
    fn verify(&self, req: &Request, secrets: &[String], tolerance: i64) -> Result<(), Refusal> {
        let id = required(req, "webhook-id")?;
        let sigs = required(req, "webhook-signature")?;
        let ts = timestamp(req, "webhook-timestamp", tolerance)?;
        let given: Vec<Vec<u8>> = sigs
            .split(' ')
            .filter_map(|s| s.split_once(','))
            .filter(|(v, _)| *v == "v1")
            .filter_map(|(_, s)| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .collect();
        if given.is_empty() {
            return Err(refuse(
                "signature_malformed",
                "webhook-signature has no v1,<base64> entry",
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
        Err(mismatch("webhook-signature"))
    }
}

/// Any HMAC: configurable header, algorithm, encoding, prefix and timestamp.
struct Generic(SchemeConfig);
impl Verifier for Generic {
    fn precheck(&self, req: &Request, _: &[String], tolerance: i64) -> Result<(), Refusal> {
        required(req, self.0.header.as_deref().unwrap_or("X-Signature"))?;
        match &self.0.timestamp_header {
            Some(th) => timestamp(req, th, tolerance).map(|_| ()),
            None => Ok(()),
        }
    }
    fn signs_a_timestamp(&self) -> bool {
        self.0.timestamp_header.is_some()
            && self
                .0
                .signed_payload
                .as_deref()
                .is_some_and(|p| p.contains("{timestamp}"))
    }
    fn verify(&self, req: &Request, secrets: &[String], tolerance: i64) -> Result<(), Refusal> {
        let c = &self.0;
        let name = c.header.as_deref().unwrap_or("X-Signature");
        let h = required(req, name)?;
        let value = match c.prefix.as_deref() {
            Some(p) => h.strip_prefix(p).ok_or_else(|| {
                refuse("signature_malformed", format!("{name} must start with {p}"))
            })?,
            None => h.as_str(),
        };
        let given = match c.encoding.as_deref() {
            Some("base64") => base64_value(value, name)?,
            _ => hex_value(value, name)?,
        };
        let ts = match &c.timestamp_header {
            Some(th) => Some(timestamp(req, th, tolerance)?),
            None => None,
        };
        let template = c.signed_payload.as_deref().unwrap_or("{body}");
        let (before, after) = template.split_once("{body}").unwrap_or((template, ""));
        let fill = |s: &str| {
            s.replace(
                "{timestamp}",
                &ts.map(|t| t.to_string()).unwrap_or_default(),
            )
        };
        let (before, after) = (fill(before), fill(after));
        let ok = secrets.iter().any(|s| {
            let parts: [&[u8]; 3] = [before.as_bytes(), req.body, after.as_bytes()];
            match c.algorithm.as_deref() {
                Some("sha512") => {
                    let mut mac = hmac::Hmac::<sha2::Sha512>::new_from_slice(s.as_bytes())
                        .expect("HMAC takes any key length");
                    parts.iter().for_each(|p| mac.update(p));
                    mac.verify_slice(&given).is_ok()
                }
                _ => {
                    let mut mac = hmac_sha256(s.as_bytes());
                    parts.iter().for_each(|p| mac.update(p));
                    mac.verify_slice(&given).is_ok()
                }
            }
        });
        ok.then_some(()).ok_or_else(|| mismatch(name))
    }
}

/// A shared secret in a named header.
struct Token(SchemeConfig);
impl Verifier for Token {
    fn precheck(&self, req: &Request, secrets: &[String], tolerance: i64) -> Result<(), Refusal> {
        self.verify(req, secrets, tolerance)
    }
    /// A token signs nothing; repeats of a body are not dropped (anyone holding the
    /// token can send any body anyway).
    fn signs_a_timestamp(&self) -> bool {
        true
    }
    fn verify(&self, req: &Request, secrets: &[String], _: i64) -> Result<(), Refusal> {
        let name = self.0.header.as_deref().unwrap_or("X-Webhook-Token");
        let h = required(req, name)?;
        let value = match self.0.prefix.as_deref() {
            Some(p) => h.strip_prefix(p).unwrap_or(""),
            None => h.as_str(),
        };
        // Compare every secret (no early exit that would tell which one was close).
        let mut ok = subtle::Choice::from(0);
        for s in secrets {
            ok |= value.as_bytes().ct_eq(s.as_bytes());
        }
        bool::from(ok).then_some(()).ok_or_else(|| {
            refuse(
                "token_invalid",
                format!("{name} does not hold a valid token"),
            )
        })
    }
}

/// No verification (only for webhooks marked public).
struct Public;
impl Verifier for Public {
    fn precheck(&self, _: &Request, _: &[String], _: i64) -> Result<(), Refusal> {
        Ok(())
    }
    fn signs_a_timestamp(&self) -> bool {
        true
    }
    fn verify(&self, _: &Request, _: &[String], _: i64) -> Result<(), Refusal> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
