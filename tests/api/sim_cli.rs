//! `uipath-gateway simulator` as a user runs it: the README's curl lines work.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::binary;

/// Starts the simulator binary on a free port and waits for its "listening" line.
async fn start(args: &[&str]) -> (tokio::process::Child, u16) {
    let port = uipath_gateway::embedded_db::free_port().unwrap();
    let mut child = binary()
        .arg("simulator")
        .args(["--port", &port.to_string()])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("Orchestrator simulator listening") {
                return;
            }
        }
        panic!("the simulator exited before listening");
    };
    tokio::time::timeout(Duration::from_secs(30), ready)
        .await
        .expect("the simulator listens within 30 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, port)
}

#[tokio::test]
async fn the_readme_curl_lines_get_a_token_and_start_a_job() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = readme
        .split("<!-- simulator-curl:start -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- simulator-curl:end -->").next())
        .expect("the README has the simulator curl block");
    let script: String = block
        .lines()
        .filter(|l| !l.starts_with("```"))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(script.matches("curl ").count(), 2, "two curl lines");

    let (_child, port) = start(&[]).await;
    let script = script.replace("127.0.0.1:8090", &format!("127.0.0.1:{port}"));
    let out = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("StartJobs answered JSON");
    assert_eq!(body["value"][0]["State"], "Pending");
    assert_eq!(body["value"][0]["Reference"], "readme-1");
}

#[tokio::test]
async fn the_example_scenario_loads_and_is_served() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/simulator-scenario.toml"
    );
    let scenario = uipath_gateway::simulator::Scenario::load(std::path::Path::new(path)).unwrap();
    assert_eq!(scenario.token_lifetimes.oauth, 120);
    assert_eq!(scenario.external_apps[0].client_id, "my-app");

    let (_child, port) = start(&["--scenario", path]).await;
    let res = uipath_gateway::orchestrator::http::builder()
        .build()
        .unwrap()
        .post(format!("http://127.0.0.1:{port}/identity_/connect/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "my-app"),
            ("client_secret", "my-app-secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["expires_in"],
        120
    );
}

#[tokio::test]
async fn a_broken_scenario_file_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "manual_jobs = \"yes\"\n").unwrap();
    let out = binary()
        .args([
            "simulator",
            "--port",
            "0",
            "--scenario",
            file.to_str().unwrap(),
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml"));
}
