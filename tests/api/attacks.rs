//! Hostile callers against the real binary: stalled and trickled bodies, bodies to slugs
//! that do not exist, credentials checked before any body, too many connections from one
//! address. Memory stays bounded and every socket is closed within the body deadline.

use std::time::{Duration, Instant};

use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::SendJson;
use crate::helpers::{ADMIN_TOKEN, GatewayProcess, spawn_app_with};

/// The resident memory of a process, in kB.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Opens a connection and sends a request's head and the first `send` bytes of a body of
/// `length` bytes, then stops. None when the gateway closed the connection before all of
/// it was written (as it may, answering before reading).
async fn stall(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    length: usize,
    send: usize,
) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes()).await;
    let body = vec![b' '; send];
    // The gateway may answer (and close) before taking it all: that is the point.
    let _ = tokio::time::timeout(Duration::from_secs(2), s.write_all(&body)).await;
    s
}

/// Reads what the gateway answers until it closes the connection; the status line's
/// code (0 when it closed without answering) and when it closed.
async fn answer(mut s: TcpStream, limit: Duration) -> (u16, Instant) {
    let mut got = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        read.is_ok(),
        "a connection was still open after {limit:?}, having answered {text:?}"
    );
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, Instant::now())
}

/// What one wave of stalled bodies found.
#[derive(Debug)]
struct Wave {
    /// Answers to the held bodies, by status (0: closed without an answer).
    statuses: std::collections::BTreeMap<u16, usize>,
    /// RSS, in kB, half a second after the wave was sent (everything still held).
    rss_held: u64,
    /// From the last byte sent to the last connection closed.
    closed_within: Duration,
}

/// `known` bodies just under the webhook's limit to a known slug, each with a signature
/// header of the right shape (it passes the header check; a forged one fails only after
/// the body: the worst case), `unknown` of 1 MB to a slug that does not exist, and
/// `runs` of 190 kB to `/run` with a valid key; all stall before their last bytes.
async fn wave(
    gw: &GatewayProcess,
    key: &str,
    limit: usize,
    known: usize,
    unknown: usize,
    runs: usize,
) -> Wave {
    let sig = format!("sha256={}", "ab".repeat(32));
    let bearer = format!("Bearer {key}");
    let mut held = Vec::new();
    for i in 0..known {
        let id = format!("d-{i}");
        let headers = [
            ("X-Hub-Signature-256", sig.as_str()),
            ("X-GitHub-Delivery", &id),
        ];
        held.push(stall(gw.port, "/hooks/gh", &headers, limit - 1, limit - 1024).await);
    }
    for _ in 0..runs {
        held.push(
            stall(
                gw.port,
                "/run/Invoices",
                &[("Authorization", &bearer)],
                200_000,
                190_000,
            )
            .await,
        );
    }
    let mut gone = Vec::new();
    for _ in 0..unknown {
        gone.push(stall(gw.port, "/hooks/nope", &[], 1_000_000, 1_000_000).await);
    }
    let sent = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_held = rss_kb(gw.child.id().unwrap());
    // Every answer is awaited at once, each noting when its connection closed.
    let limit = Duration::from_secs(15);
    let held: Vec<_> = held
        .into_iter()
        .map(|s| tokio::spawn(answer(s, limit)))
        .collect();
    let gone: Vec<_> = gone
        .into_iter()
        .map(|s| tokio::spawn(answer(s, limit)))
        .collect();
    let mut statuses = std::collections::BTreeMap::new();
    let mut last = sent;
    for r in held {
        let (status, at) = r.await.unwrap();
        *statuses.entry(status).or_insert(0) += 1;
        last = last.max(at);
    }
    for r in gone {
        let (status, at) = r.await.unwrap();
        // 404 before the body is read; 429 (or a reset) past the address's connections.
        assert!(matches!(status, 404 | 429 | 0), "unknown slug: {status}");
        last = last.max(at);
    }
    Wave {
        statuses,
        rss_held,
        closed_within: last - sent,
    }
}

#[tokio::test]
async fn stalled_bodies_cost_bounded_memory_and_are_closed_within_the_deadline() {
    let sim = crate::helpers::sim::spawn_sim(|_| {}).await;
    let (_, db) = crate::helpers::db::server().fresh_database().await;
    let keys = uipath_gateway::crypto::KeyRing::generate_spec("attack");
    // Default limits: 64 connections and 4 MiB of bodies per address, 5 s per pause.
    let gw = GatewayProcess::serve_with(
        &[
            ("GATEWAY_PORT", "0".into()),
            ("DATABASE_URL", db.expose_secret().to_string()),
            ("GATEWAY_ENCRYPTION_KEYS", keys.expose_secret().to_string()),
            ("GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN.into()),
            ("GATEWAY_RATE_LIMITS__HOOK_PER_SECOND", "0".into()),
            ("GATEWAY_RATE_LIMITS__API_KEY_PER_SECOND", "0".into()),
        ],
        None,
    )
    .await;
    let http = uipath_gateway::orchestrator::http::builder()
        .build()
        .unwrap();
    let key =
        crate::helpers::setup::provision(&http, &gw.url(""), &sim, "client_credentials").await;
    let res = http
        .post(gw.url("/webhooks"))
        .bearer_auth(ADMIN_TOKEN)
        .json(
            &json!({"slug": "gh", "process": "Invoices", "scheme": "github", "secrets": ["s3cret"],
            "mapping": {"in_Vendor": "body.vendor", "in_Amount": "body.amount"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let hook: Value = res.json().await.unwrap();
    let limit = hook["max_body_bytes"].as_u64().unwrap() as usize;
    assert_eq!(limit, 256 * 1024, "the default per-hook limit");
    // An unsigned delivery to the known slug, and one over the webhook's limit, are
    // refused from their headers.
    let unsigned = stall(gw.port, "/hooks/gh", &[], 200_000, 200_000).await;
    assert_eq!(answer(unsigned, Duration::from_secs(5)).await.0, 401);
    let sig = format!("sha256={}", "ab".repeat(32));
    let large = [
        ("X-Hub-Signature-256", sig.as_str()),
        ("X-GitHub-Delivery", "big"),
    ];
    let large = stall(gw.port, "/hooks/gh", &large, 1_000_000, 1_000_000).await;
    assert_eq!(answer(large, Duration::from_secs(5)).await.0, 413);
    let res = http
        .post(gw.url("/run/Invoices"))
        .bearer_auth(&key)
        .json(&json!({"in_Vendor": "warm", "in_Amount": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let before = rss_kb(gw.child.id().unwrap());

    // The attack (60 stalled large bodies, 40 to a slug that does not exist, a
    // few on /run), then three times as many.
    let first = wave(&gw, &key, limit, 60, 40, 10).await;
    let second = wave(&gw, &key, limit, 180, 120, 30).await;
    let after = rss_kb(gw.child.id().unwrap());
    eprintln!(
        "stalled bodies: RSS {before} kB before; {} kB while the first wave (60 + 40 + 10) was held, \
         {} kB while the second (180 + 120 + 30) was; {after} kB after. First wave {first:?}; second {second:?}",
        first.rss_held, second.rss_held
    );
    for w in [&first, &second] {
        // Every held body is answered: 408 once it stalled, 429 past the address's share
        // of body bytes or connections (or the connection was closed before a byte was
        // read), and closed within the deadline (5 s, plus a second's linger).
        assert!(
            w.statuses.keys().all(|s| matches!(s, 408 | 429 | 0)),
            "{w:?}"
        );
        assert!(w.statuses.get(&408).is_some_and(|n| *n > 0), "{w:?}");
        assert!(w.closed_within < Duration::from_secs(5 + 2), "{w:?}");
    }
    // Bounded, and not linear in the number of sockets: each wave is held to about 64
    // connections' buffers (actix keeps up to 160 kB of unread data per connection for
    // the second it lingers after an early answer) and 4 MiB of bodies. Read in full, the
    // first wave's bodies alone would be 17 MB and the second's 52 MB; the allocator
    // keeps some of what a wave freed, so the second adds less than the first took.
    let grown = |w: &Wave| w.rss_held.saturating_sub(before) / 1024;
    assert!(
        grown(&first) < 32,
        "the first wave grew RSS by {} MB",
        grown(&first)
    );
    assert!(
        grown(&second) < 2 * grown(&first).max(16),
        "three times the sockets grew RSS by {} MB against {} MB",
        grown(&second),
        grown(&first)
    );
}

#[tokio::test]
async fn credentials_are_checked_before_the_body_is_read() {
    let app = spawn_app_with(|_| {}).await;
    let created: Value = app
        .admin(Method::POST, "/api-keys")
        .json(&json!({"name": "k", "scopes": ["run:*", "jobs:read"]}))
        .send_json()
        .await;
    let key = created["key"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap();
    let res = app
        .admin(Method::DELETE, &format!("/api-keys/{id}"))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    let send = |auth: Option<String>, path: &str, body: Vec<u8>| {
        let mut req = app
            .client
            .post(app.url(path))
            .header("content-type", "application/json")
            .body(body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send()
    };
    for (auth, path, body) in [
        // A revoked key and a malformed body: the key is what is wrong.
        (
            Some(format!("Bearer {key}")),
            "/run/Invoices",
            b"{not json".to_vec(),
        ),
        (
            Some(format!("Bearer {key}")),
            "/api-keys",
            b"{not json".to_vec(),
        ),
        // No credentials and a body over the limit.
        (None, "/run/Invoices", vec![b' '; 2 * 1024 * 1024]),
        (None, "/connections", b"[]".to_vec()),
        // A wrong admin token and a malformed body.
        (
            Some("Bearer not-the-admin-token".into()),
            "/processes",
            b"{".to_vec(),
        ),
    ] {
        let res = send(auth.clone(), path, body).await.unwrap();
        assert_eq!(res.status(), 401, "{auth:?} {path}");
        let p: Value = res.json().await.unwrap();
        assert_eq!(p["code"], "unauthorized", "{p}");
    }
    // Public routes and unknown paths are not asked for credentials.
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/nope").await.status(), 404);
}

#[tokio::test]
async fn one_address_holds_at_most_its_share_of_connections() {
    let app = spawn_app_with(|s| s.limits.connections_per_address = 8).await;
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    // The ninth is told why and closed before it sends anything.
    let ninth = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (status, _) = answer(ninth, Duration::from_secs(5)).await;
    assert_eq!(status, 429, "the ninth connection is refused and closed");
    // The held ones still work.
    let mut first = held.pop().unwrap();
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(answer(first, Duration::from_secs(5)).await.0, 200);
    // Once they close, new connections are served again.
    drop(held);
    crate::helpers::setup::eventually("the count to fall", Duration::from_secs(5), || async {
        app.get("/healthz").await.status() == 200
    })
    .await;
}
