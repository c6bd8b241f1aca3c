//! `uipath-gateway connections|processes|queues|webhooks|api-keys ...`: the admin API of a
//! running gateway from a terminal. Lists print a readable table (or, with `--json`, the
//! API's JSON); `add` and `replace` send a JSON or TOML file (`-` reads stdin); errors
//! print the API's problem document in one line and exit 1.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::Value;

/// Where the admin API is, and its token (shared by every admin subcommand).
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The gateway's address.
    #[arg(
        long,
        env = "GATEWAY",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub gateway: String,
    /// The admin token (GATEWAY_ADMIN_TOKEN works too).
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub admin_token: Option<String>,
}

/// What to do with one kind of object.
#[derive(Debug, Clone, Subcommand)]
pub enum Action {
    /// List them (a table; `--json` for the API's answer).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one as JSON.
    Get { name: String },
    /// Create one from a JSON or TOML file (`-` reads stdin), as `POST` takes it.
    Add {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Replace one from a JSON or TOML file, as `PUT` takes it.
    Replace {
        name: String,
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Delete one.
    Remove { name: String },
    /// Test a connection (only `connections test` offers it: see [`ConnectionAction`]).
    #[command(skip)]
    Test { name: String },
}

/// What to do with connections: the common actions, and a test.
#[derive(Debug, Clone, Subcommand)]
pub enum ConnectionAction {
    #[command(flatten)]
    Each(Action),
    /// Test a connection: get a token and list folders.
    Test { name: String },
}

/// What to do with API keys: the API can list, create and revoke them, not show or replace
/// one (a key is shown once, when it is made).
#[derive(Debug, Clone, Subcommand)]
pub enum ApiKeyAction {
    /// List them (a table; `--json` for the API's answer).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Create one from a JSON or TOML file (`-` reads stdin), as `POST` takes it; the answer
    /// holds the key, shown this once.
    Add {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Revoke one.
    Remove { name: String },
}

impl From<ApiKeyAction> for Action {
    fn from(action: ApiKeyAction) -> Self {
        match action {
            ApiKeyAction::List { json } => Action::List { json },
            ApiKeyAction::Add { file } => Action::Add { file },
            ApiKeyAction::Remove { name } => Action::Remove { name },
        }
    }
}

impl From<ConnectionAction> for Action {
    fn from(action: ConnectionAction) -> Self {
        match action {
            ConnectionAction::Each(action) => action,
            ConnectionAction::Test { name } => Action::Test { name },
        }
    }
}

/// The kinds of object, their collection path and the columns of their table.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Connections,
    Processes,
    Queues,
    Webhooks,
    ApiKeys,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Connections => "/connections",
            Kind::Processes => "/processes",
            Kind::Queues => "/queue-mappings",
            Kind::Webhooks => "/webhooks",
            Kind::ApiKeys => "/api-keys",
        }
    }

    /// The field that names one in paths (`id` where the API takes an id).
    fn key(self) -> &'static str {
        match self {
            Kind::Connections | Kind::ApiKeys => "id",
            Kind::Webhooks => "slug",
            Kind::Processes | Kind::Queues => "name",
        }
    }

    fn columns(self) -> &'static [&'static str] {
        match self {
            Kind::Connections => &[
                "name",
                "kind",
                "flavour",
                "health",
                "token_expires_at",
                "id",
            ],
            Kind::Processes => &["name", "connection", "folder", "release", "unverified"],
            Kind::Queues => &["name", "connection", "folder", "queue", "unverified"],
            Kind::Webhooks => &["slug", "process", "scheme", "enabled", "path"],
            Kind::ApiKeys => &["name", "prefix", "scopes", "expires_at", "revoked_at", "id"],
        }
    }
}

/// Runs one admin subcommand; what it prints goes to `out`.
pub async fn run(
    kind: Kind,
    action: Action,
    target: Target,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let token = target
        .admin_token
        .or_else(|| std::env::var("GATEWAY_ADMIN_TOKEN").ok())
        .filter(|t| !t.is_empty())
        .context("no admin token: pass --admin-token or set ADMIN_TOKEN")?;
    let api = Api {
        http: crate::orchestrator::http::builder()
            .build()
            .context("building the HTTP client")?,
        base: target.gateway.trim_end_matches('/').to_string(),
        token,
    };
    match action {
        Action::List { json } => {
            let list = api.call(reqwest::Method::GET, kind.path(), None).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
            } else {
                let items = list["items"].as_array().cloned().unwrap_or_default();
                write!(out, "{}", table(kind.columns(), &items))?;
            }
        }
        Action::Get { name } => {
            let one = api.find(kind, &name).await?;
            writeln!(out, "{}", serde_json::to_string_pretty(&one)?)?;
        }
        Action::Add { file } => {
            let body = read_body(&file)?;
            let made = api
                .call(reqwest::Method::POST, kind.path(), Some(body))
                .await?;
            writeln!(out, "{}", serde_json::to_string_pretty(&made)?)?;
        }
        Action::Replace { name, file } => {
            let body = read_body(&file)?;
            let key = api.key_of(kind, &name).await?;
            let path = format!("{}/{key}", kind.path());
            let made = api.call(reqwest::Method::PUT, &path, Some(body)).await?;
            writeln!(out, "{}", serde_json::to_string_pretty(&made)?)?;
        }
        Action::Remove { name } => {
            let key = api.key_of(kind, &name).await?;
            let path = format!("{}/{key}", kind.path());
            api.call(reqwest::Method::DELETE, &path, None).await?;
            writeln!(out, "removed {name}")?;
        }
        Action::Test { name } => {
            let Kind::Connections = kind else {
                bail!("only a connection can be tested");
            };
            let key = api.key_of(kind, &name).await?;
            let path = format!("/connections/{key}/test");
            let result = api.call(reqwest::Method::POST, &path, None).await?;
            writeln!(out, "{}", serde_json::to_string_pretty(&result)?)?;
            if result["ok"] != Value::Bool(true) {
                bail!(
                    "the test failed: {}",
                    result["error"].as_str().unwrap_or("see above")
                );
            }
        }
    }
    Ok(())
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("calling {}{path}", self.base))?;
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            let detail = value["detail"].as_str().unwrap_or(text.trim());
            let fields = value["errors"]
                .as_array()
                .map(|e| {
                    e.iter()
                        .map(|p| {
                            format!(
                                "; {}: {}",
                                p["field"].as_str().unwrap_or(""),
                                p["problem"].as_str().unwrap_or("")
                            )
                        })
                        .collect::<String>()
                })
                .unwrap_or_default();
            let code = value["code"].as_str().unwrap_or("error");
            bail!("{status} {code}: {detail}{fields}");
        }
        Ok(value)
    }

    /// One object, by its name (or slug, or id).
    async fn find(&self, kind: Kind, name: &str) -> anyhow::Result<Value> {
        let list = self.call(reqwest::Method::GET, kind.path(), None).await?;
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|o| {
                [kind.key(), "name", "slug", "id"]
                    .iter()
                    .any(|k| o[*k] == name)
            })
            .cloned()
            .with_context(|| format!("no {} named `{name}`", &kind.path()[1..]))
    }

    /// What names it in a path.
    async fn key_of(&self, kind: Kind, name: &str) -> anyhow::Result<String> {
        let found = self.find(kind, name).await?;
        Ok(match &found[kind.key()] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

/// A JSON or TOML document from a file, or stdin for `-`.
fn read_body(file: &PathBuf) -> anyhow::Result<Value> {
    let text = if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    if let Ok(v) = serde_json::from_str::<Value>(&text) {
        return Ok(v);
    }
    let v: toml::Value = toml::from_str(&text)
        .with_context(|| format!("{} is neither JSON nor TOML", file.display()))?;
    Ok(serde_json::to_value(v)?)
}

/// A plain-text table of `columns` (an object or array cell is shown compactly).
pub fn table(columns: &[&str], items: &[Value]) -> String {
    let cell = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(String::from)
                    .unwrap_or_else(|| x.to_string())
            })
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(o) => o
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    v.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| v.to_string())
                )
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| columns.iter().map(|c| cell(&i[*c])).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(n, c)| {
            rows.iter()
                .map(|r| r[n].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(columns.iter().map(|c| c.to_uppercase()).collect());
    for r in rows {
        out.push_str(&line(r));
    }
    if items.is_empty() {
        out.push_str("(none)\n");
    }
    out
}
