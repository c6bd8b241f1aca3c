//! Hostile input against the real server: NUL bytes and invalid UTF-8 in every text field
//! of every JSON body, deeply nested and oversized bodies, huge headers, and path
//! traversal in names and slugs. Nothing may answer 5xx, every refusal is problem+json,
//! and nothing is half-written.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::helpers::db;
use crate::helpers::setup::setup_on;
use crate::helpers::sim::{Sim, spawn_sim};

/// Every path to a string leaf of `v`.
fn string_paths(v: &Value, at: Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::String(_) => out.push(at),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let mut p = at.clone();
                p.push(i.to_string());
                string_paths(item, p, out);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                let mut p = at.clone();
                p.push(k.clone());
                string_paths(item, p, out);
            }
        }
        _ => {}
    }
}

fn at<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(v, |v, k| match v {
        Value::Array(items) => &mut items[k.parse::<usize>().unwrap()],
        Value::Object(map) => map.get_mut(k).unwrap(),
        _ => unreachable!(),
    })
}

const MARK: &str = "INVALID-UTF8-HERE";

/// The valid bodies of every JSON endpoint, with where to send them.
fn bodies(sim: &Sim) -> Vec<(Method, String, Value, bool)> {
    let mut conn = crate::helpers::setup::input(sim, "client_credentials", "hostile");
    conn["webhook_secret"] = "hostile-webhook-secret".into();
    vec![
        (Method::POST, "/connections".into(), conn, true),
        (
            Method::POST,
            "/processes".into(),
            json!({"name": "Hostile", "connection": "sim", "folder": "Finance/AP",
                "release": {"process_key": "InvoiceBot"}, "default_input": {"in_Vendor": "x"},
                "callback_url": "https://example.com/cb"}),
            true,
        ),
        (
            Method::POST,
            "/api-keys".into(),
            json!({"name": "hostile", "scopes": ["run:Invoices"]}),
            true,
        ),
        (
            Method::POST,
            "/webhooks".into(),
            json!({"slug": "hostile", "process": "Invoices", "scheme": "token",
                "config": {"header": "x-token", "prefix": "Bearer "}, "secrets": ["hostile-token"],
                "filter": "body.a == 'b'", "mapping": {"in_Vendor": "body.vendor"}}),
            true,
        ),
        (
            Method::POST,
            "/run/Invoices".into(),
            json!({"in_Vendor": "ACME", "in_Amount": 3}),
            false,
        ),
    ]
}

async fn send(
    app: &TestApp,
    key: &str,
    method: &Method,
    path: &str,
    admin: bool,
    body: Vec<u8>,
) -> reqwest::Response {
    let req = app
        .client
        .request(method.clone(), app.url(path))
        .header("content-type", "application/json")
        .body(body);
    let req = if admin {
        req.bearer_auth(crate::helpers::ADMIN_TOKEN)
    } else {
        req.bearer_auth(key)
    };
    req.send().await.unwrap()
}

async fn refused_cleanly(res: reqwest::Response, what: &str) -> u16 {
    let status = res.status().as_u16();
    assert!(
        status < 500,
        "{what}: {status} {}",
        res.text().await.unwrap()
    );
    if status >= 400 {
        assert_eq!(
            res.headers()["content-type"],
            "application/problem+json",
            "{what}"
        );
        let p: Value = res.json().await.unwrap();
        assert!(p["code"].is_string(), "{what}: {p}");
        // Answered in our own words, never PostgreSQL's.
        let detail = p["detail"].as_str().unwrap_or_default();
        for theirs in [
            "UTF8",
            "byte sequence",
            "0x00",
            "escape sequence",
            "SQLSTATE",
        ] {
            assert!(!detail.contains(theirs), "{what}: {detail}");
        }
    }
    status
}

async fn counts(app: &TestApp) -> Vec<i64> {
    let row: (i64, i64, i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from connections), (select count(*) from processes),
                (select count(*) from api_keys), (select count(*) from webhooks),
                (select count(*) from jobs)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    vec![row.0, row.1, row.2, row.3, row.4]
}

#[tokio::test]
async fn nul_bytes_and_invalid_utf8_in_every_text_field_are_refused_cleanly() {
    let sim = spawn_sim(|_| {}).await;
    let (_, url) = db::server().fresh_database().await;
    let (app, key) = setup_on(&sim, url, |s| s.rate_limits.api_key_per_second = 0).await;
    let before = counts(&app).await;
    let mut tried = 0;
    for (method, path, body, admin) in bodies(&sim) {
        let mut paths = Vec::new();
        string_paths(&body, vec![], &mut paths);
        assert!(!paths.is_empty());
        for p in &paths {
            // A NUL byte, escaped as JSON allows.
            let mut nul = body.clone();
            let leaf = at(&mut nul, p);
            *leaf = Value::String(format!("a\u{0}b{}", leaf.as_str().unwrap()));
            let res = send(
                &app,
                &key,
                &method,
                &path,
                admin,
                serde_json::to_vec(&nul).unwrap(),
            )
            .await;
            let status = refused_cleanly(res, &format!("NUL in {path} {p:?}")).await;
            assert!(status >= 400, "NUL in {path} {p:?} was accepted ({status})");
            // Bytes that are not UTF-8, raw in the body.
            let mut bad = body.clone();
            *at(&mut bad, p) = Value::String(MARK.into());
            let text = serde_json::to_string(&bad).unwrap();
            let mut bytes = Vec::new();
            let (head, tail) = text.split_once(MARK).unwrap();
            bytes.extend_from_slice(head.as_bytes());
            bytes.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
            bytes.extend_from_slice(tail.as_bytes());
            let res = send(&app, &key, &method, &path, admin, bytes).await;
            let status = refused_cleanly(res, &format!("invalid UTF-8 in {path} {p:?}")).await;
            assert_eq!(status, 400, "invalid UTF-8 in {path} {p:?}");
            tried += 2;
        }
    }
    assert!(tried > 40, "only {tried} cases");
    assert_eq!(
        counts(&app).await,
        before,
        "a refused request wrote something"
    );

    // In path segments and query strings too.
    for path in [
        "/processes/a%00b",
        "/processes/%FF%FE",
        "/webhooks/a%00b",
        "/hooks/%FF%FE",
        "/run/a%00b",
        "/jobs?process=a%00b",
        "/jobs?reference=%FF",
        "/audit?actor=a%00b",
    ] {
        for method in [Method::GET, Method::POST] {
            let res = send(
                &app,
                &key,
                &method,
                path,
                path.starts_with("/processes")
                    || path.starts_with("/webhooks")
                    || path.starts_with("/audit"),
                b"{}".to_vec(),
            )
            .await;
            refused_cleanly(res, &format!("{method} {path}")).await;
        }
    }
}

#[tokio::test]
async fn deep_big_and_strange_requests_get_a_problem_never_a_5xx() {
    let sim = spawn_sim(|_| {}).await;
    let (_, url) = db::server().fresh_database().await;
    let (app, key) = setup_on(&sim, url, |s| s.rate_limits.api_key_per_second = 0).await;
    let res = app
        .admin(Method::POST, "/webhooks")
        .json(
            &json!({"slug": "open", "process": "Invoices", "scheme": "none", "public": true,
            "mapping": {"in_Vendor": "body.a.b.c", "in_Amount": "body.n"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let before = counts(&app).await;

    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes();
    let nested_obj = format!("{}1{}", "{\"a\":".repeat(5_000), "}".repeat(5_000)).into_bytes();
    let ten_mb = {
        let mut v = b"{\"in_Vendor\": \"".to_vec();
        v.extend(std::iter::repeat_n(b'x', 10 * 1024 * 1024));
        v.extend_from_slice(b"\"}");
        v
    };
    for (path, admin) in [
        ("/run/Invoices", false),
        ("/hooks/open", false),
        ("/processes", true),
        ("/connections", true),
        ("/webhooks", true),
        ("/api-keys", true),
    ] {
        for (what, body) in [("deep array", &deep), ("deep object", &nested_obj)] {
            let res = send(&app, &key, &Method::POST, path, admin, body.clone()).await;
            let status = refused_cleanly(res, &format!("{what} to {path}")).await;
            // A public hook takes any body as text; everything else refuses it.
            if path != "/hooks/open" {
                assert_eq!(status, 400, "{what} to {path}");
            }
        }
        let res = send(&app, &key, &Method::POST, path, admin, ten_mb.clone()).await;
        assert_eq!(refused_cleanly(res, &format!("10 MB to {path}")).await, 413);
    }

    // Huge header values: a 100 KB credential or signature is refused as wrong; a head
    // past the server's 128 KiB buffer gets 431.
    let huge = "a".repeat(100 * 1024);
    for (path, header) in [
        ("/run/Invoices", "authorization"),
        ("/jobs", "x-api-key"),
        ("/processes", "authorization"),
        ("/hooks/open", "x-anything"),
        ("/healthz", "x-request-id"),
    ] {
        let res = app
            .client
            .post(app.url(path))
            .header(header, format!("Bearer {huge}"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        refused_cleanly(res, &format!("huge {header} to {path}")).await;
    }
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("x-filler", "a".repeat(200 * 1024))
        .send()
        .await;
    if let Ok(res) = res {
        assert_eq!(res.status(), 431);
    }
    // The server still answers after all that.
    assert_eq!(app.get("/healthz").await.status(), 200);
    // The public hook took its deep bodies as text (a job each), nothing else was written.
    let after = counts(&app).await;
    assert_eq!(after[..4], before[..4]);
}

#[tokio::test]
async fn path_traversal_in_names_and_slugs_goes_nowhere() {
    let sim = spawn_sim(|_| {}).await;
    let (_, url) = db::server().fresh_database().await;
    let (app, key) = setup_on(&sim, url, |_| {}).await;
    for name in [
        "../etc",
        "..",
        "a/b",
        "a\\b",
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e",
    ] {
        let res = app
            .admin(Method::POST, "/processes")
            .json(
                &json!({"name": name, "connection": "sim", "folder": "Finance/AP",
                "release": {"process_key": "InvoiceBot"}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(refused_cleanly(res, &format!("process {name}")).await, 422);
        let res = app
            .admin(Method::POST, "/webhooks")
            .json(&json!({"slug": name, "process": "Invoices", "scheme": "none", "public": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(refused_cleanly(res, &format!("webhook {name}")).await, 422);
    }
    for path in [
        "/run/..%2F..%2Fprocesses",
        "/run/%2e%2e/%2e%2e/connections",
        "/run/../processes",
        "/hooks/..%2F..%2Fetc%2Fpasswd",
        "/hooks/%2e%2e%2fwebhooks",
        "/processes/..%2Fconnections",
        "/webhooks/..%2F..%2Fapi-keys",
        "/jobs/..%2F..%2Fetc%2Fpasswd",
        "/docs/..%2F..%2F..%2Fetc%2Fpasswd",
        "/docs/../../../etc/passwd",
    ] {
        for method in [Method::GET, Method::POST] {
            let res = app
                .client
                .request(method.clone(), app.url(path))
                .bearer_auth(&key)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let text = res.text().await.unwrap();
            assert!(
                (400..500).contains(&status),
                "{method} {path}: {status} {text}"
            );
            assert!(!text.contains("root:"), "{method} {path} leaked a file");
        }
    }
    let jobs: i64 = sqlx::query_scalar("select count(*) from jobs")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 0);
}

#[tokio::test]
async fn extreme_numbers_in_arguments_survive_the_ledger() {
    let sim = spawn_sim(|_| {}).await;
    let (_, url) = db::server().fresh_database().await;
    let (app, key) = setup_on(&sim, url, |s| s.rate_limits.api_key_per_second = 0).await;
    let extremes = [
        "1.7976931348623157e308",
        "-1.7976931348623157e308",
        "2.2250738585072014e-308",
        "5e-324",
        "-1.3680386669195276e-255",
        "8.815744436760608e+224",
        "18446744073709551615",
        "-9223372036854775808",
        "1e-400",
        "0.1",
    ];
    // How PostgreSQL prints the largest double back: every digit, no exponent.
    let max_digits = format!("17976931348623157{}", "0".repeat(292));
    let extremes: Vec<&str> = extremes
        .iter()
        .copied()
        .chain([max_digits.as_str()])
        .collect();
    // Orchestrator cannot be asked for the release: the input is recorded unchecked.
    sim.control(
        Method::PUT,
        "/faults",
        Some(json!({"errors": [{"status": 503, "path_contains": "Releases"}]})),
    )
    .await;
    // Saved again while Orchestrator cannot answer: unverified, with no release cached.
    let res = app
        .admin(Method::PUT, "/processes/Invoices")
        .json(
            &json!({"name": "Invoices", "connection": "sim", "folder": "Finance/AP",
            "release": {"process_key": "InvoiceBot"}, "max_wait_seconds": 30}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["unverified"], true);
    for (i, n) in extremes.iter().enumerate() {
        let body =
            format!("{{\"in_Vendor\": \"x\", \"in_Amount\": {n}, \"extra\": {{\"n\": [{n}]}}}}");
        let res = app
            .client
            .post(app.url("/run/Invoices"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .header("idempotency-key", format!("extreme-{i}"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = refused_cleanly(res, &format!("run with {n}")).await;
        // The same request again: the first job comes back, read from the ledger.
        let again = app
            .client
            .post(app.url("/run/Invoices"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .header("idempotency-key", format!("extreme-{i}"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), status, "repeat with {n}");
        let job: Value = again.json().await.unwrap();
        let res = app
            .client
            .get(app.url(&format!("/jobs/{}", job["id"].as_str().unwrap())))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "reading back {n}");
        assert_eq!(status, 202, "{n}");
    }
    let res = app
        .client
        .get(app.url("/jobs?limit=100"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    refused_cleanly(res, "listing").await;
}

#[tokio::test]
async fn a_process_that_webhooks_start_cannot_be_deleted_from_under_them() {
    let sim = spawn_sim(|_| {}).await;
    let (_, url) = db::server().fresh_database().await;
    let (app, _) = setup_on(&sim, url, |_| {}).await;
    let res = app
        .admin(Method::POST, "/webhooks")
        .json(&json!({"slug": "open", "process": "Invoices", "scheme": "none", "public": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = app
        .admin(Method::DELETE, "/processes/Invoices")
        .send()
        .await
        .unwrap();
    assert_eq!(refused_cleanly(res, "delete").await, 409);
    let res = app
        .admin(Method::DELETE, "/webhooks/open")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let res = app
        .admin(Method::DELETE, "/processes/Invoices")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
}
