//! `POST /run/{process}` against the simulator: exactly-once starts, validation,
//! idempotency, outages, dead letters and scopes.

use reqwest::Method;
use serde_json::{Value, json};
use uipath_gateway::workers::dispatcher::try_execute_task;

use crate::helpers::setup::{api_key, create, get_job, input, process, timeline};
use crate::helpers::sim::{INVOICE_KEY, Sim, spawn_sim};
use crate::helpers::{TestApp, spawn_app_with};

struct Setup {
    app: TestApp,
    sim: Sim,
    key: String,
}

async fn setup(adjust: impl FnOnce(&mut uipath_gateway::config::Settings)) -> Setup {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_app_with(adjust).await;
    create(&app, &input(&sim, "client_credentials", "sim")).await;
    for (name, folder, release) in [
        (
            "Invoices",
            "Finance/AP",
            json!({"process_key": "InvoiceBot"}),
        ),
        ("Orders", "Shared", json!({"name": "OrderSync"})),
        ("Failing", "1", json!({"process_key": "FailingJob"})),
    ] {
        let body = json!({"name": name, "connection": "sim", "folder": folder, "release": release, "default_input": {}});
        process(&app, body).await;
    }
    let key = api_key(&app, "k", json!(["run:*", "jobs:read"])).await;
    Setup { app, sim, key }
}

impl Setup {
    async fn run(&self, process: &str, body: Value, idem: Option<&str>) -> reqwest::Response {
        let mut req = self
            .app
            .client
            .post(self.app.url(&format!("/run/{process}")))
            .bearer_auth(&self.key)
            .json(&body);
        if let Some(k) = idem {
            req = req.header("idempotency-key", k);
        }
        req.send().await.unwrap()
    }

    async fn job(&self, id: &str) -> Value {
        get_job(&self.app, &self.key, id).await
    }

    /// Makes every queued job due now, then runs one dispatcher pass.
    async fn dispatch(&self) -> usize {
        sqlx::query("update jobs set next_attempt_at = now() where state = 'queued'")
            .execute(&self.app.pool)
            .await
            .unwrap();
        try_execute_task(&self.app.state).await.unwrap()
    }

    /// Looks every `unknown` job up now.
    async fn reconcile(&self) -> uipath_gateway::workers::reconciler::PassReport {
        sqlx::query("update jobs set next_attempt_at = now() where state = 'unknown'")
            .execute(&self.app.pool)
            .await
            .unwrap();
        uipath_gateway::workers::reconciler::try_execute_task(&self.app.state)
            .await
            .unwrap()
    }

    async fn start_calls(&self) -> Vec<Value> {
        self.sim.calls("StartJobs").await
    }
}

fn invoice() -> Value {
    json!({"in_Vendor": "ACME", "in_Amount": 12.5, "in_DueDate": "2026-12-01T00:00:00Z"})
}

#[tokio::test]
async fn a_run_starts_the_release_with_our_reference_and_a_string_of_arguments() {
    let s = setup(|_| {}).await;
    // The release was looked up when the process was saved.
    let looked_up = s.sim.calls("/odata/Releases").await.len();
    assert!(looked_up >= 1);
    let res = s.run("Invoices", invoice(), None).await;
    assert_eq!(res.status(), 202);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    let job: Value = res.json().await.unwrap();
    assert_eq!(location, format!("/jobs/{}", job["id"].as_str().unwrap()));
    assert_eq!(job["state"], "pending");
    assert!(job["orchestrator_job_id"].is_i64());

    let calls = s.start_calls().await;
    assert_eq!(calls.len(), 1);
    let info = &calls[0]["body"]["startInfo"];
    assert_eq!(info["ReleaseKey"], INVOICE_KEY);
    assert_eq!(info["Strategy"], "ModernJobsCount");
    assert_eq!(info["JobsCount"], 1);
    assert_eq!(
        info["Reference"],
        format!("ugw-{}", job["id"].as_str().unwrap())
    );
    let sent: Value = serde_json::from_str(
        info["InputArguments"]
            .as_str()
            .expect("InputArguments is a JSON string"),
    )
    .unwrap();
    assert_eq!(sent, invoice());

    let read = s.job(job["id"].as_str().unwrap()).await;
    let states = timeline(&read, "state");
    assert_eq!(states, ["queued", "pending"]);
    // The release was looked up once and cached: runs make no Releases call.
    s.run("Invoices", invoice(), None).await;
    assert_eq!(s.sim.calls("/odata/Releases").await.len(), looked_up);
}

#[tokio::test]
async fn decimals_and_int64s_stay_exact_to_orchestrator_and_out_of_range_ones_are_named() {
    let s = setup(|_| {}).await;
    let raw = |path: &str, body: &str| {
        s.app
            .client
            .post(s.app.url(path))
            .bearer_auth(&s.key)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let res = raw(
        "/run/Invoices",
        r#"{"in_Vendor": "exact", "in_Amount": 12345678901234567.89}"#,
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 202);
    let text = res.text().await.unwrap();
    assert!(text.contains("12345678901234567.89"), "the ledger: {text}");
    // Sent to Orchestrator as written, not through a float (12345678901234568).
    let calls = s.start_calls().await;
    let sent = calls[0]["body"]["startInfo"]["InputArguments"]
        .as_str()
        .unwrap();
    assert!(
        sent.contains("\"in_Amount\":12345678901234567.89"),
        "{sent}"
    );
    // Out of the .NET type's range: a 422 naming the argument and the value.
    let two_to_the_200 = "1606938044258990275541962092341162602522202993782792835301376";
    for (process, body, field, value) in [
        (
            "Invoices",
            format!(r#"{{"in_Vendor": "x", "in_Amount": {two_to_the_200}}}"#),
            "in_Amount",
            two_to_the_200,
        ),
        (
            "Invoices",
            r#"{"in_Vendor": "x", "in_Amount": 0.00000000000000000000000000001}"#.into(),
            "in_Amount",
            "1e-29",
        ),
        (
            "Orders",
            r#"{"in_OrderIds": [9223372036854775808]}"#.into(),
            "in_OrderIds",
            "9223372036854775808",
        ),
    ] {
        let res = raw(&format!("/run/{process}"), &body).await.unwrap();
        assert_eq!(res.status(), 422, "{body}");
        let p: Value = res.json().await.unwrap();
        assert_eq!(p["errors"][0]["field"], field, "{p}");
        let said = p["errors"][0]["problem"].as_str().unwrap();
        assert!(
            said.contains(value) || said.contains("digits after the point"),
            "{said}"
        );
    }
    assert_eq!(
        s.start_calls().await.len(),
        1,
        "nothing refused was started"
    );
}

#[tokio::test]
async fn bad_arguments_get_a_422_naming_each_one_and_start_nothing() {
    let s = setup(|_| {}).await;
    let res = s
        .run(
            "Invoices",
            json!({"in_Amount": "lots", "in_Colour": "red"}),
            None,
        )
        .await;
    assert_eq!(res.status(), 422);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "invalid_arguments");
    let mut fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        ["in_Amount", "in_Colour", "in_Vendor"],
        "wrong type, unknown, missing"
    );
    let res = s
        .run("Orders", json!({"in_OrderIds": [1, 2.5]}), None)
        .await;
    assert_eq!(res.status(), 422);
    let long = "x".repeat(10_001);
    let res = s
        .run("Invoices", json!({"in_Vendor": long, "in_Amount": 1}), None)
        .await;
    assert_eq!(
        res.status(),
        422,
        "the 10,000-character limit is checked before sending"
    );
    let res = s
        .app
        .client
        .post(s.app.url("/run/Invoices"))
        .bearer_auth(&s.key)
        .header("content-type", "application/json")
        .body("[1]")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(s.start_calls().await.is_empty());
    let jobs: i64 = sqlx::query_scalar("select count(*) from jobs")
        .fetch_one(&s.app.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 0, "nothing recorded");
}

#[tokio::test]
async fn an_idempotent_retry_returns_the_first_job_and_starts_once() {
    let s = setup(|_| {}).await;
    let first: Value = s
        .run("Invoices", invoice(), Some("order-42"))
        .await
        .json()
        .await
        .unwrap();
    let res = s.run("Invoices", invoice(), Some("order-42")).await;
    assert_eq!(res.status(), 202);
    assert_eq!(res.headers()["idempotent-replayed"], "true");
    let again: Value = res.json().await.unwrap();
    assert_eq!(first["id"], again["id"]);
    assert_eq!(s.start_calls().await.len(), 1);
    let res = s
        .run(
            "Invoices",
            json!({"in_Vendor": "Other", "in_Amount": 1}),
            Some("order-42"),
        )
        .await;
    assert_eq!(res.status(), 409);
    assert_eq!(
        res.json::<Value>().await.unwrap()["code"],
        "idempotency_key_reused"
    );
}

#[tokio::test]
async fn a_502_after_create_leads_to_exactly_one_job() {
    let s = setup(|_| {}).await;
    s.sim
        .control(Method::PUT, "/faults", Some(json!({"start_then_502": 1})))
        .await;
    let res = s.run("Invoices", invoice(), None).await;
    assert_eq!(
        res.status(),
        202,
        "accepted: the outcome was ambiguous, the job is queued"
    );
    let job: Value = res.json().await.unwrap();
    assert_eq!(job["state"], "unknown", "it may be in Orchestrator: {job}");
    assert_eq!(s.dispatch().await, 0, "never started again before a lookup");
    let id = job["id"].as_str().unwrap();
    let read = s.job(id).await;
    let timeline = read["timeline"].as_array().unwrap();
    assert_eq!(timeline.last().unwrap()["state"], "unknown", "{read}");
    assert_eq!(s.reconcile().await.found, 1);
    let read = s.job(id).await;
    assert_eq!(read["state"], "pending", "adopted: {read}");
    assert_eq!(
        read["orchestrator_job_id"],
        s.sim.sim.with_state(|st| *st.jobs.keys().max().unwrap())
    );
    let reference = format!("ugw-{id}");
    let in_sim = s.sim.sim.with_state(|st| {
        st.jobs
            .values()
            .filter(|j| j.reference.as_deref() == Some(reference.as_str()))
            .count()
    });
    assert_eq!(in_sim, 1, "exactly one job in Orchestrator");
    assert_eq!(
        s.start_calls().await.len(),
        1,
        "StartJobs was not sent twice"
    );
}

#[tokio::test]
async fn an_outage_queues_jobs_and_starts_each_once_afterwards() {
    let s = setup(|_| {}).await;
    s.sim.control(Method::PUT, "/faults", Some(json!({"errors": [{"status": 503, "path_contains": "StartJobs", "retry_after": 1}]}))).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let res = s.run("Invoices", invoice(), None).await;
        assert_eq!(res.status(), 202);
        let job: Value = res.json().await.unwrap();
        assert_eq!(job["state"], "queued");
        assert!(job["next_attempt_at"].is_string());
        ids.push(job["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        let job = s.job(id).await;
        let held = &job["timeline"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(
            held["state"], "held",
            "the 503's Retry-After paused the tenant: {job}"
        );
        assert_eq!(job["attempts"], 1, "{job}");
    }
    s.sim.control(Method::DELETE, "/faults", None).await;
    // Starts are paused for the second the 503 asked for; then all three go.
    let paused = s.dispatch().await;
    let mut started = paused;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while started < 3 && std::time::Instant::now() < deadline {
        s.app.state.traffic.refresh().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        started += s.dispatch().await;
    }
    assert_eq!(started, 3);
    for id in &ids {
        assert_eq!(s.job(id).await["state"], "pending");
    }
    let created = s
        .start_calls()
        .await
        .into_iter()
        .filter(|c| c["status"] == 201)
        .count();
    assert_eq!(created, 3, "each started once");
    assert_eq!(s.sim.sim.with_state(|st| st.jobs.len()), 3);
    assert_eq!(s.dispatch().await, 0, "nothing left");
}

#[tokio::test]
async fn a_job_that_keeps_failing_is_dead_lettered_with_its_last_error() {
    let s = setup(|st| st.dispatch.max_attempts = 2).await;
    s.sim
        .control(
            Method::PUT,
            "/faults",
            Some(json!({"errors": [{"status": 503, "path_contains": "StartJobs"}]})),
        )
        .await;
    let job: Value = s
        .run("Invoices", invoice(), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(s.dispatch().await, 1);
    let read = s.job(job["id"].as_str().unwrap()).await;
    assert_eq!(read["state"], "dead");
    assert!(
        read["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gave up after 2 failed attempts")
    );
}

#[tokio::test]
async fn orchestrator_refusals_are_recorded_and_passed_on() {
    let s = setup(|_| {}).await;
    let body = json!({"name": "Classic", "connection": "sim", "folder": "Finance/AP", "release": {"process_key": "InvoiceBot"}, "job_options": {"strategy": "Specific"}});
    s.app
        .admin(Method::POST, "/processes")
        .json(&body)
        .send()
        .await
        .unwrap();
    let res = s.run("Classic", invoice(), None).await;
    assert_eq!(res.status(), 422);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "orchestrator_error");
    assert_eq!(problem["orchestrator_error_code"], "1000");
    let rejected: String = sqlx::query_scalar("select state from jobs")
        .fetch_one(&s.app.pool)
        .await
        .unwrap();
    assert_eq!(rejected, "rejected");

    // A release that does not exist is refused when the process is saved, in our words,
    // naming the field and the releases the folder does have; no job is left behind.
    let ghost = json!({"name": "Ghost", "connection": "sim", "folder": "Shared", "release": {"process_key": "Ghost"}});
    let res = s
        .app
        .admin(Method::POST, "/processes")
        .json(&ghost)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(
        problem["errors"][0]["field"], "release.process_key",
        "{problem}"
    );
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("its releases are: OrderSync"),
        "{problem}"
    );
    assert_eq!(s.run("Ghost", json!({}), None).await.status(), 404);
}

#[tokio::test]
async fn a_redeploy_is_followed_by_one_fresh_release_lookup() {
    let s = setup(|_| {}).await;
    assert_eq!(s.run("Invoices", invoice(), None).await.status(), 202);
    // The release is now cached in the process row; read it from there (as the config
    // change notification would make every instance do).
    s.app.state.lookups.clear();
    let mut release = s.sim.release("InvoiceBot");
    release.key = "11111111-2222-3333-4444-555555555555".into();
    s.sim
        .control(
            Method::PUT,
            "/releases",
            Some(serde_json::to_value(&release).unwrap()),
        )
        .await;
    let job: Value = s
        .run("Invoices", invoice(), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(job["state"], "pending", "{job}");
    let calls = s.start_calls().await;
    let keys: Vec<&str> = calls
        .iter()
        .map(|c| c["body"]["startInfo"]["ReleaseKey"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            INVOICE_KEY,
            INVOICE_KEY,
            "11111111-2222-3333-4444-555555555555"
        ]
    );
}

#[tokio::test]
async fn scopes_decide_who_runs_and_who_reads() {
    let s = setup(|_| {}).await;
    let orders_only = api_key(&s.app, "k", json!(["run:Orders"])).await;
    let res = s
        .app
        .client
        .post(s.app.url("/run/Invoices"))
        .bearer_auth(&orders_only)
        .json(&invoice())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(
        res.json::<Value>().await.unwrap()["detail"]
            .as_str()
            .unwrap()
            .contains("`run:Invoices`")
    );
    let res = s
        .app
        .client
        .post(s.app.url("/run/Orders"))
        .bearer_auth(&orders_only)
        .json(&json!({"in_OrderIds": [7]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let job: Value = res.json().await.unwrap();
    let res = s
        .app
        .client
        .get(s.app.url(&format!("/jobs/{}", job["id"].as_str().unwrap())))
        .bearer_auth(&orders_only)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "reading needs jobs:read");
    assert_eq!(
        s.app
            .client
            .post(s.app.url("/run/Orders"))
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(s.run("Nope", json!({}), None).await.status(), 404);
}

#[tokio::test]
async fn a_process_named_admin_grants_no_admin_rights_and_old_scopes_are_renamed() {
    let s = setup(|_| {}).await;
    let body = json!({"name": "admin", "connection": "sim", "folder": "Finance/AP",
        "release": {"process_key": "InvoiceBot"}, "default_input": {}});
    process(&s.app, body).await;
    // A key for the process `admin` starts it, and nothing more.
    let runner = api_key(&s.app, "k", json!(["run:admin"])).await;
    let res = s
        .app
        .client
        .post(s.app.url("/run/admin"))
        .bearer_auth(&runner)
        .json(&invoice())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    for (method, path) in [(Method::POST, "/api-keys"), (Method::GET, "/processes")] {
        let res = s
            .app
            .client
            .request(method, s.app.url(path))
            .bearer_auth(&runner)
            .json(&json!({"name": "minted", "scopes": ["admin"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{path}");
    }
    // The other direction: `admin` and `jobs:read` do not name a process to run.
    let reader = api_key(&s.app, "k", json!(["jobs:read"])).await;
    let res = s
        .app
        .client
        .post(s.app.url("/run/Invoices"))
        .bearer_auth(&reader)
        .json(&invoice())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // A bare process name is no longer a scope: the 422 says how to write it.
    let res = s
        .app
        .admin(Method::POST, "/api-keys")
        .json(&json!({"name": "old", "scopes": ["Invoices", "*", "run:bad name"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let problem: Value = res.json().await.unwrap();
    let text = problem["errors"].to_string();
    assert!(
        text.contains("run:Invoices") && text.contains("run:*"),
        "{text}"
    );
    assert_eq!(problem["errors"].as_array().unwrap().len(), 3);
    // Keys stored before `run:` existed are renamed by the migration, keeping their rights.
    sqlx::query(
        "insert into api_keys (id, name, prefix, key_hash, scopes) values \
         (gen_random_uuid(), 'legacy', 'ugw_legacy', '\\x00', array['Invoices', '*', 'admin', 'jobs:read', 'run:Orders'])",
    )
    .execute(&s.app.pool)
    .await
    .unwrap();
    sqlx::raw_sql(include_str!(
        "../../migrations/20261206000011_run_scopes.sql"
    ))
    .execute(&s.app.pool)
    .await
    .unwrap();
    let scopes: Vec<String> =
        sqlx::query_scalar("select scopes from api_keys where name = 'legacy'")
            .fetch_one(&s.app.pool)
            .await
            .unwrap();
    assert_eq!(
        scopes,
        ["run:Invoices", "run:*", "admin", "jobs:read", "run:Orders"]
    );
}

#[tokio::test]
async fn the_ledger_filters_and_pages_with_a_cursor() {
    let s = setup(|_| {}).await;
    for _ in 0..3 {
        s.run("Invoices", invoice(), None).await;
    }
    s.run("Orders", json!({"in_OrderIds": [1]}), None).await;
    let get = |q: String| {
        let req = s
            .app
            .client
            .get(s.app.url(&format!("/jobs?{q}")))
            .bearer_auth(&s.key);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let page = get("process=Invoices&limit=2".into()).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let rest = get(format!("process=Invoices&limit=2&cursor={cursor}")).await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert!(rest["next_cursor"].is_null());
    let all: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["items"].as_array().unwrap())
        .map(|j| j["id"].to_string())
        .collect();
    assert_eq!(
        all.iter().collect::<std::collections::HashSet<_>>().len(),
        3,
        "no job twice across pages"
    );
    let orders = get("state=pending&process=Orders".into()).await;
    assert_eq!(orders["items"].as_array().unwrap().len(), 1);
    let reference = orders["items"][0]["reference"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        get(format!("reference={reference}")).await["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let res = s
        .app
        .client
        .get(s.app.url("/jobs?cursor=garbage"))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn values_postgres_cannot_store_get_a_400_not_a_500() {
    let s = setup(|_| {}).await;
    let res = s
        .run(
            "Invoices",
            json!({"in_Vendor": "A\u{0}B", "in_Amount": 1}),
            None,
        )
        .await;
    assert_eq!(res.status(), 400);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "invalid_value");
    let res = s.app.admin(Method::POST, "/connections").json(&json!({"name": "x", "kind": "pat", "orchestrator_url": "https://o", "token": "t", "organization": "a\u{0}b"})).send().await.unwrap();
    assert_eq!(res.status(), 400);
}
