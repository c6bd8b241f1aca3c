//! API keys: what a scope may be, and a key declared in the config file (by the hash of
//! the key, or a file holding it, so the file never carries a usable key in plain text
//! unless the operator chooses to).

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sha2::Digest;

use crate::domain::problem::FieldProblem;
use crate::domain::problem::valid_name;

/// Why `s` is not a scope, if it is not.
pub fn scope_problem(s: &str) -> Option<String> {
    if matches!(s, "run:*" | "jobs:read" | "admin") {
        return None;
    }
    if let Some(process) = s.strip_prefix("run:") {
        return (!valid_name(process)).then(|| {
            format!("`{s}`: after `run:` comes a process name (letters, digits, `-`, `_`) or `*`")
        });
    }
    Some(if s == "*" || valid_name(s) {
        let process = if s == "*" { "*" } else { s };
        format!("`{s}` is not a scope; to let the key start processes, write `run:{process}`")
    } else {
        format!("`{s}` is not a scope: use `run:<process>`, `run:*`, `jobs:read` or `admin`")
    })
}

/// An API key declared in the config file (`[[api_keys]]`): its name and scopes, and the
/// key as the SHA-256 of it (hex) or as a file that holds it (a mounted secret).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyDeclaration {
    pub name: String,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// SHA-256 of the key, in hex (`printf %s "$KEY" | sha256sum`).
    #[serde(default)]
    pub key_sha256: Option<String>,
    /// A file holding the key (its trailing newline is ignored).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// A declared key, checked: its hash, and the prefix shown in lists.
#[derive(Debug, Clone)]
pub struct DeclaredKey {
    pub name: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub hash: Vec<u8>,
    pub prefix: String,
}

impl ApiKeyDeclaration {
    /// Checks the declaration and reads the key file, naming each problem.
    pub fn resolve(self) -> Result<DeclaredKey, Vec<FieldProblem>> {
        let mut problems = Vec::new();
        let mut bad = |field: &str, problem: String| {
            problems.push(FieldProblem {
                field: field.into(),
                problem,
            })
        };
        if self.name.trim().is_empty() || self.name.len() > 200 {
            bad("name", "required, at most 200 characters".into());
        }
        if self.scopes.is_empty() {
            bad("scopes", "give at least one".into());
        }
        for p in self.scopes.iter().filter_map(|s| scope_problem(s)) {
            bad("scopes", p);
        }
        let key = match (&self.key_sha256, &self.key_file) {
            (Some(hex_hash), None) => match hex::decode(hex_hash.trim()) {
                Ok(h) if h.len() == 32 => Some((h, format!("sha256:{}", &hex_hash.trim()[..8]))),
                _ => {
                    bad(
                        "key_sha256",
                        "must be 64 hex digits (the SHA-256 of the key)".into(),
                    );
                    None
                }
            },
            (None, Some(path)) => match std::fs::read_to_string(path) {
                Ok(text) => {
                    let key = text.trim_end_matches(['\n', '\r']);
                    if key.len() < 16 {
                        bad(
                            "key_file",
                            format!("{}: a key needs 16 or more characters", path.display()),
                        );
                        None
                    } else {
                        Some((
                            sha2::Sha256::digest(key.as_bytes()).to_vec(),
                            key.chars().take(12).collect(),
                        ))
                    }
                }
                Err(e) => {
                    bad("key_file", format!("cannot read {}: {e}", path.display()));
                    None
                }
            },
            _ => {
                bad(
                    "key_sha256",
                    "give key_sha256 or key_file (one of them)".into(),
                );
                None
            }
        };
        match key {
            Some((hash, prefix)) if problems.is_empty() => Ok(DeclaredKey {
                name: self.name.trim().to_string(),
                scopes: self.scopes,
                expires_at: self.expires_at,
                hash,
                prefix,
            }),
            _ => Err(problems),
        }
    }
}
