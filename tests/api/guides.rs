//! The documentation is tested: the configuration reference against the built-in
//! defaults, and the guides' commands against a gateway and the simulator.
//!
//! A guide's ```sh blocks are run in order with bash, as written, except `export NAME=...`
//! lines: those are the values a reader supplies (their tenant, their secrets), and the
//! test supplies the simulator's instead.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::helpers::db;
use crate::helpers::sim::{Sim, spawn_sim};
use crate::helpers::{ADMIN_TOKEN, TestApp, guide_commands as commands, spawn_app_on};

/// What a reader would put in the `export` lines, for the simulator.
fn values(app: &TestApp, sim: &Sim) -> BTreeMap<&'static str, String> {
    let bin = Path::new(env!("CARGO_BIN_EXE_uipath-gateway"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let sim_base = sim.url("");
    BTreeMap::from([
        ("PATH", path),
        ("GATEWAY", app.address.clone()),
        ("ADMIN_TOKEN", ADMIN_TOKEN.to_string()),
        ("UIPATH_URL", sim_base.clone()),
        ("UIPATH_ORG", "demo-org".into()),
        ("UIPATH_TENANT", "DefaultTenant".into()),
        ("UIPATH_CLIENT_ID", "sim-app".into()),
        ("UIPATH_CLIENT_SECRET", "sim-app-secret".into()),
        ("UIPATH_PAT", crate::helpers::setup::PAT.into()),
        ("UIPATH_REFRESH_TOKEN", "sim-refresh-token-0".into()),
        ("UIPATH_PAT_EXPIRES", "2099-01-01T00:00:00Z".into()),
        ("ORCHESTRATOR_URL", sim_base.clone()),
        ("ORCHESTRATOR_TENANCY", "Default".into()),
        ("ORCHESTRATOR_USER", "admin".into()),
        ("ORCHESTRATOR_PASSWORD", "sim-password".into()),
        ("UIPATH_USER_KEY", "sim-user-key".into()),
        ("UIPATH_ACCOUNT_URL", sim_base.clone()),
        ("UIPATH_PLATFORM_URL", sim_base),
        ("FOLDER", "Finance/AP".into()),
        ("PROCESS_KEY", "InvoiceBot".into()),
        ("PROCESS", "Invoices".into()),
        ("GITHUB_WEBHOOK_SECRET", "It's a Secret to Everybody".into()),
        (
            "STRIPE_SIGNING_SECRET",
            "whsec_guide_test_0123456789".into(),
        ),
        (
            "SLACK_SIGNING_SECRET",
            "8f742231b10e8888abcd99yyyzzz85a5".into(),
        ),
    ])
}

/// Runs the guides' commands, one after the other, in one shell; answers its output.
async fn run_guides(app: &TestApp, sim: &Sim, files: &[&str], extra: &[(&str, String)]) -> String {
    let script = files.iter().map(|f| commands(f)).collect::<String>();
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(&script)
        .env_clear();
    for (k, v) in values(app, sim) {
        cmd.env(k, v);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), cmd.output())
        .await
        .expect("the guides' commands took over 2 minutes")
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the commands of {files:?} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- script\n{script}",
        out.status
    );
    stdout
}

async fn gateway(sim: &Sim) -> TestApp {
    let (_, url) = db::server().fresh_database().await;
    let _ = sim;
    // The gateway as it runs for a reader: its background workers on.
    spawn_app_on(url, |s| {
        s.allow_private_callbacks = true;
        s.dispatch.poll_interval_ms = 250;
        s.tracking.pass_interval_ms = 200;
        s.tracking.poll_every_secs = 1;
        s.callbacks.poll_interval_ms = 200;
    })
    .await
}

async fn one_job_ran(app: &TestApp, process: &str) {
    // Start marks follow the answers in the next group commit.
    app.state.ledger.settled().await.unwrap();
    let n: i64 = sqlx::query_scalar(
        "select count(*) from jobs where process_name = $1 and orchestrator_job_id is not null",
    )
    .bind(process)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(n >= 1, "no started {process} job");
}

#[tokio::test]
async fn each_orchestrator_flavour_guide_connects_and_runs_the_first_process() {
    let sim = spawn_sim(|_| {}).await;
    for guide in [
        "connect/automation-cloud-external-app.md",
        "connect/automation-cloud-pat.md",
        "connect/automation-cloud-refresh-token.md",
        "connect/on-prem-password.md",
        "connect/on-prem-identity.md",
        "connect/legacy-user-key.md",
    ] {
        let app = gateway(&sim).await;
        let out = run_guides(&app, &sim, &[guide, "first-process.md"], &[]).await;
        assert!(out.contains("\"state\":\"successful\""), "{guide}:\n{out}");
        one_job_ran(&app, "Invoices").await;
    }
}

#[tokio::test]
async fn the_queue_items_recipe_adds_items_once_and_sees_them_end() {
    let sim = spawn_sim(|_| {}).await;
    let app = gateway(&sim).await;
    let out = run_guides(
        &app,
        &sim,
        &[
            "connect/automation-cloud-external-app.md",
            "recipes/queue-items.md",
        ],
        &[("QUEUE", "InvoicesToBook".into())],
    )
    .await;
    assert!(out.contains("\"state\":\"successful\""), "{out}");
    assert!(out.contains("\"BookingId\""), "the robot's output: {out}");
    // Two calls with one Reference on a unique queue: one item in Orchestrator.
    let items: Vec<(String, i64)> = sqlx::query_as(
        "select reference, count(distinct orchestrator_job_id) from jobs where kind = 'queue_item' group by 1",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(items, [("INV-2026-0042".to_string(), 1)], "{out}");
}

#[tokio::test]
async fn the_recipes_start_jobs_from_signed_github_stripe_and_slack_deliveries_and_a_business_system()
 {
    let sim = spawn_sim(|_| {}).await;
    let receiver = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(204))
        .mount(&receiver)
        .await;
    let app = gateway(&sim).await;
    let out = run_guides(
        &app,
        &sim,
        &[
            "connect/automation-cloud-external-app.md",
            "first-process.md",
            "recipes/github.md",
            "recipes/stripe.md",
            "recipes/slack.md",
            "recipes/business-system.md",
        ],
        &[(
            "CALLBACK_URL",
            format!("{}/uipath-callback", receiver.uri()),
        )],
    )
    .await;
    let sources: Vec<(String, i64)> = sqlx::query_as(
        "select coalesce(split_part(source_detail, ':', 1), source), count(*) from jobs \
         where source = 'hook' group by 1 order by 1",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let slugs: Vec<&str> = sources.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        slugs,
        ["github-push", "slack-command", "stripe-invoices"],
        "{out}"
    );
    // The business system's callback arrived, signed.
    crate::helpers::setup::eventually(
        "the callback reaches the business system",
        std::time::Duration::from_secs(20),
        || async {
            !receiver
                .received_requests()
                .await
                .unwrap_or_default()
                .is_empty()
        },
    )
    .await;
    let got = receiver.received_requests().await.unwrap();
    assert!(got[0].headers.get("webhook-signature").is_some());
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["data"]["state"], "successful", "{body}");
}

#[tokio::test]
async fn the_multi_instance_guide_commands_run() {
    let sim = spawn_sim(|_| {}).await;
    let app = gateway(&sim).await;
    let out = run_guides(&app, &sim, &["multiple-instances.md"], &[]).await;
    // `keys generate` printed a key spec the gateway accepts, and `/readyz` said ready.
    let spec = out
        .lines()
        .find(|l| l.starts_with('k') && l.contains(':'))
        .unwrap_or_else(|| panic!("no key spec in: {out}"));
    uipath_gateway::crypto::KeyRing::parse(&secrecy::SecretString::from(spec.to_string()))
        .unwrap_or_else(|e| panic!("{spec}: {e}"));
    assert!(out.contains("\"status\":\"ready\""), "{out}");
}

/// Every setting in `docs/configuration.md`, with its variable and default, and no other.
#[test]
fn the_configuration_reference_lists_every_setting_with_its_variable_and_default() {
    fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flatten(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.clone());
            }
        }
    }
    let mut settings = BTreeMap::new();
    flatten("", &uipath_gateway::config::defaults(), &mut settings);
    for objects in ["connections", "processes", "queues", "api_keys", "webhooks"] {
        settings.remove(objects);
    }
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
    )
    .unwrap();
    let mut documented = BTreeMap::new();
    for line in doc.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line
            .split(" | ")
            .map(|c| c.trim_matches(['|', ' ']))
            .collect();
        let key = cells[0].trim_matches('`');
        if key.contains(',') {
            continue; // the row about the file's objects
        }
        documented.insert(
            key.to_string(),
            (cells[1].to_string(), cells[2].to_string()),
        );
    }
    let missing: Vec<_> = settings
        .keys()
        .filter(|k| !documented.contains_key(*k))
        .collect();
    let unknown: Vec<_> = documented
        .keys()
        .filter(|k| !settings.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "settings missing from docs/configuration.md: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "docs/configuration.md lists settings that do not exist: {unknown:?}"
    );
    for (key, (env, default)) in &documented {
        let want_env = if key == "database_url" {
            "DATABASE_URL".to_string()
        } else {
            format!("GATEWAY_{}", key.replace('.', "__").to_uppercase())
        };
        assert_eq!(env.trim_matches('`'), want_env, "variable of {key}");
        let value = &settings[key];
        let shown = default.trim_matches('`');
        match value {
            Value::Null => assert!(
                !shown.starts_with(|c: char| c.is_ascii_digit()),
                "{key} has no default, the docs show `{shown}`"
            ),
            Value::String(s) => assert_eq!(shown, s, "default of {key}"),
            other => {
                let parsed: Value = serde_json::from_str(shown)
                    .unwrap_or_else(|_| panic!("default of {key}: `{shown}` is not {other}"));
                assert_eq!(&parsed, other, "default of {key}");
            }
        }
    }
}
