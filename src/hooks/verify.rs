//! Signature schemes of inbound webhooks, one verifier per scheme behind one trait.
//! Every check runs over the raw body bytes and compares in constant time (the MAC's
//! own `verify_slice`, or `subtle` for tokens). Failures say what was wrong, never
//! what was expected.

use base64::Engine;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
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

pub(super) fn refuse(code: &'static str, detail: impl Into<String>) -> Refusal {
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

pub(super) fn hmac_sha256(key: &[u8]) -> hmac::Hmac<sha2::Sha256> {
    hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length")
}

/// Checks `given` against HMAC-SHA256(secret, parts...) for any secret, in constant time.
pub(super) fn any_sha256(secrets: &[String], parts: &[&[u8]], given: &[u8]) -> bool {
    secrets.iter().any(|s| {
        let mut mac = hmac_sha256(s.as_bytes());
        for p in parts {
            mac.update(p);
        }
        mac.verify_slice(given).is_ok()
    })
}

pub(super) fn required(req: &Request, name: &str) -> Result<String, Refusal> {
    (req.header)(name)
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| refuse("signature_missing", format!("the {name} header is missing")))
}

/// The provider's delivery id, which it always sends: a delivery without one is not theirs.
pub(super) fn delivery_id(req: &Request, name: &str) -> Result<(), Refusal> {
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

pub(super) fn timestamp(req: &Request, name: &str, tolerance: i64) -> Result<i64, Refusal> {
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

pub(super) fn hex_value(text: &str, what: &str) -> Result<Vec<u8>, Refusal> {
    hex::decode(text.trim())
        .map_err(|_| refuse("signature_malformed", format!("{what} is not hexadecimal")))
}

pub(super) fn base64_value(text: &str, what: &str) -> Result<Vec<u8>, Refusal> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| refuse("signature_malformed", format!("{what} is not Base64")))
}

pub(super) fn mismatch(what: &str) -> Refusal {
    refuse(
        "signature_invalid",
        format!("{what} does not match the body (wrong secret, or the body was changed)"),
    )
}

#[cfg(test)]
mod tests;
