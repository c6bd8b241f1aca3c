use crate::helpers::binary;

async fn run_with(env: &[(&str, &str)], args: &[&str]) -> (i32, String) {
    let mut cmd = binary();
    for (k, v) in env {
        cmd.env(k, v);
    }
    // A bad setting must stop the process at once; a server that starts is a failure.
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), cmd.args(args).output())
        .await
        .expect("the gateway exited within 30 s")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn bad_port_exits_2_naming_the_variable() {
    let (code, stderr) = run_with(&[("GATEWAY_PORT", "abc")], &[]).await;
    assert_eq!(code, 2);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("GATEWAY_PORT"), "{stderr}");
}

#[tokio::test]
async fn nested_and_unknown_settings_are_named() {
    let (code, stderr) = run_with(&[("GATEWAY_DATABASE__MAX_CONNECTIONS", "0")], &[]).await;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("GATEWAY_DATABASE__MAX_CONNECTIONS"),
        "{stderr}"
    );

    let (code, stderr) = run_with(&[("GATEWAY_PROT", "1")], &[]).await;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("GATEWAY_PROT") && stderr.contains("not a known setting"),
        "{stderr}"
    );
}

#[tokio::test]
async fn bad_value_in_the_config_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, "port = 8080\nshutdown_timeout_secs = \"soon\"\n").unwrap();
    let (code, stderr) = run_with(&[], &["--config", file.to_str().unwrap()]).await;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("shutdown_timeout_secs") && stderr.contains("gateway.toml"),
        "{stderr}"
    );
}

#[tokio::test]
async fn missing_postgres_binaries_explain_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = run_with(
        &[
            ("GATEWAY_PG_BIN", "/nonexistent"),
            ("GATEWAY_DATA_DIR", dir.path().to_str().unwrap()),
        ],
        &[],
    )
    .await;
    assert_eq!(code, 1);
    assert!(stderr.contains("GATEWAY_PG_BIN"), "{stderr}");
}

#[tokio::test]
async fn openapi_command_prints_the_spec() {
    let out = binary().arg("openapi").output().await.unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        uipath_gateway::openapi::spec_json()
    );
}

#[tokio::test]
async fn database_url_without_encryption_keys_exits_2_saying_how_to_make_one() {
    let (code, stderr) = run_with(&[("DATABASE_URL", "postgres://u:p@127.0.0.1:1/db")], &[]).await;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("GATEWAY_ENCRYPTION_KEYS") && stderr.contains("keys generate"),
        "{stderr}"
    );
    let (code, stderr) = run_with(&[("GATEWAY_ENCRYPTION_KEYS", "k1:short")], &[]).await;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("GATEWAY_ENCRYPTION_KEYS") && stderr.contains("32 bytes"),
        "{stderr}"
    );
    let (code, stderr) = run_with(&[("GATEWAY_ADMIN_TOKEN", "short")], &[]).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("GATEWAY_ADMIN_TOKEN"), "{stderr}");
}

#[tokio::test]
async fn keys_generate_prints_a_usable_key() {
    let out = binary()
        .args(["keys", "generate", "--id", "k1"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let spec = String::from_utf8(out.stdout).unwrap();
    assert!(spec.starts_with("k1:"));
    uipath_gateway::crypto::KeyRing::parse(&secrecy::SecretString::from(spec.trim().to_string()))
        .unwrap();
}

#[tokio::test]
async fn flags_take_the_usual_spellings_and_lists_parse_from_the_environment() {
    // Each run stops at the bad public_url, so everything before it was accepted.
    for flag in ["1", "true", "yes", "off"] {
        let (code, stderr) = run_with(
            &[
                ("GATEWAY_ALLOW_PRIVATE_CALLBACKS", flag),
                ("GATEWAY_CALLBACKS__RETRY_SCHEDULE_SECS", "[1, 60]"),
                ("GATEWAY_PUBLIC_URL", "gateway.example.com"),
            ],
            &[],
        )
        .await;
        assert_eq!(code, 2);
        assert!(stderr.contains("GATEWAY_PUBLIC_URL"), "{flag}: {stderr}");
    }
    let (code, stderr) = run_with(&[("GATEWAY_ALLOW_PRIVATE_CALLBACKS", "maybe")], &[]).await;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("GATEWAY_ALLOW_PRIVATE_CALLBACKS"),
        "{stderr}"
    );
}

#[tokio::test]
async fn secrets_may_be_given_as_files_as_containers_mount_them() {
    use secrecy::ExposeSecret;
    let (_, db) = crate::helpers::db::server().fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, value: &str| {
        let path = dir.path().join(name);
        // As `echo "$SECRET" > file` leaves it: with a trailing newline.
        std::fs::write(&path, format!("{value}\n")).unwrap();
        path.display().to_string()
    };
    let keys = uipath_gateway::crypto::KeyRing::generate_spec("files");
    let env = [
        ("GATEWAY_PORT", "0".to_string()),
        ("GATEWAY_DATABASE_URL_FILE", write("db", db.expose_secret())),
        (
            "GATEWAY_ENCRYPTION_KEYS_FILE",
            write("keys", keys.expose_secret()),
        ),
        (
            "GATEWAY_ADMIN_TOKEN_FILE",
            write("admin", "admin-token-from-a-file"),
        ),
    ];
    let gw = crate::helpers::GatewayProcess::serve_with(&env, None).await;
    let http = uipath_gateway::orchestrator::http::builder()
        .build()
        .unwrap();
    let res = http
        .get(gw.url("/processes"))
        .bearer_auth("admin-token-from-a-file")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the admin token came from its file");
    gw.signal(nix::sys::signal::Signal::SIGTERM).await;

    // A file that cannot be read, or a secret given twice, stops the start, named.
    let (code, stderr) = run_with(&[("GATEWAY_ADMIN_TOKEN_FILE", "/nonexistent/admin")], &[]).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("GATEWAY_ADMIN_TOKEN_FILE"), "{stderr}");
    let admin = write("admin2", "x");
    let (code, stderr) = run_with(
        &[
            ("GATEWAY_ADMIN_TOKEN_FILE", admin.as_str()),
            ("GATEWAY_ADMIN_TOKEN", "y"),
        ],
        &[],
    )
    .await;
    assert_eq!(code, 2);
    assert!(stderr.contains("not both"), "{stderr}");
}
