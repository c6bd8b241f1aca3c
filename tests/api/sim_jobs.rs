//! Jobs, folders, OData queries, the rate limit, webhooks and faults.

use base64::Engine;
use hmac::{KeyInit, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::sim::{INVOICE_KEY, Sim, spawn_sim};

const AP: Option<(&str, &str)> = Some(("X-UIPATH-FolderPath", "Finance/AP"));
const SHARED: Option<(&str, &str)> = Some(("X-UIPATH-OrganizationUnitId", "1"));

async fn job(sim: &Sim, token: &str, id: i64, folder: Option<(&str, &str)>) -> Value {
    let res = sim
        .get(&sim.cloud(&format!("/odata/Jobs({id})")), token, folder)
        .await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn advance(sim: &Sim, id: i64) -> Value {
    let res = sim
        .control(Method::POST, &format!("/jobs/{id}/advance"), None)
        .await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[tokio::test]
async fn a_started_job_runs_to_successful_with_output_arguments() {
    let sim = spawn_sim(|s| s.manual_jobs = true).await;
    let token = sim.token().await;
    let res = sim.start_invoice(&token, "ref-1").await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    let created = &body["value"][0];
    assert_eq!(created["State"], "Pending");
    assert_eq!(created["Reference"], "ref-1");
    let id = created["Id"].as_i64().unwrap();

    assert_eq!(advance(&sim, id).await["State"], "Running");
    assert_eq!(advance(&sim, id).await["State"], "Successful");
    let done = job(&sim, &token, id, AP).await;
    assert_eq!(done["State"], "Successful");
    assert_eq!(done["Info"], "Job completed");
    let output: Value =
        serde_json::from_str(done["OutputArguments"].as_str().expect("a JSON string")).unwrap();
    assert_eq!(output, json!({"in_Vendor": "ACME", "in_Amount": 12.5}));
    assert!(done["StartTime"].is_string() && done["EndTime"].is_string());
}

#[tokio::test]
async fn a_faulting_process_ends_faulted_with_its_error() {
    let sim = spawn_sim(|s| s.manual_jobs = true).await;
    let token = sim.token().await;
    let body = json!({"startInfo": {"ReleaseName": "FailingJob", "InputArguments": "{}"}});
    let url = sim.cloud("/odata/Jobs/UiPath.Server.Configuration.OData.StartJobs");
    let res: Value = sim
        .post(&url, &token, SHARED, &body)
        .await
        .json()
        .await
        .unwrap();
    let id = res["value"][0]["Id"].as_i64().unwrap();
    advance(&sim, id).await;
    advance(&sim, id).await;
    let done = job(&sim, &token, id, SHARED).await;
    assert_eq!(done["State"], "Faulted");
    assert_eq!(done["Info"], "The simulated workflow threw an exception.");
    assert_eq!(done["JobError"]["category"], "User");
    assert!(done["OutputArguments"].is_null());
}

#[tokio::test]
async fn jobs_run_on_their_own_timers_in_automatic_mode() {
    let sim = spawn_sim(|s| {
        s.default_behaviour.pending_ms = 0;
        s.default_behaviour.running_ms = 0;
    })
    .await;
    let token = sim.token().await;
    let res: Value = sim
        .start_invoice(&token, "auto")
        .await
        .json()
        .await
        .unwrap();
    let id = res["value"][0]["Id"].as_i64().unwrap();
    // The ticker runs every 10 ms: poll the state until it is terminal (bounded).
    for _ in 0..500 {
        if job(&sim, &token, id, AP).await["State"] == "Successful" {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the job never finished");
}

#[tokio::test]
async fn start_jobs_rejects_what_orchestrator_rejects() {
    let sim = spawn_sim(|_| {}).await;
    let token = sim.token().await;
    let url = sim.cloud("/odata/Jobs/UiPath.Server.Configuration.OData.StartJobs");
    let cases = [
        (
            json!({"startInfo": {"ReleaseKey": INVOICE_KEY, "InputArguments": {"in_Vendor": "x"}}}),
            400,
            1000,
        ),
        (
            json!({"startInfo": {"ReleaseKey": INVOICE_KEY, "InputArguments": format!("{{\"a\":\"{}\"}}", "x".repeat(10_000))}}),
            400,
            1000,
        ),
        (
            json!({"startInfo": {"ReleaseKey": "00000000-0000-0000-0000-000000000000"}}),
            404,
            1002,
        ),
        (
            json!({"startInfo": {"ReleaseKey": INVOICE_KEY, "Strategy": "Specific"}}),
            400,
            1000,
        ),
        (
            json!({"StartInfo": {"ReleaseKey": INVOICE_KEY, "Reference": "r".repeat(129)}}),
            400,
            1000,
        ),
    ];
    for (body, status, code) in cases {
        let res = sim.post(&url, &token, AP, &body).await;
        assert_eq!(res.status(), status, "{body}");
        assert_eq!(
            res.json::<Value>().await.unwrap()["errorCode"],
            code,
            "{body}"
        );
    }
    // Exactly 10,000 characters is allowed.
    let padding = "x".repeat(10_000 - "{\"a\":\"\"}".len());
    let body = json!({"startInfo": {"ReleaseKey": INVOICE_KEY, "InputArguments": format!("{{\"a\":\"{padding}\"}}")}});
    assert_eq!(sim.post(&url, &token, AP, &body).await.status(), 201);
    // A release in another folder is unknown here.
    let body = json!({"startInfo": {"ReleaseKey": INVOICE_KEY}});
    assert_eq!(sim.post(&url, &token, SHARED, &body).await.status(), 404);
}

#[tokio::test]
async fn every_folder_header_works_and_bad_or_missing_ones_fail() {
    let sim = spawn_sim(|_| {}).await;
    let token = sim.token().await;
    let url = sim.cloud("/odata/Releases");
    let encoded = {
        let utf16: Vec<u8> = "Übersee/Zürich"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        base64::engine::general_purpose::STANDARD.encode(utf16)
    };
    let good = [
        ("X-UIPATH-OrganizationUnitId", "4".to_string()),
        (
            "X-UIPATH-FolderKey",
            "6b3a8bde-0a5e-4a55-9d6c-2b0e6a6e4a04".to_string(),
        ),
        ("X-UIPATH-FolderPath-Encoded", encoded),
        ("X-UIPATH-FolderPath", "/Finance/AP".to_string()),
    ];
    for (h, v) in &good {
        let res = sim.get(&url, &token, Some((h, v))).await;
        assert_eq!(res.status(), 200, "{h}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["value"].as_array().unwrap().len(), 1, "{h}");
    }
    let res = sim.get(&url, &token, None).await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["errorCode"], 1101);
    for (h, v) in [
        ("X-UIPATH-OrganizationUnitId", "99"),
        ("X-UIPATH-FolderPath", "Finance/"),
        ("X-UIPATH-FolderKey", "nope"),
    ] {
        let res = sim.get(&url, &token, Some((h, v))).await;
        assert_eq!(res.status(), 400, "{h}");
        assert_eq!(res.json::<Value>().await.unwrap()["errorCode"], 1100, "{h}");
    }
}

#[tokio::test]
async fn releases_filter_by_name_and_process_key() {
    let sim = spawn_sim(|_| {}).await;
    let token = sim.token().await;
    let url = sim.cloud("/odata/Releases?$filter=ProcessKey%20eq%20'OrderSync'%20or%20Name%20eq%20'FailingJob'&$orderby=Id%20desc");
    let body: Value = sim.get(&url, &token, SHARED).await.json().await.unwrap();
    let names: Vec<&str> = body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["FailingJob", "OrderSync"]);
    let inputs: Value =
        serde_json::from_str(body["value"][1]["Arguments"]["Input"].as_str().unwrap()).unwrap();
    assert_eq!(inputs[0]["name"], "in_OrderIds");
    assert_eq!(inputs[0]["required"], true);
}

#[tokio::test]
async fn job_lists_filter_page_sort_and_count() {
    let sim = spawn_sim(|s| s.manual_jobs = true).await;
    let token = sim.token().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let res: Value = sim
            .start_invoice(&token, &format!("r{i}"))
            .await
            .json()
            .await
            .unwrap();
        ids.push(res["value"][0]["Id"].as_i64().unwrap());
    }
    advance(&sim, ids[0]).await;
    let filter = format!(
        "(Id eq {}L or Id eq {}) and State eq 'Pending'",
        ids[0], ids[1]
    );
    let url = format!(
        "{}?$filter={}&$count=true",
        sim.cloud("/odata/Jobs"),
        urlencode(&filter)
    );
    let body: Value = sim.get(&url, &token, AP).await.json().await.unwrap();
    assert_eq!(body["@odata.count"], 1);
    assert_eq!(body["value"][0]["Id"], ids[1]);

    let url = format!(
        "{}?$orderby=Id%20desc&$top=2&$skip=1",
        sim.cloud("/odata/Jobs")
    );
    let body: Value = sim.get(&url, &token, AP).await.json().await.unwrap();
    let got: Vec<i64> = body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["Id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, [ids[3], ids[2]]);

    let url = format!(
        "{}?$filter={}&$expand=Release",
        sim.cloud("/odata/Jobs"),
        urlencode("Release/ProcessKey eq 'InvoiceBot' and Reference eq 'r4'")
    );
    let body: Value = sim.get(&url, &token, AP).await.json().await.unwrap();
    assert_eq!(body["value"][0]["Release"]["Key"], INVOICE_KEY);

    let res = sim
        .get(
            &format!("{}?$top=1001", sim.cloud("/odata/Jobs")),
            &token,
            AP,
        )
        .await;
    assert_eq!(res.status(), 400);
    let res = sim
        .get(
            &format!("{}?$filter=Reference%20eq%20r4", sim.cloud("/odata/Jobs")),
            &token,
            AP,
        )
        .await;
    assert_eq!(res.status(), 400, "string literals need quotes");
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("x", s)]).unwrap()[2..].to_string()
}

#[tokio::test]
async fn filtered_job_lists_are_rate_limited_with_retry_after() {
    let sim = spawn_sim(|s| s.jobs_filter_rate_per_minute = 3).await;
    let token = sim.token().await;
    let filtered = format!(
        "{}?$filter=State%20eq%20'Running'",
        sim.cloud("/odata/Jobs")
    );
    for _ in 0..3 {
        assert_eq!(sim.get(&filtered, &token, AP).await.status(), 200);
    }
    let res = sim.get(&filtered, &token, AP).await;
    assert_eq!(res.status(), 429);
    let wait: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait));
    // Unfiltered lists are not limited; the limit resets after a minute.
    assert_eq!(
        sim.get(&sim.cloud("/odata/Jobs"), &token, AP)
            .await
            .status(),
        200
    );
    sim.control(Method::POST, "/clock/advance", Some(json!({"seconds": 61})))
        .await;
    assert_eq!(sim.get(&filtered, &token, AP).await.status(), 200);
}

#[tokio::test]
async fn stop_jobs_soft_stops_and_kills() {
    let sim = spawn_sim(|s| s.manual_jobs = true).await;
    let token = sim.token().await;
    let a: Value = sim.start_invoice(&token, "a").await.json().await.unwrap();
    let b: Value = sim.start_invoice(&token, "b").await.json().await.unwrap();
    let (a, b) = (
        a["value"][0]["Id"].as_i64().unwrap(),
        b["value"][0]["Id"].as_i64().unwrap(),
    );
    let url = sim.cloud("/odata/Jobs/UiPath.Server.Configuration.OData.StopJobs");
    let res = sim
        .post(
            &url,
            &token,
            AP,
            &json!({"strategy": "SoftStop", "jobIds": [a]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert!(res.bytes().await.unwrap().is_empty());
    assert_eq!(job(&sim, &token, a, AP).await["State"], "Stopping");
    assert_eq!(advance(&sim, a).await["State"], "Stopped");

    let url = sim.cloud(&format!(
        "/odata/Jobs({b})/UiPath.Server.Configuration.OData.StopJob"
    ));
    assert_eq!(
        sim.post(&url, &token, AP, &json!({"strategy": "Kill"}))
            .await
            .status(),
        200
    );
    assert_eq!(job(&sim, &token, b, AP).await["State"], "Terminating");
    assert_eq!(advance(&sim, b).await["State"], "Stopped");
}

#[tokio::test]
async fn webhooks_are_signed_and_carry_the_documented_shapes() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let sim = spawn_sim(|s| s.manual_jobs = true).await;
    let token = sim.token().await;
    let hook = json!({"Name": "gw", "Url": format!("{}/events", receiver.uri()), "Enabled": true, "Secret": "hook-secret",
        "SubscribeToAllEvents": true, "AllowInsecureSsl": false, "Events": []});
    let res = sim
        .post(&sim.cloud("/odata/Webhooks"), &token, None, &hook)
        .await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    assert!(
        created.get("Secret").is_none(),
        "the secret is never returned"
    );

    let res: Value = sim
        .start_invoice(&token, "hooked")
        .await
        .json()
        .await
        .unwrap();
    let id = res["value"][0]["Id"].as_i64().unwrap();
    advance(&sim, id).await;
    advance(&sim, id).await;
    // A ping answers 202 with the event it sends (signed like the others).
    let ping = |hook: &Value| {
        sim.cloud(&format!(
            "/odata/Webhooks({hook})/UiPath.Server.Configuration.OData.Ping"
        ))
    };
    let res = sim
        .post(&ping(&created["Id"]), &token, None, &json!({}))
        .await;
    assert_eq!(res.status(), 202);
    let pinged: Value = res.json().await.unwrap();
    assert_eq!(pinged["Type"], "ping");
    let res = sim.post(&ping(&json!(999)), &token, None, &json!({})).await;
    assert_eq!(res.status(), 404);
    let received = wait_for_requests(&receiver, 4).await;
    let mut types = Vec::new();
    for req in &received {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"hook-secret").unwrap();
        mac.update(&req.body);
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(req.headers["x-uipath-signature"], expected.as_str());
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        types.push(body["Type"].as_str().unwrap().to_string());
        match body["Type"].as_str().unwrap() {
            "job.created" => assert_eq!(body["Jobs"][0]["Id"], id),
            "ping" => assert_eq!(body["EventId"], pinged["EventId"]),
            "job.completed" => {
                assert_eq!(
                    body["Job"]["OutputArguments"]["in_Vendor"], "ACME",
                    "an object, not a string"
                );
            }
            _ => assert_eq!(body["Job"]["Id"], id),
        }
    }
    types.sort();
    assert_eq!(
        types,
        ["job.completed", "job.created", "job.started", "ping"]
    );
}

async fn wait_for_requests(server: &MockServer, n: usize) -> Vec<wiremock::Request> {
    // Deliveries are asynchronous: wait (bounded) until n have arrived.
    for _ in 0..500 {
        let got = server.received_requests().await.unwrap_or_default();
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("expected {n} webhook deliveries");
}

#[tokio::test]
async fn dropped_webhooks_and_the_breaker_lose_events() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&receiver)
        .await;
    let sim = spawn_sim(|s| s.manual_jobs = true).await;
    let token = sim.token().await;
    let hook = json!({"Name": "gw", "Url": receiver.uri(), "Enabled": true, "SubscribeToAllEvents": true, "AllowInsecureSsl": false});
    sim.post(&sim.cloud("/odata/Webhooks"), &token, None, &hook)
        .await;
    sim.control(Method::PUT, "/faults", Some(json!({"drop_webhooks": 1})))
        .await;
    let res: Value = sim.start_invoice(&token, "x").await.json().await.unwrap();
    let id = res["value"][0]["Id"].as_i64().unwrap();
    advance(&sim, id).await; // job.started: sent, answered 500, trips the breaker
    wait_for_requests(&receiver, 1).await;
    for _ in 0..100 {
        if sim
            .sim
            .with_state(|s| s.webhooks.values().any(|w| w.broken_until.is_some()))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    advance(&sim, id).await; // job.completed: dropped by the open breaker
    let counters: Value = sim.read("/counters").await;
    assert_eq!(counters["webhooks_sent"], 1);
    assert_eq!(
        counters["webhooks_dropped"], 2,
        "created (fault) and completed (breaker)"
    );
    assert_eq!(receiver.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn faults_fail_calls_and_create_then_502_still_creates_the_job() {
    let sim = spawn_sim(|_| {}).await;
    let token = sim.token().await;
    let faults = json!({"errors": [{"status": 503, "remaining": 2, "path_contains": "/odata/", "retry_after": 7}], "start_then_502": 1});
    assert_eq!(
        sim.control(Method::PUT, "/faults", Some(faults))
            .await
            .status(),
        204
    );
    for _ in 0..2 {
        let res = sim.start_invoice(&token, "f").await;
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()["retry-after"], "7");
    }
    let res = sim.start_invoice(&token, "after-502").await;
    assert_eq!(res.status(), 502);
    let url = format!(
        "{}?$filter=Reference%20eq%20'after-502'",
        sim.cloud("/odata/Jobs")
    );
    let body: Value = sim.get(&url, &token, AP).await.json().await.unwrap();
    assert_eq!(
        body["value"].as_array().unwrap().len(),
        1,
        "the job exists despite the 502"
    );
    assert_eq!(sim.start_invoice(&token, "ok").await.status(), 201);
    let calls = sim.calls("StartJobs").await;
    let statuses: Vec<u64> = calls
        .iter()
        .map(|c| c["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [503, 503, 502, 201]);
    assert_eq!(calls[3]["body"]["startInfo"]["Reference"], "ok");
}

#[tokio::test]
async fn hanging_and_slow_calls_are_injected_and_then_cleared() {
    let sim = spawn_sim(|_| {}).await;
    let token = sim.token().await;
    let faults = json!({"hang": {"hang_ms": 5000, "path_contains": "StartJobs", "remaining": 1}});
    sim.control(Method::PUT, "/faults", Some(faults)).await;
    let quick = uipath_gateway::orchestrator::http::builder()
        .timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    let url = sim.cloud("/odata/Jobs/UiPath.Server.Configuration.OData.StartJobs");
    let body = json!({"startInfo": {"ReleaseKey": INVOICE_KEY}});
    let res = quick
        .post(&url)
        .bearer_auth(&token)
        .header("X-UIPATH-FolderPath", "Finance/AP")
        .json(&body)
        .send()
        .await;
    assert!(res.is_err_and(|e| e.is_timeout()), "the call hangs");

    sim.control(Method::PUT, "/faults", Some(json!({"latency_ms": 150})))
        .await;
    let started = std::time::Instant::now();
    assert_eq!(
        sim.get(&sim.cloud("/odata/Folders"), &token, None)
            .await
            .status(),
        200
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(150),
        "latency is added"
    );

    sim.control(Method::DELETE, "/faults", None).await;
    assert_eq!(sim.start_invoice(&token, "after").await.status(), 201);
}
