//! Inbound webhook definitions (`/webhooks`, admin): what `/hooks/{slug}` accepts and
//! what it starts.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::problem::FieldProblem;
use crate::hooks::{expr, verify};

/// The answer sent to the webhook's sender.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HookResponse {
    /// Status when a job was started: 200, 201, 202 (default) or 204.
    pub status: Option<u16>,
    /// A fixed JSON body instead of the default `{status, job_id, delivery_id}`.
    #[schema(value_type = Option<Object>)]
    pub body: Option<serde_json::Value>,
}

/// An inbound webhook as operators send it.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "slug": "github-prs", "process": "Invoices", "scheme": "github", "secrets": ["It's a Secret to Everybody"],
    "filter": "headers.\"x-github-event\" == 'pull_request' && body.action == 'opened'",
    "mapping": {"in_Vendor": "body.repository.full_name", "in_Amount": "body.pull_request.number"}
}))]
pub struct HookInput {
    /// The `{slug}` of `/hooks/{slug}`: letters, digits, `-`, `_`.
    pub slug: Option<String>,
    /// The process to start (its name), or the queue mapping to add an item to: then the
    /// mapping builds the item's content.
    pub process: Option<String>,
    /// `github`, `stripe`, `slack`, `shopify`, `standard_webhooks`, `uipath`, `hmac`,
    /// `token`, or `none` (only with `public: true`).
    pub scheme: Option<String>,
    /// Settings of the `hmac` and `token` schemes.
    pub config: Option<verify::SchemeConfig>,
    /// Signing secrets or tokens; any of them is accepted, so a new one can be added
    /// before the old one is removed. Write-only; left out on replace, they are kept.
    #[schema(value_type = Option<Vec<String>>, write_only)]
    pub secrets: Option<Vec<SecretString>>,
    /// Accept unsigned deliveries (scheme `none`).
    pub public: Option<bool>,
    /// Deliveries to a disabled webhook get 404.
    pub enabled: Option<bool>,
    /// Accepted clock difference for timestamped schemes, in seconds (default 300).
    pub tolerance_seconds: Option<i32>,
    /// Largest delivery body accepted, in bytes (default `hooks.max_body_bytes`, 256 KiB;
    /// at most `body_limit_bytes`). A larger one is refused with 413 before it is read.
    pub max_body_bytes: Option<i32>,
    /// JMESPath for the delivery id used to drop repeats, over `{headers, body, query}`.
    /// Defaults by scheme: GitHub `X-GitHub-Delivery`, Stripe `body.id`, Slack
    /// `body.event_id`, Shopify `X-Shopify-Webhook-Id`, Standard Webhooks `webhook-id` (or Svix's `svix-id`),
    /// UiPath `body.EventId`. An empty string turns deduplication off.
    pub dedup: Option<String>,
    /// JMESPath: start a job only when it is true, e.g. `body.action == 'opened'`.
    pub filter: Option<String>,
    /// Input arguments: argument name → JMESPath, e.g. `{"in_PrNumber": "body.pull_request.number"}`.
    /// Merged over the process's default input. Without a mapping, a JSON object body is
    /// passed as the arguments.
    pub mapping: Option<BTreeMap<String, String>>,
    /// The answer when a job is started.
    pub response: Option<HookResponse>,
}

/// A validated webhook definition.
#[derive(Debug, Clone)]
pub struct NewHook {
    pub slug: String,
    pub process: String,
    pub scheme: String,
    pub config: verify::SchemeConfig,
    pub secrets: Option<Vec<String>>,
    pub public: bool,
    pub enabled: bool,
    pub tolerance_seconds: i32,
    pub max_body_bytes: Option<i32>,
    pub dedup: Option<String>,
    pub filter: Option<String>,
    pub mapping: Option<BTreeMap<String, String>>,
    pub response: HookResponse,
}

/// What is wrong with a mapping for a process whose arguments are `definitions`: a name
/// the process does not take, or a required argument neither mapped nor defaulted.
pub fn mapping_problems(
    mapping: &BTreeMap<String, String>,
    process: &str,
    definitions: &[crate::domain::arguments::ArgumentDefinition],
    defaults: &serde_json::Map<String, serde_json::Value>,
) -> Vec<FieldProblem> {
    let takes = || {
        definitions
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut problems: Vec<FieldProblem> = mapping
        .keys()
        .filter(|k| !definitions.iter().any(|d| &d.name == *k))
        .map(|k| FieldProblem {
            field: format!("mapping.{k}"),
            problem: format!(
                "process `{process}` takes no argument `{k}`; it takes: {}",
                if definitions.is_empty() {
                    "none".into()
                } else {
                    takes()
                }
            ),
        })
        .collect();
    let missing: Vec<&str> = definitions
        .iter()
        .filter(|d| {
            crate::domain::arguments::schema::must_give(d, defaults)
                && !mapping.contains_key(&d.name)
        })
        .map(|d| d.name.as_str())
        .collect();
    if !missing.is_empty() {
        problems.push(FieldProblem {
            field: "mapping".into(),
            problem: format!(
                "process `{process}` requires {} (no default in the workflow or the process); map {}",
                missing.join(", "),
                if missing.len() == 1 { "it" } else { "them" }
            ),
        });
    }
    problems
}

/// The dedup expression a scheme uses unless told otherwise.
pub fn default_dedup(scheme: &str) -> Option<&'static str> {
    match scheme {
        "github" => Some("headers.\"x-github-delivery\""),
        "stripe" => Some("body.id"),
        "slack" => Some("body.event_id"),
        "shopify" => Some("headers.\"x-shopify-webhook-id\""),
        "standard_webhooks" => Some("headers.\"webhook-id\" || headers.\"svix-id\""),
        "uipath" => Some("body.EventId"),
        _ => None,
    }
}

impl HookInput {
    /// Checks every field, naming each problem. `had_secrets` says whether the stored
    /// definition (on replace) already has secrets.
    pub fn validate(self, had_secrets: bool) -> Result<NewHook, Vec<FieldProblem>> {
        let mut problems = Vec::new();
        let mut bad = |f: &str, p: &str| {
            problems.push(FieldProblem {
                field: f.into(),
                problem: p.into(),
            })
        };
        let slug = self.slug.unwrap_or_default();
        if !crate::domain::problem::valid_name(&slug) {
            bad("slug", "required: 1-100 letters, digits, `-` or `_`");
        }
        let process = self.process.unwrap_or_default();
        if process.is_empty() {
            bad("process", "required: the name of a process");
        }
        let scheme = self.scheme.unwrap_or_default();
        let public = self.public.unwrap_or(false);
        if !verify::SCHEMES.contains(&scheme.as_str()) {
            bad(
                "scheme",
                &format!("required: one of {}", verify::SCHEMES.join(", ")),
            );
        } else if scheme == "none" && !public {
            bad(
                "scheme",
                "`none` accepts anyone's deliveries: set `public: true` to mean it",
            );
        }
        let config = self.config.unwrap_or_default();
        for (f, p) in verify::check_config(&scheme, &config) {
            bad(&f, &p);
        }
        let secrets: Option<Vec<String>> = self
            .secrets
            .map(|v| v.iter().map(|s| s.expose_secret().to_string()).collect());
        if let Some(list) = &secrets {
            if list.iter().any(|s| s.is_empty() || s.len() > 500) {
                bad("secrets", "each secret must be 1-500 characters");
            }
            if list.iter().any(|s| crate::domain::problem::has_control(s)) {
                bad("secrets", "secrets must not contain control characters");
            }
            if list.len() > 10 {
                bad("secrets", "at most 10 secrets at once");
            }
            if scheme == "standard_webhooks"
                && !list
                    .iter()
                    .all(|s| crate::domain::callback_target::valid_secret(s))
            {
                bad(
                    "secrets",
                    "Standard Webhooks secrets are `whsec_` and Base64",
                );
            }
        }
        let needs_secret = scheme != "none";
        if needs_secret && secrets.as_ref().is_none_or(Vec::is_empty) && !had_secrets {
            bad("secrets", "required: at least one secret for this scheme");
        }
        let tolerance_seconds = self.tolerance_seconds.unwrap_or(300);
        if !(1..=86_400).contains(&tolerance_seconds) {
            bad("tolerance_seconds", "must be between 1 and 86400");
        }
        if self.max_body_bytes.is_some_and(|n| n < 1) {
            bad("max_body_bytes", "must be at least 1 (bytes)");
        }
        let dedup = match self.dedup {
            Some(d) if d.trim().is_empty() => None,
            Some(d) => Some(d),
            None => default_dedup(&scheme).map(String::from),
        };
        if let Some(Err(e)) = dedup.as_deref().map(expr::check) {
            bad("dedup", &format!("not a valid JMESPath expression: {e}"));
        }
        if let Some(Err(e)) = self.filter.as_deref().map(expr::check) {
            bad("filter", &format!("not a valid JMESPath expression: {e}"));
        }
        if let Some(m) = &self.mapping {
            for (arg, e) in m {
                if arg.is_empty() {
                    bad("mapping", "argument names must not be empty");
                }
                if let Err(err) = expr::check(e) {
                    bad(
                        &format!("mapping.{arg}"),
                        &format!("not a valid JMESPath expression: {err}"),
                    );
                }
            }
        }
        let response = self.response.unwrap_or_default();
        if response
            .status
            .is_some_and(|s| !matches!(s, 200 | 201 | 202 | 204))
        {
            bad("response.status", "must be 200, 201, 202 or 204");
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(NewHook {
            slug,
            process,
            scheme,
            config,
            secrets,
            public,
            enabled: self.enabled.unwrap_or(true),
            tolerance_seconds,
            max_body_bytes: self.max_body_bytes,
            dedup,
            filter: self.filter,
            mapping: self.mapping,
            response,
        })
    }
}
