//! Following started jobs to their end: the poller records each new state with the
//! output arguments or the error, and an earlier state never overwrites a later one.

use reqwest::Method;
use serde_json::{Value, json};
use uipath_gateway::storage::jobs::{Observed, record_state};
use uipath_gateway::workers::job_sync::try_execute_task as poll;

use crate::helpers::setup::{api_key, create, get_job, input, process, timeline};
use crate::helpers::sim::{Sim, spawn_sim};
use crate::helpers::{TestApp, spawn_app};

async fn setup() -> (TestApp, Sim, String) {
    let sim = spawn_sim(|s| s.manual_jobs = true).await;
    let app = spawn_app().await;
    create(&app, &input(&sim, "client_credentials", "sim")).await;
    for (name, folder, key) in [
        ("Invoices", "Finance/AP", "InvoiceBot"),
        ("Failing", "Shared", "FailingJob"),
    ] {
        let body = json!({"name": name, "connection": "sim", "folder": folder, "release": {"process_key": key}});
        process(&app, body).await;
    }
    let key = api_key(&app, "k", json!(["run:*", "jobs:read"])).await;
    (app, sim, key)
}

async fn run(app: &TestApp, key: &str, process: &str, body: Value) -> Value {
    let res = app
        .client
        .post(app.url(&format!("/run/{process}")))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    res.json().await.unwrap()
}

/// A `/run` of Invoices that stays queued: StartJobs answers 503 until the faults are
/// cleared.
async fn queued_run(app: &TestApp, sim: &Sim, key: &str, vendor: &str) -> Value {
    sim.control(
        Method::PUT,
        "/faults",
        Some(json!({"errors": [{"status": 503, "path_contains": "StartJobs"}]})),
    )
    .await;
    let queued = run(
        app,
        key,
        "Invoices",
        json!({"in_Vendor": vendor, "in_Amount": 2}),
    )
    .await;
    assert_eq!(queued["state"], "queued");
    queued
}

async fn finish_in_sim(sim: &Sim, orchestrator_id: i64) {
    for _ in 0..2 {
        sim.control(
            Method::POST,
            &format!("/jobs/{orchestrator_id}/advance"),
            None,
        )
        .await;
    }
}

#[tokio::test]
async fn output_arguments_keep_exact_decimals() {
    let (app, sim, key) = setup().await;
    let res = app
        .client
        .post(app.url("/run/Invoices"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(r#"{"in_Vendor": "exact", "in_Amount": 12345678901234567.89}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let started: Value = res.json().await.unwrap();
    // The simulator echoes the input as its OutputArguments string.
    finish_in_sim(&sim, started["orchestrator_job_id"].as_i64().unwrap()).await;
    assert_eq!(poll(&app.state).await.unwrap().changed, 1);
    let done = app
        .client
        .get(app.url(&format!("/jobs/{}", started["id"].as_str().unwrap())))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        done.contains(r#""output":{"in_Amount":12345678901234567.89"#),
        "read back through PostgreSQL's jsonb, not a float: {done}"
    );
}

#[tokio::test]
async fn the_poller_records_success_with_output_arguments_as_json() {
    let (app, sim, key) = setup().await;
    let started = run(
        &app,
        &key,
        "Invoices",
        json!({"in_Vendor": "ACME", "in_Amount": 12.5}),
    )
    .await;
    finish_in_sim(&sim, started["orchestrator_job_id"].as_i64().unwrap()).await;
    sim.control(Method::DELETE, "/calls", None).await;
    assert_eq!(poll(&app.state).await.unwrap().changed, 1);
    let done = get_job(&app, &key, started["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "successful");
    assert_eq!(
        done["output"],
        json!({"in_Vendor": "ACME", "in_Amount": 12.5}),
        "an object, not a string"
    );
    assert_eq!(done["info"], "Job completed");
    assert!(done["finished_at"].is_string());
    let last = done["timeline"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["state"].as_str(), last["source"].as_str()),
        (Some("successful"), Some("poll"))
    );
    // One single-job read, no filtered list (which is rate-limited).
    let calls = sim.calls("/odata/Jobs").await;
    assert_eq!(calls.len(), 1);
    assert!(
        calls[0]["path"]
            .as_str()
            .unwrap()
            .ends_with(&format!("Jobs({})", started["orchestrator_job_id"]))
    );
    assert_eq!(
        poll(&app.state).await.unwrap().changed,
        0,
        "finished jobs are not polled again"
    );
}

#[tokio::test]
async fn a_faulted_job_keeps_its_error() {
    let (app, sim, key) = setup().await;
    let started = run(&app, &key, "Failing", json!({})).await;
    finish_in_sim(&sim, started["orchestrator_job_id"].as_i64().unwrap()).await;
    poll(&app.state).await.unwrap();
    let done = get_job(&app, &key, started["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "faulted");
    assert_eq!(done["info"], "The simulated workflow threw an exception.");
    assert_eq!(done["error"]["category"], "User");
}

#[tokio::test]
async fn late_or_repeated_states_never_overwrite_later_ones() {
    let (app, _sim, key) = setup().await;
    let started = run(
        &app,
        &key,
        "Invoices",
        json!({"in_Vendor": "A", "in_Amount": 1}),
    )
    .await;
    let id = uuid::Uuid::parse_str(started["id"].as_str().unwrap()).unwrap();
    // The start mark follows the answer; what Orchestrator says is recorded after it.
    app.state.ledger.settled().await.unwrap();
    let seen = |state: &str| Observed {
        state: uipath_gateway::domain::job_state::JobState::parse(state).unwrap(),
        output: None,
        error: None,
        info: None,
    };
    assert!(
        record_state(&app.pool, id, &seen("running"), "webhook")
            .await
            .unwrap()
    );
    assert!(
        !record_state(&app.pool, id, &seen("running"), "poll")
            .await
            .unwrap(),
        "a duplicate changes nothing"
    );
    assert!(
        !record_state(&app.pool, id, &seen("pending"), "poll")
            .await
            .unwrap(),
        "an earlier state is ignored"
    );
    let done = Observed {
        state: uipath_gateway::domain::job_state::JobState::Successful,
        output: Some(json!({"x": 1})),
        error: None,
        info: None,
    };
    assert!(record_state(&app.pool, id, &done, "webhook").await.unwrap());
    for late in ["running", "faulted", "stopping"] {
        assert!(
            !record_state(&app.pool, id, &seen(late), "poll")
                .await
                .unwrap(),
            "{late} after successful"
        );
    }
    let read = get_job(&app, &key, started["id"].as_str().unwrap()).await;
    assert_eq!(read["state"], "successful");
    assert_eq!(read["output"], json!({"x": 1}));
    let states = timeline(&read, "state");
    assert_eq!(states, ["queued", "pending", "running", "successful"]);
}

#[tokio::test]
async fn a_running_job_is_stopped_and_a_queued_one_is_cancelled() {
    let (app, sim, key) = setup().await;
    let started = run(
        &app,
        &key,
        "Invoices",
        json!({"in_Vendor": "A", "in_Amount": 1}),
    )
    .await;
    let orch_id = started["orchestrator_job_id"].as_i64().unwrap();
    sim.control(Method::POST, &format!("/jobs/{orch_id}/advance"), None)
        .await; // Running
    let id = started["id"].as_str().unwrap();
    let res = app
        .client
        .post(app.url(&format!("/jobs/{id}/stop")))
        .bearer_auth(&key)
        .json(&json!({"strategy": "Kill"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let stop_call = sim.calls("StopJobs").await;
    assert_eq!(
        stop_call[0]["body"],
        json!({"strategy": "Kill", "jobIds": [orch_id]})
    );
    sim.control(Method::POST, &format!("/jobs/{orch_id}/advance"), None)
        .await; // Terminating -> Stopped
    poll(&app.state).await.unwrap();
    assert_eq!(get_job(&app, &key, id).await["state"], "stopped");
    let res = app
        .client
        .post(app.url(&format!("/jobs/{id}/stop")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409, "an ended job cannot be stopped");

    let queued = queued_run(&app, &sim, &key, "B").await;
    let qid = queued["id"].as_str().unwrap();
    let res = app
        .client
        .post(app.url(&format!("/jobs/{qid}/stop")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    assert_eq!(get_job(&app, &key, qid).await["state"], "stopped");
    sim.control(Method::DELETE, "/faults", None).await;
    sqlx::query("update jobs set next_attempt_at = now()")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        uipath_gateway::workers::dispatcher::try_execute_task(&app.state)
            .await
            .unwrap(),
        0,
        "a cancelled job is never started"
    );
}

#[tokio::test]
async fn a_job_stopped_while_its_start_is_in_flight_is_stopped_in_orchestrator_too() {
    let (app, sim, key) = setup().await;
    // The release is looked up (and cached) by a first run; then every call is slow.
    run(
        &app,
        &key,
        "Invoices",
        json!({"in_Vendor": "A", "in_Amount": 1}),
    )
    .await;
    sim.control(Method::PUT, "/faults", Some(json!({"latency_ms": 1000})))
        .await;
    let call = {
        let (app, key) = (&app, &key);
        async move {
            run(
                app,
                key,
                "Invoices",
                json!({"in_Vendor": "B", "in_Amount": 2}),
            )
            .await
        }
    };
    let stop = async {
        // The job is recorded and its StartJobs is on the way: cancel it.
        let queued = "select id from jobs where input->>'in_Vendor' = 'B' and state = 'queued'";
        crate::helpers::setup::eventually(
            "the second job recorded",
            std::time::Duration::from_secs(10),
            || async {
                sqlx::query_scalar::<_, uuid::Uuid>(queued)
                    .fetch_optional(&app.pool)
                    .await
                    .unwrap()
                    .is_some()
            },
        )
        .await;
        let id: uuid::Uuid = sqlx::query_scalar(queued)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        let res = app
            .client
            .post(app.url(&format!("/jobs/{id}/stop")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["state"], "stopped", "{body}");
        id
    };
    let (answer, id) = tokio::join!(call, stop);
    assert_eq!(answer["id"], id.to_string());
    // `/run` answers when Orchestrator took the job, before its start mark is written:
    // it says what Orchestrator said; the ledger, read next, has the stop.
    assert_eq!(answer["state"], "pending", "{answer}");

    // Orchestrator got the job anyway: it is killed there and linked to the ledger's.
    crate::helpers::setup::eventually(
        "the job killed in Orchestrator",
        std::time::Duration::from_secs(10),
        || async { !sim.calls("StopJobs").await.is_empty() },
    )
    .await;
    let read = get_job(&app, &key, &id.to_string()).await;
    assert_eq!(read["state"], "stopped");
    let linked = read["orchestrator_job_id"].as_i64();
    assert!(linked.is_some(), "{read}");
    assert_eq!(linked, answer["orchestrator_job_id"].as_i64());
    let stops = sim.calls("StopJobs").await;
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert_eq!(
        stops[0]["body"],
        json!({"strategy": "Kill", "jobIds": [linked.unwrap()]})
    );
    let in_orchestrator: Value = sim.read("/jobs").await;
    let theirs = in_orchestrator
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["Reference"] == format!("ugw-{id}"))
        .expect("Orchestrator has the job");
    assert_eq!(theirs["Id"].as_i64(), linked);
    // Being killed (this simulator moves its jobs on only when told to).
    assert_eq!(theirs["State"], "Terminating", "{theirs}");
    let timeline = timeline(&read, "state");
    assert_eq!(timeline, ["queued", "stopped", "stop_requested"]);
}

#[tokio::test]
async fn a_stop_that_finds_the_job_started_meanwhile_stops_it_in_orchestrator() {
    let (app, sim, key) = setup().await;
    let queued = queued_run(&app, &sim, &key, "C").await;
    let id: uuid::Uuid = queued["id"].as_str().unwrap().parse().unwrap();
    sim.control(Method::DELETE, "/faults", None).await;
    // Orchestrator has the job: a start that had been in flight.
    let token = sim.token().await;
    let created: Value = sim
        .start_invoice(&token, &format!("ugw-{id}"))
        .await
        .json()
        .await
        .unwrap();
    let orch_id = created["value"][0]["Id"].as_i64().unwrap();

    // The stop reads the job while it is queued; its start is recorded before the stop
    // can cancel it (the row is held until then).
    let mut hold = app.pool.begin().await.unwrap();
    sqlx::query("select 1 from jobs where id = $1 for update")
        .bind(id)
        .execute(&mut *hold)
        .await
        .unwrap();
    let stop = app
        .client
        .post(app.url(&format!("/jobs/{id}/stop")))
        .bearer_auth(&key)
        .json(&json!({"strategy": "Kill"}))
        .send();
    let start_recorded = async {
        crate::helpers::setup::eventually(
            "the stop waiting for the job's row",
            std::time::Duration::from_secs(10),
            || async {
                sqlx::query_scalar::<_, i64>(
                    "select count(*) from pg_stat_activity where wait_event_type = 'Lock' \
                     and query like 'update jobs set state = $2%'",
                )
                .fetch_one(&app.pool)
                .await
                .unwrap()
                    == 1
            },
        )
        .await;
        sqlx::query("update jobs set state = 'pending', orchestrator_job_id = $2 where id = $1")
            .bind(id)
            .bind(orch_id)
            .execute(&mut *hold)
            .await
            .unwrap();
        hold.commit().await.unwrap();
    };
    let (res, ()) = tokio::join!(stop, start_recorded);
    let res = res.unwrap();
    assert_eq!(res.status(), 202);
    let stops = sim.calls("StopJobs").await;
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert_eq!(
        stops[0]["body"],
        json!({"strategy": "Kill", "jobIds": [orch_id]})
    );
    let read = get_job(&app, &key, &id.to_string()).await;
    assert_eq!(read["orchestrator_job_id"], orch_id);
    assert_eq!(
        read["timeline"].as_array().unwrap().last().unwrap()["state"],
        "stop_requested"
    );
}

#[tokio::test]
async fn a_replay_starts_a_new_job_with_the_same_input_linked_to_the_first() {
    let (app, sim, key) = setup().await;
    let first = run(
        &app,
        &key,
        "Invoices",
        json!({"in_Vendor": "ACME", "in_Amount": 3}),
    )
    .await;
    let id = first["id"].as_str().unwrap();
    let res = app
        .client
        .post(app.url(&format!("/jobs/{id}/replay")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let again: Value = res.json().await.unwrap();
    assert_ne!(again["id"], first["id"]);
    assert_eq!(again["replay_of"], first["id"]);
    assert_eq!(again["source"], "replay");
    assert_eq!(again["input"], first["input"]);
    assert_eq!(again["state"], "pending");
    let refs: Vec<String> = sim.start_calls_refs().await;
    assert_eq!(
        refs,
        [
            format!("ugw-{id}"),
            format!("ugw-{}", again["id"].as_str().unwrap())
        ]
    );
}
