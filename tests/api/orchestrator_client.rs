//! Our Orchestrator client against the simulator: every auth flow end to end, and
//! each kind of failure typed as the dispatcher will need it.

use std::time::Duration;

use reqwest::Method;
use secrecy::SecretString;
use serde_json::json;
use uipath_gateway::orchestrator::models::{StartJobsRequest, StartProcessDto};
use uipath_gateway::orchestrator::{
    Credentials, FolderRef, OrchestratorClient, OrchestratorError, http_client, request_token,
};

use crate::helpers::sim::{CLOUD, INVOICE_KEY, Sim, spawn_sim};

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

fn client_credentials(sim: &Sim) -> Credentials {
    Credentials::ClientCredentials {
        token_url: sim.url("/identity_/connect/token"),
        client_id: "sim-app".into(),
        client_secret: secret("sim-app-secret"),
        scopes: vec![
            "OR.Folders.Read".into(),
            "OR.Execution.Read".into(),
            "OR.Jobs".into(),
        ],
    }
}

fn start_request(reference: &str) -> StartJobsRequest {
    StartJobsRequest {
        start_info: StartProcessDto {
            release_key: INVOICE_KEY.into(),
            strategy: "ModernJobsCount".into(),
            jobs_count: 1,
            input_arguments: Some(json!({"in_Vendor": "ACME", "in_Amount": 12.5}).to_string()),
            reference: Some(reference.into()),
            runtime_type: Some("Unattended".into()),
            job_priority: None,
            robot_ids: Some(vec![]),
            machine_session_ids: None,
        },
    }
}

/// Token, folders, releases in Finance/AP by every addressing mode, one StartJobs.
async fn exercise(orch: &OrchestratorClient, token: &str) {
    let folders = orch.folders(token).await.unwrap();
    let ap = folders
        .iter()
        .find(|f| f.fully_qualified_name.as_deref() == Some("Finance/AP"))
        .unwrap();
    for folder in [
        FolderRef::Id(ap.id),
        FolderRef::Key(ap.key.clone().unwrap()),
        FolderRef::Path("Finance/AP".into()),
    ] {
        let releases = orch
            .releases(token, &folder, Some("ProcessKey eq 'InvoiceBot'"))
            .await
            .unwrap();
        assert_eq!(releases.len(), 1);
        let inputs = releases[0].input_arguments().unwrap();
        assert!(
            inputs
                .iter()
                .any(|a| a.name == "in_Amount" && a.required && a.type_name == "System.Decimal")
        );
    }
    let jobs = orch
        .start_jobs(
            token,
            &FolderRef::Path("Finance/AP".into()),
            &start_request("client-test"),
        )
        .await
        .unwrap();
    assert_eq!(jobs[0].state, "Pending");
    assert_eq!(jobs[0].reference.as_deref(), Some("client-test"));
}

#[tokio::test]
async fn every_auth_flow_gets_a_token_that_works() {
    let sim = spawn_sim(|_| {}).await;
    let http = http_client(Duration::from_secs(10));
    let cloud = OrchestratorClient::new(http.clone(), &sim.url(CLOUD), None);

    let grant = request_token(&http, &client_credentials(&sim))
        .await
        .unwrap();
    assert!(grant.expires_at.is_some() && grant.refresh_token.is_none());
    exercise(
        &cloud,
        secrecy::ExposeSecret::expose_secret(&grant.access_token),
    )
    .await;

    let rt = Credentials::RefreshToken {
        token_url: sim.url("/demo-org/identity_/connect/token"),
        client_id: "sim-app".into(),
        client_secret: Some(secret("sim-app-secret")),
        refresh_token: secret("sim-refresh-token-0"),
    };
    let grant = request_token(&http, &rt).await.unwrap();
    assert!(
        grant.refresh_token.is_some(),
        "a rotated refresh token comes back"
    );
    exercise(
        &cloud,
        secrecy::ExposeSecret::expose_secret(&grant.access_token),
    )
    .await;

    let pat = format!("rt_{}-1", "5e".repeat(32));
    let grant = request_token(
        &http,
        &Credentials::Pat {
            token: secret(&pat),
            expires_at: None,
        },
    )
    .await
    .unwrap();
    exercise(
        &cloud,
        secrecy::ExposeSecret::expose_secret(&grant.access_token),
    )
    .await;

    let onprem = Credentials::Password {
        orchestrator_url: sim.url(""),
        tenancy_name: "Default".into(),
        username: "admin".into(),
        password: secret("sim-password"),
    };
    let grant = request_token(&http, &onprem).await.unwrap();
    exercise(
        &OrchestratorClient::new(http.clone(), &sim.url(""), None),
        secrecy::ExposeSecret::expose_secret(&grant.access_token),
    )
    .await;

    let legacy = Credentials::UserKey {
        token_url: sim.url("/oauth/token"),
        user_key: secret("sim-user-key"),
    };
    let grant = request_token(&http, &legacy).await.unwrap();
    let (account, tenant) = uipath_gateway::orchestrator::auth::discover_legacy(
        &http,
        &sim.url(""),
        grant.id_token.as_ref().unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        (account.as_str(), tenant.as_str()),
        ("demo-org", "DefaultTenant")
    );
    let orch = OrchestratorClient::new(
        http.clone(),
        &sim.url(&format!("/{account}/{tenant}")),
        Some(tenant.clone()),
    );
    exercise(
        &orch,
        secrecy::ExposeSecret::expose_secret(&grant.access_token),
    )
    .await;
    let calls = sim.calls("/demo-org/DefaultTenant/odata/Folders").await;
    assert_eq!(calls[0]["headers"]["x-uipath-tenantname"], "DefaultTenant");
}

#[tokio::test]
async fn refused_credentials_are_auth_errors_with_the_reason() {
    let sim = spawn_sim(|_| {}).await;
    let http = http_client(Duration::from_secs(10));
    let mut bad = client_credentials(&sim);
    if let Credentials::ClientCredentials { client_secret, .. } = &mut bad {
        *client_secret = secret("wrong");
    }
    let err = request_token(&http, &bad).await.unwrap_err();
    assert!(
        matches!(&err, OrchestratorError::Auth { error_code: Some(c), .. } if c == "invalid_client"),
        "{err:?}"
    );
    assert!(!err.is_retryable());

    let rt = |token: &str| Credentials::RefreshToken {
        token_url: sim.url("/identity_/connect/token"),
        client_id: "sim-app".into(),
        client_secret: Some(secret("sim-app-secret")),
        refresh_token: secret(token),
    };
    request_token(&http, &rt("sim-refresh-token-0"))
        .await
        .unwrap();
    let err = request_token(&http, &rt("sim-refresh-token-0"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OrchestratorError::Auth { error_code: Some(c), .. } if c == "invalid_grant"),
        "{err:?}"
    );

    let onprem = Credentials::Password {
        orchestrator_url: sim.url(""),
        tenancy_name: "Default".into(),
        username: "admin".into(),
        password: secret("nope"),
    };
    let err = request_token(&http, &onprem).await.unwrap_err();
    assert!(
        matches!(&err, OrchestratorError::Auth { error_code: Some(c), message, .. } if c == "1000" && message.contains("Invalid credentials")),
        "{err:?}"
    );

    let expired = Credentials::Pat {
        token: secret("x"),
        expires_at: Some(chrono::Utc::now() - chrono::Duration::days(1)),
    };
    let before = sim.calls("").await.len();
    assert!(matches!(
        request_token(&http, &expired).await,
        Err(OrchestratorError::Auth { .. })
    ));
    assert_eq!(
        sim.calls("").await.len(),
        before,
        "an expired PAT is refused without a call"
    );
}

#[test]
fn known_mistakes_are_refused_before_sending_with_the_fix() {
    let cc = Credentials::ClientCredentials {
        token_url: "https://cloud.uipath.com/identity_/connect/token".into(),
        client_id: "a".into(),
        client_secret: secret("b"),
        scopes: vec!["OR.Jobs".into(), "offline_access".into()],
    };
    assert!(cc.validate().unwrap_err().contains("remove it"));
    let pw = Credentials::Password {
        orchestrator_url: "https://cloud.uipath.com/acme/DefaultTenant/orchestrator_".into(),
        tenancy_name: "Default".into(),
        username: "u".into(),
        password: secret("p"),
    };
    assert!(pw.validate().unwrap_err().contains("External App"));
    let on_prem = Credentials::Password {
        orchestrator_url: "https://orchestrator.acme.local".into(),
        tenancy_name: "Default".into(),
        username: "u".into(),
        password: secret("p"),
    };
    assert!(on_prem.validate().is_ok());
}

/// Makes the simulator's next call fail with `error` (a fault), and starts a job: the error.
async fn start_failing(
    sim: &Sim,
    orch: &OrchestratorClient,
    token: &str,
    error: serde_json::Value,
) -> OrchestratorError {
    sim.control(Method::PUT, "/faults", Some(json!({"errors": [error]})))
        .await;
    orch.start_jobs(
        token,
        &FolderRef::Path("Finance/AP".into()),
        &start_request("r"),
    )
    .await
    .unwrap_err()
}

#[tokio::test]
async fn orchestrator_failures_are_typed_for_retry_decisions() {
    let sim = spawn_sim(|s| s.jobs_filter_rate_per_minute = 1).await;
    let http = http_client(Duration::from_millis(500));
    let orch = OrchestratorClient::new(http.clone(), &sim.url(CLOUD), None);
    let grant = request_token(&http, &client_credentials(&sim))
        .await
        .unwrap();
    let token = secrecy::ExposeSecret::expose_secret(&grant.access_token).to_string();
    let ap = FolderRef::Path("Finance/AP".into());

    let mut unknown = start_request("r");
    unknown.start_info.release_key = "00000000-0000-0000-0000-000000000000".into();
    let err = orch.start_jobs(&token, &ap, &unknown).await.unwrap_err();
    assert!(
        matches!(&err, OrchestratorError::NotFound { error_code: Some(c), .. } if c == "1002"),
        "{err:?}"
    );
    assert!(!err.is_retryable());

    let err = orch
        .releases(&token, &FolderRef::Path("Nope".into()), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OrchestratorError::InvalidRequest { error_code: Some(c), .. } if c == "1100"),
        "{err:?}"
    );

    let x = ["x".to_string()];
    orch.jobs_by_reference(&token, &ap, &x).await.unwrap();
    let err = orch.jobs_by_reference(&token, &ap, &x).await.unwrap_err();
    assert!(
        matches!(
            err,
            OrchestratorError::RateLimited {
                retry_after: Some(_)
            }
        ),
        "{err:?}"
    );

    let err = orch.folders("not-a-token").await.unwrap_err();
    assert!(
        matches!(err, OrchestratorError::Auth { status: 401, .. }),
        "{err:?}"
    );

    let err = start_failing(
        &sim,
        &orch,
        &token,
        json!({"status": 503, "remaining": 1, "retry_after": 3}),
    )
    .await;
    assert!(
        matches!(err, OrchestratorError::Unavailable { retry_after: Some(d), .. } if d == Duration::from_secs(3)),
        "{err:?}"
    );

    let err = start_failing(&sim, &orch, &token, json!({"status": 500, "remaining": 1})).await;
    assert!(
        matches!(
            err,
            OrchestratorError::Ambiguous {
                status: Some(500),
                ..
            }
        ),
        "{err:?}"
    );

    // A 408 (the server gave up waiting for the request) is worth another try: a read is
    // unavailable, a write is looked up first. (CI once saw one on StartJobs under load.)
    let err = start_failing(&sim, &orch, &token, json!({"status": 408, "remaining": 1})).await;
    assert!(
        matches!(
            err,
            OrchestratorError::Ambiguous {
                status: Some(408),
                ..
            }
        ),
        "{err:?}"
    );
    sim.control(
        Method::PUT,
        "/faults",
        Some(json!({"errors": [{"status": 408, "remaining": 1}]})),
    )
    .await;
    let err = orch.releases(&token, &ap, None).await.unwrap_err();
    assert!(
        matches!(
            err,
            OrchestratorError::Unavailable {
                status: Some(408),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());

    sim.control(Method::PUT, "/faults", Some(json!({"start_then_502": 1})))
        .await;
    let err = orch
        .start_jobs(&token, &ap, &start_request("ambiguous-1"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            OrchestratorError::Ambiguous {
                status: Some(502),
                ..
            }
        ),
        "{err:?}"
    );
    let ap_id = FolderRef::Id(3);
    // Take the id in its own statement: the state guard must not live across an await.
    let newest = sim
        .sim
        .with_state(|s| s.jobs.keys().copied().max())
        .unwrap();
    let job = orch.job(&token, &ap_id, newest).await.unwrap();
    assert_eq!(
        job.reference.as_deref(),
        Some("ambiguous-1"),
        "the job exists despite the 502"
    );

    sim.control(
        Method::PUT,
        "/faults",
        Some(json!({"hang": {"hang_ms": 3000, "remaining": 1, "path_contains": "StartJobs"}})),
    )
    .await;
    let err = orch
        .start_jobs(&token, &ap, &start_request("r"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, OrchestratorError::Ambiguous { status: None, .. }),
        "a timed-out write is ambiguous: {err:?}"
    );

    let dead = OrchestratorClient::new(http, "http://127.0.0.1:9", None);
    let err = dead
        .start_jobs(&token, &ap, &start_request("r"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, OrchestratorError::Unavailable { .. }),
        "nothing was sent: {err:?}"
    );
}

#[test]
fn our_requests_validate_against_uipaths_schema() {
    let schemas = crate::helpers::spec::Schemas::load();
    schemas.check(
        "StartJobsRequest",
        &serde_json::to_value(start_request("r")).unwrap(),
    );
    let stop = uipath_gateway::orchestrator::models::StopJobsRequest {
        strategy: "SoftStop".into(),
        job_ids: vec![1],
    };
    schemas.check("StopJobsRequest", &serde_json::to_value(stop).unwrap());
}

#[test]
fn non_ascii_folder_paths_use_the_encoded_header() {
    let (name, value) = FolderRef::Path("Übersee/Zürich".into()).header();
    assert_eq!(name, "x-uipath-folderpath-encoded");
    let raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, value.as_bytes())
        .unwrap();
    let units: Vec<u16> = raw
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(String::from_utf16(&units).unwrap(), "Übersee/Zürich");
    assert_eq!(
        FolderRef::Path("Finance/AP".into()).header().0,
        "x-uipath-folderpath"
    );
    assert_eq!(FolderRef::Id(3).header().0, "x-uipath-organizationunitid");
}

#[tokio::test]
async fn queue_items_are_added_once_per_reference_and_read_back() {
    use uipath_gateway::orchestrator::queues::{AddQueueItemRequest, QueueItemData};
    use uipath_gateway::traffic::Priority;
    let sim = spawn_sim(|_| {}).await;
    let http = http_client(Duration::from_secs(10));
    let orch = OrchestratorClient::new(http.clone(), &sim.url(CLOUD), None);
    let mut creds = client_credentials(&sim);
    if let Credentials::ClientCredentials { scopes, .. } = &mut creds {
        scopes.push("OR.Queues".into());
    }
    let grant = request_token(&http, &creds).await.unwrap();
    let token = secrecy::ExposeSecret::expose_secret(&grant.access_token).to_string();
    let ap = FolderRef::Path("Finance/AP".into());

    let queues = orch.queue_definitions(&token, &ap).await.unwrap();
    let queue = queues.iter().find(|q| q.name == "InvoicesToBook").unwrap();
    assert!(queue.enforce_unique_reference);
    assert!(queue.specific_data_json_schema.is_some());

    let body = AddQueueItemRequest {
        item_data: QueueItemData {
            name: "InvoicesToBook".into(),
            priority: Some("High".into()),
            specific_content: json!({"InvoiceNumber": "INV-9", "Amount": 3})
                .as_object()
                .unwrap()
                .clone(),
            reference: Some("ugw-it's-9".into()),
            ..Default::default()
        },
    };
    let item = orch.add_queue_item(&token, &ap, &body).await.unwrap();
    assert_eq!(item.status, "New");
    assert_eq!(item.reference.as_deref(), Some("ugw-it's-9"));
    // The same Reference again: Orchestrator's 1016, typed as "already there".
    let again = orch.add_queue_item(&token, &ap, &body).await.unwrap_err();
    assert!(again.is_duplicate_reference(), "{again:?}");
    assert!(!again.is_retryable());

    let read = orch.queue_item(&token, &ap, item.id).await.unwrap();
    assert_eq!(read.key, item.key);
    let found = orch
        .queue_items_by_reference(
            &token,
            &ap,
            queue.id,
            &["ugw-it's-9".to_string(), "ugw-none".to_string()],
            Priority::Routine,
        )
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, item.id);
}
