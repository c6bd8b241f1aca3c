//! Schemes a sender configures: any HMAC, a shared token, or none at all.

use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;

use super::verify::*;

/// Any HMAC: configurable header, algorithm, encoding, prefix and timestamp.
pub(super) struct Generic(pub(super) SchemeConfig);

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
pub(super) struct Token(pub(super) SchemeConfig);

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
pub(super) struct Public;

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
