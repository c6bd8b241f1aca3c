//! The traffic governor: a learned list budget, pauses and budgets shared by instances.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use uipath_gateway::config::Settings;
use uipath_gateway::traffic::{Class, Priority};
use uipath_gateway::workers::{dispatcher, job_sync};

use crate::helpers::SendJson;
use crate::helpers::db;
use crate::helpers::setup::{run, setup_on};
use crate::helpers::sim::spawn_sim;
use crate::helpers::spawn_app_on;

async fn rate_limited(sim: &crate::helpers::sim::Sim) -> u64 {
    let counters: Value = sim.read("/counters").await;
    counters["rate_limited"].as_u64().unwrap()
}

/// A tenant that allows 10 filtered lists a window, against a configured budget of 60:
/// the first 429 teaches the governor the real limit, no further 429 comes in the
/// windows after, and every job is still read back to its end (lists only, no webhooks).
#[tokio::test]
async fn a_tenant_below_the_configured_budget_gets_one_429_then_none_and_every_job_is_tracked() {
    const WINDOW: u32 = 3;
    let sim = spawn_sim(|s| {
        s.manual_jobs = true;
        s.jobs_filter_rate_per_minute = 10;
        s.jobs_filter_window_secs = WINDOW;
    })
    .await;
    let (_, url) = db::server().fresh_database().await;
    let (app, key) = setup_on(&sim, url, |s| {
        s.traffic.list_window_secs = WINDOW as u64;
        s.tracking.list_budget_per_minute = 60;
        s.tracking.ids_per_list = 2;
        s.tracking.single_get_max = 0;
        s.tracking.single_reads_per_second = 0;
        s.tracking.poll_every_secs = 0;
        s.tracking.pass_interval_ms = 60_000;
        s.rate_limits.api_key_per_second = 0;
    })
    .await;
    sim.control(
        Method::PUT,
        "/faults",
        Some(json!({"drop_all_webhooks": true})),
    )
    .await;
    let mut orch_ids = Vec::new();
    for _ in 0..80 {
        let job: Value = run(&app, &key, "").await.json().await.unwrap();
        orch_ids.push(job["orchestrator_job_id"].as_i64().unwrap());
    }
    for id in &orch_ids {
        for _ in 0..2 {
            let res = sim
                .control(Method::POST, &format!("/jobs/{id}/advance"), None)
                .await;
            assert!(res.status().is_success());
        }
    }
    // 80 jobs, 2 ids a list: 40 lists, four windows at the tenant's real limit.
    let started = Instant::now();
    let mut first_429_at = None;
    loop {
        job_sync::try_execute_task(&app.state).await.unwrap();
        let limited = rate_limited(&sim).await;
        if limited > 0 && first_429_at.is_none() {
            first_429_at = Some(started.elapsed());
        }
        let open: i64 = sqlx::query_scalar("select count(*) from jobs where state <> 'successful'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        if open == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{open} jobs still not read back"
        );
        // The next list is free when the oldest of the window expires.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    assert!(first_429_at.is_some(), "the tenant's limit was never met");
    assert_eq!(
        rate_limited(&sim).await,
        1,
        "one 429 taught the limit; none in the {elapsed:?} after"
    );
    assert!(
        elapsed > Duration::from_secs(2 * WINDOW as u64),
        "{elapsed:?}: several windows passed"
    );
    let learned: Option<i64> =
        sqlx::query_scalar("select list_budget::int8 from orchestrator_tenants")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        learned,
        Some(10),
        "the budget kept is what the tenant accepted"
    );
    // It is kept: the governor still plans with it (across minutes and restarts).
    let lists = sim.calls("/odata/Jobs").await;
    let ok = lists.iter().filter(|c| c["status"] == 200).count();
    assert_eq!(ok, 40, "every list but the refused one read its jobs");
}

/// A 429 on StartJobs met by one instance pauses the tenant's starts for the other one
/// too (nothing is sent until the time `Retry-After` named), and two instances take
/// lists from one budget.
#[tokio::test]
async fn two_instances_share_one_tenants_pause_and_list_budget() {
    let sim = spawn_sim(|_| {}).await;
    let (_, url) = db::server().fresh_database().await;
    let keys = uipath_gateway::crypto::KeyRing::generate_spec("shared");
    let same = |s: &mut Settings| {
        s.encryption_keys = Some(keys.clone());
        s.tracking.list_budget_per_minute = 3;
    };
    let (a, key) = setup_on(&sim, url.clone(), same).await;
    let b = spawn_app_on(url, same).await;
    assert_eq!(run(&a, &key, "").await.status(), 202, "warm");
    sim.control(
        Method::PUT,
        "/faults",
        Some(json!({"errors": [{"status": 429, "path_contains": "StartJobs", "retry_after": 3, "remaining": 1}]})),
    )
    .await;
    sim.control(Method::DELETE, "/calls", None).await;
    let paused_at = Instant::now();
    let first: Value = run(&a, &key, "").await.json().await.unwrap();
    assert_eq!(first["state"], "queued", "{first}");
    b.state.traffic.refresh().await.unwrap();
    let second: Value = b
        .client
        .post(b.url("/run/Invoices"))
        .bearer_auth(&key)
        .json(&json!({"in_Vendor": "ACME", "in_Amount": 3}))
        .send_json()
        .await;
    assert_eq!(second["state"], "queued", "{second}");
    assert_eq!(
        sim.calls("StartJobs").await.len(),
        1,
        "the other instance sent nothing while the tenant was paused"
    );
    let job: Value = b
        .client
        .get(b.url(&format!("/jobs/{}", second["id"].as_str().unwrap())))
        .bearer_auth(&key)
        .send_json()
        .await;
    let held = job["timeline"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(held["state"], "held", "{job}");
    assert_eq!(held["detail"]["reason"], "paused", "{held}");
    assert_eq!(
        job["attempts"], 1,
        "a pause is no failure of the job: {job}"
    );
    // Neither dispatcher starts anything before the pause ends; then both jobs start.
    assert_eq!(dispatcher::try_execute_task(&b.state).await.unwrap(), 0);
    assert_eq!(dispatcher::try_execute_task(&a.state).await.unwrap(), 0);
    loop {
        let waiting: i64 =
            sqlx::query_scalar("select count(*) from jobs where orchestrator_job_id is null")
                .fetch_one(&a.pool)
                .await
                .unwrap();
        if waiting == 0 {
            break;
        }
        assert!(
            paused_at.elapsed() < Duration::from_secs(15),
            "{waiting} never started"
        );
        b.state.traffic.refresh().await.unwrap();
        dispatcher::try_execute_task(&b.state).await.unwrap();
        dispatcher::try_execute_task(&a.state).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let starts = sim.calls("StartJobs").await;
    assert_eq!(
        starts.len(),
        3,
        "the refused start and the two jobs: {starts:#?}"
    );
    let at = |c: &Value| {
        c["at"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    };
    assert_eq!(starts[0]["status"], 429);
    for later in &starts[1..] {
        let gap = at(later) - at(&starts[0]);
        assert!(
            gap >= chrono::Duration::milliseconds(2_900),
            "started {gap} after a 429 with Retry-After: 3"
        );
        assert_eq!(later["status"], 201);
    }

    // The list budget (3 a minute) is one for both instances.
    let tenant = job_sync::tenant_key(
        &uipath_gateway::storage::connections::find(&a.pool, "sim")
            .await
            .unwrap()
            .unwrap(),
    );
    for app in [&a, &b, &a] {
        assert!(
            app.state
                .traffic
                .admit(&tenant, Class::List, Priority::Routine)
                .await
                .is_ok()
        );
    }
    let refused = b
        .state
        .traffic
        .admit(&tenant, Class::List, Priority::Urgent)
        .await
        .unwrap_err();
    assert_eq!(refused.reason, "list_budget");
    assert!(refused.wait > Duration::from_secs(50), "{refused:?}");
}
