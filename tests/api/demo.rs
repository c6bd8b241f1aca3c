//! `uipath-gateway demo`, as the README's Quick start runs it: the printed curl lines
//! start a job and show it, and a second run reuses the same data.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::{binary, data_dir};

/// The `export NAME=value` lines the demo printed on stderr.
type Exports = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// Starts the demo and returns it with the lines of its banner (stdout) and the exports
/// it printed for the guides (stderr).
async fn start(data: &std::path::Path) -> (tokio::process::Child, Vec<String>, Exports) {
    let mut child = binary()
        .arg("demo")
        .args(["--sim-port", "0"])
        .env("GATEWAY_DATA_DIR", data)
        .env("GATEWAY_PORT", "0")
        .env("GATEWAY_LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exports: Exports = Default::default();
    let mut errors = BufReader::new(child.stderr.take().unwrap()).lines();
    let seen = exports.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = errors.next_line().await {
            if let Some((name, value)) =
                line.strip_prefix("export ").and_then(|l| l.split_once('='))
            {
                seen.lock()
                    .unwrap()
                    .push((name.to_string(), value.to_string()));
            } else {
                eprintln!("{line}");
            }
        }
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let end = line.contains("Ctrl-C stops the demo");
            banner.push(line);
            if end {
                return;
            }
        }
        panic!("the demo exited before printing its banner: {banner:?}");
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the demo starts within 60 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, banner, exports)
}

async fn sh(line: &str) -> serde_json::Value {
    let out = tokio::process::Command::new("bash")
        .args(["-c", line])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{line} answered {}", String::from_utf8_lossy(&out.stdout)))
}

async fn stop(mut child: tokio::process::Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}

/// Runs `script` in `bash -euo pipefail` with the demo's exports and `env`; fails the test
/// (with what it printed) unless it succeeds. Answers its stdout.
async fn run_script(script: &str, exports: &[(String, String)], env: &[(&str, &str)]) -> String {
    let out = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .envs(exports.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}\n{stdout}\n{}",
        script.lines().next().unwrap_or_default(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The demo's exports, once it printed them all.
async fn printed(exports: &Exports) -> Vec<(String, String)> {
    crate::helpers::setup::eventually("the demo's exports", Duration::from_secs(10), || async {
        exports.lock().unwrap().len() >= 11
    })
    .await;
    exports.lock().unwrap().clone()
}

#[tokio::test]
async fn the_printed_curl_lines_start_a_job_and_show_it_and_a_rerun_keeps_the_data() {
    let dir = data_dir();
    let (child, banner, exports) = start(dir.path()).await;
    let curls: Vec<&String> = banner.iter().filter(|l| l.starts_with("curl ")).collect();
    assert_eq!(curls.len(), 2, "{banner:#?}");
    assert!(
        banner.iter().any(|l| l.contains("/docs/")),
        "the Swagger UI address is printed"
    );
    let key_line = banner
        .iter()
        .find(|l| l.contains("API key:"))
        .unwrap()
        .clone();

    let job = sh(curls[0]).await;
    assert_eq!(job["process"], "Invoices");
    assert_eq!(job["state"], "successful", "waited for the end: {job}");
    assert_eq!(job["output"]["in_Vendor"], "ACME", "{job}");
    assert!(job["orchestrator_job_id"].is_i64());
    let listed = sh(curls[1]).await;
    assert_eq!(listed["items"][0]["id"], job["id"]);
    let gateway = banner
        .iter()
        .find_map(|l| l.trim().strip_prefix("Gateway:"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(
        uipath_gateway::orchestrator::http::builder()
            .build()
            .unwrap()
            .get(format!("{gateway}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // The demo printed the guides' values on stderr, before any log line (there is none
    // at its default level): the queue items guide runs verbatim with them.
    let exports = printed(&exports).await;
    let names: Vec<&str> = exports.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "GATEWAY",
            "ADMIN_TOKEN",
            "API_KEY",
            "CONNECTION",
            "FOLDER",
            "PROCESS_KEY",
            "UIPATH_URL",
            "UIPATH_ORG",
            "UIPATH_TENANT",
            "UIPATH_CLIENT_ID",
            "UIPATH_CLIENT_SECRET"
        ]
    );
    assert_eq!(exports[0].1, gateway);
    let stdout = run_script(
        &crate::helpers::guide_commands("recipes/queue-items.md"),
        &exports,
        &[("QUEUE", "InvoicesToBook")],
    )
    .await;
    assert!(stdout.contains("\"state\":\"successful\""), "{stdout}");
    assert!(stdout.contains("BK-1001"), "the robot's output: {stdout}");

    // The guides run verbatim against the demo too, in order (a connection guide with the
    // simulator as the tenant, the first process, the recipes), with a callback to a
    // receiver on this machine (the demo allows private addresses). The `export` lines a
    // reader fills in come from the demo's exports, or are supplied here.
    let receiver = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(204))
        .mount(&receiver)
        .await;
    let recipes: String = [
        "connect/automation-cloud-external-app.md",
        "first-process.md",
        "recipes/github.md",
        "recipes/stripe.md",
        "recipes/slack.md",
        "recipes/business-system.md",
    ]
    .iter()
    .map(|f| crate::helpers::guide_commands(f))
    .collect();
    let callback_url = format!("{}/uipath-callback", receiver.uri());
    run_script(
        &recipes,
        &exports,
        &[
            ("GITHUB_WEBHOOK_SECRET", "It's a Secret to Everybody"),
            ("STRIPE_SIGNING_SECRET", "whsec_demo_test_0123456789"),
            ("SLACK_SIGNING_SECRET", "8f742231b10e8888abcd99yyyzzz85a5"),
            ("CALLBACK_URL", &callback_url),
            // The reader's own name for the first process: the demo already has `Invoices`.
            ("PROCESS", "MyInvoices"),
        ],
    )
    .await;
    crate::helpers::setup::eventually("the recipe's callback", Duration::from_secs(30), || async {
        !receiver.received_requests().await.unwrap().is_empty()
    })
    .await;
    let callback = &receiver.received_requests().await.unwrap()[0];
    assert!(callback.headers.contains_key("webhook-signature"));

    // A crash: kill -9 leaves PostgreSQL running; the next run adopts it.
    let mut child = child;
    child.kill().await.unwrap();

    let (child, banner, _) = start(dir.path()).await;
    assert!(banner.contains(&key_line), "the same API key is reused");
    let curls: Vec<&String> = banner.iter().filter(|l| l.starts_with("curl ")).collect();
    // The recipes started more jobs since: look through the latest 200.
    let listed = sh(&curls[1].replace("limit=1", "limit=200")).await;
    assert!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == job["id"]),
        "the first run's job is still there"
    );
    stop(child).await;
}

/// Every connection guide runs verbatim against the demo, with the simulator as the tenant
/// (its fake credentials, `docs/simulator.md`), each followed by the first-process guide
/// through that connection: test it, browse it, name a process, start a job.
#[tokio::test]
async fn every_connection_guide_runs_verbatim_against_the_demo_and_starts_a_job() {
    let dir = data_dir();
    let (child, _, exports) = start(dir.path()).await;
    let exports = printed(&exports).await;
    let sim = exports
        .iter()
        .find(|(n, _)| n == "UIPATH_URL")
        .map(|(_, v)| v.clone())
        .unwrap();
    let guides = [
        ("connect/automation-cloud-pat.md", "Pat"),
        ("connect/automation-cloud-refresh-token.md", "RefreshToken"),
        ("connect/on-prem-identity.md", "OnPremIdentity"),
        ("connect/on-prem-password.md", "OnPremPassword"),
        ("connect/legacy-user-key.md", "UserKey"),
    ];
    for (guide, process) in guides {
        let script = crate::helpers::guide_commands(guide)
            + &crate::helpers::guide_commands("first-process.md");
        let pat = format!("rt_{}-1", "5e".repeat(32));
        let stdout = run_script(
            &script,
            &exports,
            &[
                ("UIPATH_PAT", &pat),
                ("UIPATH_PAT_EXPIRES", "2099-01-01T00:00:00Z"),
                ("UIPATH_REFRESH_TOKEN", "sim-refresh-token-0"),
                ("ORCHESTRATOR_URL", &sim),
                ("ORCHESTRATOR_TENANCY", "Default"),
                ("ORCHESTRATOR_USER", "admin"),
                ("ORCHESTRATOR_PASSWORD", "sim-password"),
                ("UIPATH_USER_KEY", "sim-user-key"),
                ("UIPATH_ACCOUNT_URL", &sim),
                ("UIPATH_PLATFORM_URL", &sim),
                ("PROCESS", process),
            ],
        )
        .await;
        assert!(
            stdout.contains(&format!("\"process\":\"{process}\""))
                && stdout.contains("\"state\":\"successful\""),
            "{guide}: the job through this connection ended successful:\n{stdout}"
        );
    }
    stop(child).await;
}
