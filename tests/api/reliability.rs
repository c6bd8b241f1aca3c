//! Faults: the real binary killed with `kill -9` mid-stream, Orchestrator answering 503
//! and then hanging, PostgreSQL stopped under load, two instances on one database, and
//! the secrets of a whole run looked for in its logs and its database dump. Every
//! request that got a 2xx ends as exactly one job in the simulator.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::SendJson;
use crate::helpers::setup::{HOOK_TOKEN, eventually, provision};
use crate::helpers::sim::Sim;
use crate::helpers::{ADMIN_TOKEN, GatewayProcess, Logs, PrivateCluster, TestApp, spawn_app_on};

/// A free TCP port (bound then released), so a restarted gateway keeps its address.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `/run` and hook deliveries from `workers` tasks until `stop`, to the base URL in
/// `base` (read anew for every request). Returns the ids of jobs acknowledged with a 2xx.
pub struct Load {
    pub acknowledged: Arc<Mutex<Vec<Uuid>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(bases: Vec<String>, key: String, workers: usize) -> Self {
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let http = uipath_gateway::orchestrator::http::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let tasks = (0..workers)
            .map(|w| {
                let (http, key, bases) = (http.clone(), key.clone(), bases.clone());
                let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let base = &bases[(n as usize + w) % bases.len()];
                        let amount = (w as u64) * 1_000_000 + n;
                        let req = if n.is_multiple_of(2) {
                            http.post(format!("{base}/run/Invoices"))
                                .bearer_auth(&key)
                                .json(&json!({"in_Vendor": "load", "in_Amount": amount}))
                        } else {
                            http.post(format!("{base}/hooks/crm"))
                                .header("x-crm-token", HOOK_TOKEN)
                                .json(&json!({"vendor": "hook", "amount": amount}))
                        };
                        match req.send().await {
                            Ok(res) if res.status().is_success() => {
                                let v: Value = res.json().await.unwrap_or_default();
                                let id = v["id"].as_str().or(v["job_id"].as_str());
                                let id = id
                                    .and_then(|s| s.parse().ok())
                                    .unwrap_or_else(|| panic!("a 2xx without a job id: {v}"));
                                acknowledged.lock().unwrap().push(id);
                            }
                            Ok(res) => {
                                let status = res.status();
                                assert!(
                                    status == 503 || status == 429,
                                    "unexpected {status}: {}",
                                    res.text().await.unwrap_or_default()
                                );
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            // The gateway is down (killed, restarting): nothing was promised.
                            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                        }
                    }
                })
            })
            .collect();
        Self {
            acknowledged,
            stop,
            tasks,
        }
    }

    pub fn count(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }

    /// Waits until at least `n` requests were acknowledged.
    pub async fn until(&self, n: usize) {
        eventually(
            &format!("{n} acknowledged requests"),
            Duration::from_secs(60),
            || async { self.count() >= n },
        )
        .await;
    }

    pub async fn stop(self) -> Vec<Uuid> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        Arc::try_unwrap(self.acknowledged)
            .unwrap()
            .into_inner()
            .unwrap()
    }
}

/// Waits until every acknowledged job was started in Orchestrator, then checks the
/// simulator holds exactly one job per acknowledged job and none twice.
pub async fn every_job_started_once(pool: &sqlx::PgPool, sim: &Sim, acknowledged: &[Uuid]) {
    let ids: Vec<Uuid> = acknowledged.to_vec();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "two requests were acknowledged with the same job"
    );
    eventually(
        "every acknowledged job started",
        Duration::from_secs(90),
        || async {
            let started: i64 = sqlx::query_scalar(
                "select count(*) from jobs where id = any($1) and orchestrator_job_id is not null",
            )
            .bind(&ids)
            .fetch_one(pool)
            .await
            .unwrap_or(0);
            started == ids.len() as i64
        },
    )
    .await;
    let references: Vec<String> =
        sqlx::query_scalar("select reference from jobs where id = any($1)")
            .bind(&ids)
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(
        references.len(),
        ids.len(),
        "an acknowledged job is missing"
    );
    let jobs: Vec<Value> = sim.read("/jobs").await;
    let mut per_reference: BTreeMap<String, usize> = BTreeMap::new();
    for j in &jobs {
        *per_reference
            .entry(j["Reference"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    let twice: Vec<_> = per_reference.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "started twice: {twice:?}");
    for r in &references {
        assert_eq!(
            per_reference.get(r),
            Some(&1),
            "job {r} is not in Orchestrator"
        );
    }
}

fn gateway_env(db: &SecretString, keys: &str, port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", db.expose_secret().to_string()),
        ("GATEWAY_ENCRYPTION_KEYS", keys.to_string()),
        ("GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN.to_string()),
        ("GATEWAY_PORT", port.to_string()),
        ("GATEWAY_DISPATCH__LEASE_SECS", "5".into()),
        ("GATEWAY_DISPATCH__POLL_INTERVAL_MS", "100".into()),
        ("GATEWAY_RATE_LIMITS__API_KEY_PER_SECOND", "0".into()),
        ("GATEWAY_RATE_LIMITS__HOOK_PER_SECOND", "0".into()),
        ("GATEWAY_DATABASE__MAX_CONNECTIONS", "10".into()),
    ]
}

#[tokio::test]
async fn a_kill_9_mid_stream_loses_nothing_acknowledged_and_starts_nothing_twice() {
    let sim = crate::helpers::sim::spawn_sim(|_| {}).await;
    let (_, db) = crate::helpers::db::server().fresh_database().await;
    let keys = uipath_gateway::crypto::KeyRing::generate_spec("crash");
    let port = free_port();
    let env = gateway_env(&db, keys.expose_secret(), port);
    let first = GatewayProcess::serve_with(&env, None).await;
    let base = first.url("");
    let key = provision(
        &uipath_gateway::orchestrator::http::builder()
            .build()
            .unwrap(),
        &base,
        &sim,
        "client_credentials",
    )
    .await;

    // Each start takes a moment, so the kill lands while some are on the wire.
    sim.control(Method::PUT, "/faults", Some(json!({"latency_ms": 20})))
        .await;
    let load = Load::start(vec![base.clone()], key, 6);
    load.until(150).await;
    let status = first.signal(nix::sys::signal::Signal::SIGKILL).await;
    assert!(!status.success());
    let at_kill = load.count();
    let second = GatewayProcess::serve_with(&env, None).await;
    load.until(at_kill + 150).await;
    let acknowledged = load.stop().await;
    eprintln!(
        "{} acknowledged ({at_kill} before the kill)",
        acknowledged.len()
    );

    let pool = sqlx::PgPool::connect(db.expose_secret()).await.unwrap();
    every_job_started_once(&pool, &sim, &acknowledged).await;
    drop(second);
}

/// An in-process gateway whose workers run on their own, fast.
async fn live_app(
    db: SecretString,
    keys: SecretString,
    adjust: impl FnOnce(&mut uipath_gateway::config::Settings),
) -> TestApp {
    spawn_app_on(db, |s| {
        s.encryption_keys = Some(keys);
        s.dispatch.poll_interval_ms = 100;
        s.dispatch.lease_secs = 5;
        s.tracking.pass_interval_ms = 200;
        s.tracking.poll_every_secs = 1;
        s.rate_limits.api_key_per_second = 0;
        s.rate_limits.hook_per_second = 0;
        s.database.max_connections = 10;
        adjust(s);
    })
    .await
}

#[tokio::test]
async fn an_orchestrator_outage_delays_starts_honours_retry_after_and_loses_none() {
    let sim = crate::helpers::sim::spawn_sim(|_| {}).await;
    let (_, db) = crate::helpers::db::server().fresh_database().await;
    let keys = uipath_gateway::crypto::KeyRing::generate_spec("outage");
    let app = live_app(db, keys, |s| s.orchestrator.timeout_ms = 1_000).await;
    let key = provision(&app.client, &app.address, &sim, "client_credentials").await;
    // The release is known before the outage (so /run can check arguments offline).
    let warm = app
        .client
        .post(app.url("/run/Invoices"))
        .bearer_auth(&key)
        .json(&json!({"in_Vendor": "warm", "in_Amount": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status(), 202);
    let warm: Value = warm.json().await.unwrap();

    sim.control(
        Method::PUT,
        "/faults",
        Some(json!({"errors": [{"status": 503, "path_contains": "StartJobs", "retry_after": 2}]})),
    )
    .await;
    sim.control(Method::DELETE, "/calls", None).await;
    let load = Load::start(vec![app.address.clone()], key.clone(), 4);
    load.until(20).await;
    // Then it hangs: calls time out after 1 s, so a start may or may not have happened.
    sim.control(
        Method::PUT,
        "/faults",
        Some(json!({"hang": {"path_contains": "StartJobs", "hang_ms": 1_500}})),
    )
    .await;
    let during = load.count();
    load.until(during + 20).await;
    sim.control(Method::DELETE, "/faults", None).await;
    let mut acknowledged = load.stop().await;
    acknowledged.push(warm["id"].as_str().unwrap().parse().unwrap());
    every_job_started_once(&app.pool, &sim, &acknowledged).await;

    // The call log: after a 503 with Retry-After: 2, the same job is not tried again
    // for 2 seconds; later tries of a job come further and further apart.
    let calls = sim.calls("StartJobs").await;
    let mut by_reference: BTreeMap<String, Vec<(chrono::DateTime<chrono::Utc>, u16)>> =
        BTreeMap::new();
    for c in &calls {
        let r = c["body"]["startInfo"]["Reference"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let at: chrono::DateTime<chrono::Utc> = c["at"].as_str().unwrap().parse().unwrap();
        by_reference
            .entry(r)
            .or_default()
            .push((at, c["status"].as_u64().unwrap() as u16));
    }
    let mut retried_after_503 = 0;
    for (r, tries) in &by_reference {
        for pair in tries.windows(2) {
            if pair[0].1 == 503 {
                let gap = (pair[1].0 - pair[0].0).num_milliseconds();
                assert!(
                    gap >= 1_900,
                    "{r}: tried again {gap} ms after a 503 with Retry-After: 2"
                );
                retried_after_503 += 1;
            }
        }
    }
    assert!(retried_after_503 > 0, "no job was retried after a 503");
    // 503s during the outage: the answers were 503 from the simulator, nothing else.
    let statuses: HashSet<u64> = calls
        .iter()
        .map(|c| c["status"].as_u64().unwrap())
        .collect();
    assert!(statuses.contains(&503), "{statuses:?}");
}

#[tokio::test]
async fn a_database_restart_under_load_gets_503s_then_recovers_without_losing_anything() {
    let sim = crate::helpers::sim::spawn_sim(|_| {}).await;
    let pg = PrivateCluster::start();
    let keys = uipath_gateway::crypto::KeyRing::generate_spec("dbrestart");
    let app = live_app(pg.url("postgres"), keys, |s| {
        s.database.acquire_timeout_ms = 1_000;
    })
    .await;
    let key = provision(&app.client, &app.address, &sim, "client_credentials").await;
    let load = Load::start(vec![app.address.clone()], key.clone(), 4);
    load.until(30).await;

    pg.cluster.stop().unwrap();
    let before = load.count();
    // While it is down: 503 problem+json with Retry-After, not ready, but alive.
    let res = app
        .client
        .post(app.url("/run/Invoices"))
        .bearer_auth(&key)
        .json(&json!({"in_Vendor": "down", "in_Amount": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(app.get("/healthz").await.status(), 200);
    let res = app
        .client
        .post(app.url("/hooks/crm"))
        .header("x-crm-token", HOOK_TOKEN)
        .json(&json!({"vendor": "down", "amount": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    // Nothing is acknowledged while the database is down.
    let down_for = Instant::now();
    while down_for.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        load.count() <= before + 4,
        "acknowledged while the database was down"
    );

    pg.cluster.start(pg.port).unwrap();
    eventually("ready again", Duration::from_secs(30), || async {
        app.get("/readyz").await.status() == 200
    })
    .await;
    let after = load.count();
    load.until(after + 30).await;
    let acknowledged = load.stop().await;
    every_job_started_once(&app.pool, &sim, &acknowledged).await;
}

#[tokio::test]
async fn requests_in_flight_when_the_database_stops_are_answered_within_seconds_and_each_answer_is_true()
 {
    let sim = crate::helpers::sim::spawn_sim(|_| {}).await;
    let pg = PrivateCluster::start();
    let keys = uipath_gateway::crypto::KeyRing::generate_spec("dbstop");
    // Default pool and write deadlines (3 s to get a connection, 5 s for a write).
    let app = live_app(pg.url("postgres"), keys, |_| {}).await;
    let key = provision(&app.client, &app.address, &sim, "client_credentials").await;
    let warm = app
        .client
        .post(app.url("/run/Invoices"))
        .bearer_auth(&key)
        .json(&json!({"in_Vendor": "warm", "in_Amount": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        warm.status(),
        202,
        "the key, process and release are cached"
    );

    // Twenty calls and ten deliveries start as PostgreSQL stops; a caller waits 30 s.
    let http = uipath_gateway::orchestrator::http::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let calls = (0..30).map(|i| {
        let (http, app, key) = (&http, &app, &key);
        async move {
            let vendor = format!("in-flight-{i}");
            let req = if i < 20 {
                http.post(app.url("/run/Invoices"))
                    .bearer_auth(key)
                    .json(&json!({"in_Vendor": vendor, "in_Amount": i}))
            } else {
                http.post(app.url("/hooks/crm"))
                    .header("x-crm-token", HOOK_TOKEN)
                    .json(&json!({"vendor": vendor, "amount": i}))
            };
            let began = Instant::now();
            let res = req
                .send()
                .await
                .expect("an answer within the client's 30 s");
            let took = began.elapsed();
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or_default();
            (vendor, status, body, took)
        }
    });
    let stop = tokio::task::spawn_blocking({
        let cluster = pg.cluster.clone();
        move || cluster.stop().unwrap()
    });
    let answers = futures_util::future::join_all(calls).await;
    stop.await.unwrap();
    let slowest = answers.iter().map(|a| a.3).max().unwrap();
    let statuses: Vec<u16> = answers.iter().map(|a| a.1).collect();
    eprintln!("answers as the database stopped: {statuses:?}, the slowest in {slowest:?}");
    assert!(
        slowest < Duration::from_secs(9),
        "an answer took {slowest:?}: a caller with a short timeout would not know"
    );
    for (vendor, status, body, _) in &answers {
        assert!(
            matches!(status, 200 | 202 | 503),
            "{vendor}: {status} {body}"
        );
    }

    pg.cluster.start(pg.port).unwrap();
    eventually("ready again", Duration::from_secs(30), || async {
        app.get("/readyz").await.status() == 200
    })
    .await;
    // Every 2xx is exactly one job; every 503 that said nothing was recorded is none.
    let mut acknowledged = Vec::new();
    for (vendor, status, body, _) in &answers {
        let recorded: i64 =
            sqlx::query_scalar("select count(*) from jobs where input->>'in_Vendor' = $1")
                .bind(vendor)
                .fetch_one(&app.pool)
                .await
                .unwrap();
        match status {
            503 if body["code"] == "database_timeout" => assert!(recorded <= 1, "{vendor}"),
            503 => assert_eq!(
                recorded, 0,
                "{vendor} was answered 503 ({body}) but recorded"
            ),
            _ => {
                assert_eq!(
                    recorded, 1,
                    "{vendor} was acknowledged ({status}) but not recorded once"
                );
                let id = body["id"].as_str().or(body["job_id"].as_str()).unwrap();
                acknowledged.push(id.parse().unwrap());
            }
        }
    }
    every_job_started_once(&app.pool, &sim, &acknowledged).await;

    // Now PostgreSQL freezes instead (every process stopped): connections stay open and
    // nothing answers. Callers still hear within seconds; a write caught in a statement
    // is reported as possibly recorded (`database_timeout`), never as a plain failure.
    let postmaster: i32 = std::fs::read_to_string(pg.cluster.dir().join("postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let children = std::process::Command::new("pgrep")
        .args(["-P", &postmaster.to_string()])
        .output()
        .unwrap();
    let pids: Vec<i32> = std::iter::once(postmaster)
        .chain(
            String::from_utf8_lossy(&children.stdout)
                .lines()
                .filter_map(|l| l.trim().parse().ok()),
        )
        .collect();
    let signal = |sig| {
        for pid in &pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), sig);
        }
    };
    signal(nix::sys::signal::Signal::SIGSTOP);
    let frozen = (0..10).map(|i| {
        let (http, app, key) = (&http, &app, &key);
        async move {
            let vendor = format!("frozen-{i}");
            let began = Instant::now();
            let res = http
                .post(app.url("/run/Invoices"))
                .bearer_auth(key)
                .json(&json!({"in_Vendor": vendor, "in_Amount": i}))
                .send()
                .await
                .expect("an answer within the client's 30 s");
            let took = began.elapsed();
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or_default();
            (vendor, status, body, took)
        }
    });
    let answers = futures_util::future::join_all(frozen).await;
    signal(nix::sys::signal::Signal::SIGCONT);
    let slowest = answers.iter().map(|a| a.3).max().unwrap();
    let codes: Vec<String> = answers
        .iter()
        .map(|a| format!("{} {}", a.1, a.2["code"].as_str().unwrap_or("")))
        .collect();
    eprintln!("answers while the database was frozen: {codes:?}, the slowest in {slowest:?}");
    assert!(
        slowest < Duration::from_secs(9),
        "an answer took {slowest:?}"
    );
    eventually("ready again", Duration::from_secs(30), || async {
        app.get("/readyz").await.status() == 200
    })
    .await;
    for (vendor, status, body, _) in &answers {
        let recorded: i64 =
            sqlx::query_scalar("select count(*) from jobs where input->>'in_Vendor' = $1")
                .bind(vendor)
                .fetch_one(&app.pool)
                .await
                .unwrap();
        match (status, body["code"].as_str()) {
            (503, Some("database_timeout")) => assert!(recorded <= 1, "{vendor}"),
            (503, _) => assert_eq!(recorded, 0, "{vendor}: 503 ({body}) but recorded"),
            (200 | 202, _) => assert_eq!(recorded, 1, "{vendor}"),
            _ => panic!("{vendor}: {status} {body}"),
        }
    }
}

#[tokio::test]
async fn two_instances_share_the_work_start_each_job_once_and_refresh_each_token_once() {
    // Tokens live 10 s here. A token is renewed at 80% of its life or when less than
    // 5 s are left, whichever is first: every 5 s.
    const LIFETIME: u64 = 10;
    let renew_every_ms = ((LIFETIME as f64 * 0.8).min(LIFETIME as f64 - 5.0) * 1000.0) as i64;
    let sim = crate::helpers::sim::spawn_sim(|s| {
        s.token_lifetimes.oauth = LIFETIME;
        s.jobs_filter_rate_per_minute = 1_000;
    })
    .await;
    let (_, db) = crate::helpers::db::server().fresh_database().await;
    let keys = uipath_gateway::crypto::KeyRing::generate_spec("two");
    let both = |s: &mut uipath_gateway::config::Settings| {
        s.orchestrator.refresh_interval_secs = 1;
        // Thousands of jobs end within seconds: let the poller read them back quickly.
        s.tracking.list_budget_per_minute = 600;
        s.tracking.ids_per_list = 50;
    };
    let a = live_app(db.clone(), keys.clone(), both).await;
    let b = live_app(db, keys, both).await;
    let key = provision(&a.client, &a.address, &sim, "client_credentials").await;
    let started = Instant::now();
    let load = Load::start(vec![a.address.clone(), b.address.clone()], key, 6);
    // Long enough to cross a few token expiries.
    while started.elapsed() < Duration::from_millis(3 * renew_every_ms as u64 + 500) {
        load.until(load.count() + 10).await;
    }
    let acknowledged = load.stop().await;
    let elapsed = started.elapsed();
    every_job_started_once(&a.pool, &sim, &acknowledged).await;

    // Every job is tracked to its end (the simulator finishes each in about a second).
    eventually(
        "every job tracked to its end",
        Duration::from_secs(60),
        || async {
            let open: i64 = sqlx::query_scalar(
                "select count(*) from jobs where id = any($1)
               and state not in ('successful', 'faulted', 'stopped')",
            )
            .bind(&acknowledged)
            .fetch_one(&a.pool)
            .await
            .unwrap();
            open == 0
        },
    )
    .await;

    // One token request per lifetime, however many instances: the requests are spaced
    // by at least the refresh point (80% of the lifetime), never two for one expiry.
    let token_calls = sim.calls("/connect/token").await;
    let times: Vec<chrono::DateTime<chrono::Utc>> = token_calls
        .iter()
        .map(|c| c["at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        times.len() >= 3,
        "only {} token requests in {elapsed:?}",
        times.len()
    );
    for pair in times.windows(2) {
        let gap = (pair[1] - pair[0]).num_milliseconds();
        assert!(
            gap >= renew_every_ms - 500,
            "two token requests {gap} ms apart: {times:?}"
        );
    }
    eprintln!("{} token requests in {elapsed:?}", times.len());
}

#[tokio::test]
async fn no_secret_of_a_whole_run_is_in_its_logs_or_its_database_dump() {
    let sim = crate::helpers::sim::spawn_sim(|_| {}).await;
    let (_, db) = crate::helpers::db::server().fresh_database().await;
    let keys = uipath_gateway::crypto::KeyRing::generate_spec("hygiene");
    let mut env = gateway_env(&db, keys.expose_secret(), free_port());
    env.push(("GATEWAY_LOG_LEVEL", "debug".into()));
    let logs: Logs = Default::default();
    let gw = GatewayProcess::serve_with(&env, Some(logs.clone())).await;
    let base = gw.url("");
    let http = uipath_gateway::orchestrator::http::builder()
        .build()
        .unwrap();
    // A rotating refresh token, a PAT, a password, a webhook secret, a callback secret.
    let key = provision(&http, &base, &sim, "refresh_token").await;
    let admin = |m: Method, p: &str| {
        http.request(m, format!("{base}{p}"))
            .bearer_auth(ADMIN_TOKEN)
    };
    for kind in ["pat", "password"] {
        let mut body = crate::helpers::setup::input(&sim, kind, kind);
        body["webhook_secret"] = "orchestrator-webhook-secret-77".into();
        let res = admin(Method::POST, "/connections")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
        let id = res.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let res = admin(Method::POST, &format!("/connections/{id}/test"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.json::<Value>().await.unwrap()["ok"], true);
    }
    let callback: Value = admin(Method::POST, "/processes/Invoices/callback-secret")
        .send_json()
        .await;
    // Wrong credentials are logged as refusals, never echoed.
    let res = http
        .post(format!("{base}/hooks/crm"))
        .header("x-crm-token", "a-wrong-token-that-was-guessed")
        .json(&json!({"vendor": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let load = Load::start(vec![base.clone()], key.clone(), 2);
    load.until(30).await;
    // The access token expires: the refresh token rotates.
    sim.control(Method::POST, "/tokens/expire", None).await;
    let n = load.count();
    load.until(n + 30).await;
    let acknowledged = load.stop().await;
    let pool = sqlx::PgPool::connect(db.expose_secret()).await.unwrap();
    every_job_started_once(&pool, &sim, &acknowledged).await;
    let _ = gw.signal(nix::sys::signal::Signal::SIGTERM).await;

    let (access, refresh): (Vec<String>, Vec<String>) = sim.sim.with_state(|s| {
        (
            s.tokens.keys().cloned().collect(),
            s.refresh_tokens.keys().cloned().collect(),
        )
    });
    assert!(access.len() >= 3 && !refresh.is_empty());
    let db_password = reqwest::Url::parse(db.expose_secret())
        .unwrap()
        .password()
        .unwrap()
        .to_string();
    let encryption_key = keys.expose_secret().split_once(':').unwrap().1.to_string();
    let mut secrets: Vec<String> = vec![
        ADMIN_TOKEN.into(),
        key.clone(),
        HOOK_TOKEN.into(),
        "a-wrong-token-that-was-guessed".into(),
        "sim-app-secret".into(),
        "sim-refresh-token-0".into(),
        crate::helpers::setup::PAT.into(),
        "sim-password".into(),
        "orchestrator-webhook-secret-77".into(),
        callback["callback_secret"].as_str().unwrap().into(),
        db_password,
        encryption_key,
    ];
    secrets.extend(access);
    secrets.extend(refresh);

    let logs = logs.lock().unwrap().join("\n");
    assert!(
        logs.lines().count() > 100,
        "too few log lines to mean anything"
    );
    let bins = uipath_gateway::embedded_db::PgBinaries::find(None).unwrap();
    let dump = std::process::Command::new(bins.program("pg_dump"))
        .arg("--dbname")
        .arg(db.expose_secret())
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains("COPY public.jobs"), "the dump has no data");
    for s in &secrets {
        assert!(
            !logs.contains(s.as_str()),
            "a secret ({}...) is in the logs",
            &s[..4]
        );
        assert!(
            !dump.contains(s.as_str()),
            "a secret ({}...) is in the database dump",
            &s[..4]
        );
    }
}

/// The scenario of a one-minute outage at scale, compressed to what a test run holds:
/// four clients post for ~30 s (each with its own job); 10 s in, StartJobs answers 503
/// with `Retry-After: 2` for 10 s, then every `/odata/` call fails half the time with
/// 500, a StartJobs creates its job and answers 502, and calls take 100 ms more, for
/// 10 s; then Orchestrator heals. Thousands of jobs are accepted: none is lost, started
/// twice or dead-lettered, the ledger's Orchestrator ids are Orchestrator's, the
/// backlog drains within a minute of healing, and the tenant sees no 429.
#[tokio::test]
async fn an_outage_at_scale_loses_none_starts_none_twice_and_dead_letters_none() {
    let sim = crate::helpers::sim::spawn_sim(|_| {}).await;
    let (_, db) = crate::helpers::db::server().fresh_database().await;
    let keys = uipath_gateway::crypto::KeyRing::generate_spec("scale");
    let app = live_app(db, keys, |s| {
        s.orchestrator.timeout_ms = 2_000;
        s.database.max_connections = 20;
    })
    .await;
    let key = provision(&app.client, &app.address, &sim, "client_credentials").await;
    let load = Load::start(vec![app.address.clone()], key.clone(), 4);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let before = load.count();
    sim.control(
        Method::PUT,
        "/faults",
        Some(json!({"errors": [{"status": 503, "path_contains": "StartJobs", "retry_after": 2}]})),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    sim.control(
        Method::PUT,
        "/faults",
        Some(json!({"latency_ms": 100, "start_then_502": 200,
            "errors": [{"status": 500, "path_contains": "/odata/", "rate": 0.5}]})),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let counters: Value = sim.read("/counters").await;
    let limited_before_heal = counters["rate_limited"].as_u64().unwrap();
    sim.control(Method::DELETE, "/faults", None).await;
    let healed = Instant::now();
    let during = load.count();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acknowledged = load.stop().await;
    eprintln!(
        "accepted {} ({before} before the outage, {} during it)",
        acknowledged.len(),
        during - before
    );
    assert!(
        acknowledged.len() >= 2_000,
        "only {} jobs",
        acknowledged.len()
    );
    every_job_started_once(&app.pool, &sim, &acknowledged).await;
    let drained = healed.elapsed();
    let (dead, unknown, queued): (i64, i64, i64) = sqlx::query_as(
        "select count(*) filter (where state = 'dead'), count(*) filter (where state = 'unknown'), \
         count(*) filter (where state = 'queued') from jobs",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let counters: Value = sim.read("/counters").await;
    let limited_after_heal = counters["rate_limited"].as_u64().unwrap() - limited_before_heal;
    let reconciled: i64 =
        sqlx::query_scalar("select count(distinct job_id) from job_events where state = 'unknown'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    eprintln!(
        "dead {dead}, unknown {unknown}, queued {queued}, looked up by Reference {reconciled}, \
         all started {drained:?} after healing, 429s after healing {limited_after_heal}"
    );
    assert_eq!((dead, unknown, queued), (0, 0, 0));
    assert!(
        reconciled > 0,
        "some starts were ambiguous (502 after create)"
    );
    assert_eq!(limited_after_heal, 0, "no 429 after healing");
    assert!(drained < Duration::from_secs(60), "{drained:?} to drain");
    // The ledger's Orchestrator id of every job is the id of Orchestrator's job with its
    // Reference.
    let jobs: Vec<Value> = sim.read("/jobs").await;
    let by_reference: HashMap<String, i64> = jobs
        .iter()
        .map(|j| {
            (
                j["Reference"].as_str().unwrap_or_default().to_string(),
                j["Id"].as_i64().unwrap(),
            )
        })
        .collect();
    let ledger: Vec<(String, i64)> =
        sqlx::query_as("select reference, orchestrator_job_id from jobs where id = any($1)")
            .bind(&acknowledged)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let wrong: Vec<_> = ledger
        .iter()
        .filter(|(r, id)| by_reference.get(r) != Some(id))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} jobs disagree: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
}

/// `/run` answers as soon as Orchestrator took the job: its start mark is written after
/// the answer, in the ledger's next group commit, so the answer path holds one durable
/// commit. A mark that is never written (refused here by a trigger, as a crash right after
/// the answer would lose it) leaves the job to its lease: it turns `unknown`, is looked up
/// by its Reference and adopted with the id the caller was given, never started twice.
#[tokio::test]
async fn a_start_mark_lost_after_the_answer_is_recovered_by_reference_and_nothing_starts_twice() {
    let sim = crate::helpers::sim::spawn_sim(|_| {}).await;
    let (_, db) = crate::helpers::db::server().fresh_database().await;
    let keys = uipath_gateway::crypto::KeyRing::generate_spec("marks");
    let app = live_app(db, keys, |s| s.dispatch.lease_secs = 2).await;
    let key = provision(&app.client, &app.address, &sim, "client_credentials").await;
    for sql in [
        "create function lose_marks() returns trigger language plpgsql as \
         $$ begin raise exception 'the start mark is lost'; end $$",
        "create trigger lose_marks before update of orchestrator_job_id on jobs for each row \
         when (new.orchestrator_job_id is not null) execute function lose_marks()",
    ] {
        sqlx::query(sql).execute(&app.pool).await.unwrap();
    }
    let mut answered = HashMap::new();
    for n in 0..20 {
        let res = app
            .client
            .post(app.url("/run/Invoices"))
            .bearer_auth(&key)
            .json(&json!({"in_Vendor": "marks", "in_Amount": n}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        let job: Value = res.json().await.unwrap();
        assert_eq!(job["state"], "pending", "answered as started: {job}");
        let id: Uuid = job["id"].as_str().unwrap().parse().unwrap();
        answered.insert(id, job["orchestrator_job_id"].as_i64().unwrap());
    }
    let ids: Vec<Uuid> = answered.keys().copied().collect();
    assert_eq!(
        sim.read::<Vec<Value>>("/jobs").await.len(),
        20,
        "Orchestrator took all 20"
    );
    let marked: i64 = sqlx::query_scalar(
        "select count(*) from jobs where id = any($1) and orchestrator_job_id is not null",
    )
    .bind(&ids)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(marked, 0, "every mark was refused");

    sqlx::query("drop trigger lose_marks on jobs")
        .execute(&app.pool)
        .await
        .unwrap();
    every_job_started_once(&app.pool, &sim, &ids).await;
    let rows: Vec<(Uuid, i64)> =
        sqlx::query_as("select id, orchestrator_job_id from jobs where id = any($1)")
            .bind(&ids)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    for (id, orchestrator_job_id) in rows {
        assert_eq!(
            answered[&id], orchestrator_job_id,
            "the job the caller was told of"
        );
    }
    let adopted: i64 = sqlx::query_scalar(
        "select count(distinct job_id) from job_events where job_id = any($1) \
         and detail->>'how' like 'found by its Reference%'",
    )
    .bind(&ids)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(adopted, 20, "each was adopted by its Reference");
}
