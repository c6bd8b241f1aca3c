//! Inbound webhooks: deliveries signed exactly as each provider signs them start a job
//! with the mapped arguments; tampered, wrongly keyed, stale and unsigned ones are
//! refused; repeats, filtered-out deliveries and Slack challenges start nothing.

use base64::Engine;
use hmac::{KeyInit, Mac};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::SendJson;
use crate::helpers::TestApp;
use crate::helpers::db;
use crate::helpers::setup::setup_on;
use crate::helpers::sim::{Sim, spawn_sim};

const SECRET: &str = "provider-secret-1";
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn mac(secret: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Headers as each provider signs `body` with `secret` (`id` is the delivery id).
fn signed(scheme: &str, secret: &str, body: &str, id: &str, ts: i64) -> Vec<(String, String)> {
    let b = body.as_bytes();
    let h = |pairs: &[(&str, String)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<Vec<_>>()
    };
    match scheme {
        "github" => h(&[
            (
                "X-Hub-Signature-256",
                format!("sha256={}", hex::encode(mac(secret.as_bytes(), &[b]))),
            ),
            ("X-GitHub-Delivery", id.into()),
            ("X-GitHub-Event", "pull_request".into()),
        ]),
        "stripe" => h(&[(
            "Stripe-Signature",
            format!(
                "t={ts},v1={}",
                hex::encode(mac(secret.as_bytes(), &[format!("{ts}.").as_bytes(), b]))
            ),
        )]),
        "slack" => h(&[
            ("X-Slack-Request-Timestamp", ts.to_string()),
            (
                "X-Slack-Signature",
                format!(
                    "v0={}",
                    hex::encode(mac(secret.as_bytes(), &[format!("v0:{ts}:").as_bytes(), b]))
                ),
            ),
        ]),
        "shopify" => h(&[
            ("X-Shopify-Hmac-SHA256", b64(&mac(secret.as_bytes(), &[b]))),
            ("X-Shopify-Webhook-Id", id.into()),
        ]),
        "standard_webhooks" => {
            let key = base64::engine::general_purpose::STANDARD
                .decode(secret.strip_prefix("whsec_").unwrap())
                .unwrap();
            h(&[
                ("webhook-id", id.into()),
                ("webhook-timestamp", ts.to_string()),
                (
                    "webhook-signature",
                    format!(
                        "v1,{}",
                        b64(&mac(&key, &[format!("{id}.{ts}.").as_bytes(), b]))
                    ),
                ),
            ])
        }
        "uipath" => h(&[("X-UiPath-Signature", b64(&mac(secret.as_bytes(), &[b])))]),
        "hmac" => h(&[(
            "X-Acme-Signature",
            format!("sha256={}", hex::encode(mac(secret.as_bytes(), &[b]))),
        )]),
        "token" => h(&[("X-Acme-Token", secret.into())]),
        _ => Vec::new(),
    }
}

async fn post(
    app: &TestApp,
    slug: &str,
    body: &str,
    headers: &[(String, String)],
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url(&format!("/hooks/{slug}")))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req.send().await.unwrap()
}

async fn define(app: &TestApp, hook: Value) -> reqwest::Response {
    app.admin(Method::POST, "/webhooks")
        .json(&hook)
        .send()
        .await
        .unwrap()
}

async fn jobs_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from jobs")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

async fn job_input(app: &TestApp, id: &str) -> Value {
    sqlx::query_scalar("select input from jobs where id = $1::uuid")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

async fn app() -> (TestApp, Sim) {
    let sim = spawn_sim(|s| s.manual_jobs = true).await;
    let (_, url) = db::server().fresh_database().await;
    let (app, _) = setup_on(&sim, url, |_| {}).await;
    (app, sim)
}

fn definition(scheme: &str, slug: &str) -> Value {
    let secret = if scheme == "standard_webhooks" {
        WHSEC
    } else {
        SECRET
    };
    let mut d = json!({
        "slug": slug, "process": "Invoices", "scheme": scheme, "secrets": [secret],
        "mapping": {"in_Vendor": "body.vendor.name", "in_Amount": "body.amount"},
    });
    match scheme {
        "hmac" => d["config"] = json!({"header": "X-Acme-Signature", "prefix": "sha256="}),
        "token" => d["config"] = json!({"header": "X-Acme-Token"}),
        "none" => {
            d["public"] = true.into();
            d.as_object_mut().unwrap().remove("secrets");
        }
        _ => {}
    }
    d
}

#[tokio::test]
async fn every_scheme_accepts_a_correctly_signed_delivery_and_maps_the_arguments() {
    let (app, _sim) = app().await;
    for scheme in [
        "github",
        "stripe",
        "slack",
        "shopify",
        "standard_webhooks",
        "uipath",
        "hmac",
        "token",
        "none",
    ] {
        let slug = format!("in-{scheme}");
        let res = define(&app, definition(scheme, &slug)).await;
        assert_eq!(res.status(), 201, "{scheme}: {}", res.text().await.unwrap());
        let body = json!({"id": format!("evt_{scheme}"), "event_id": format!("Ev{scheme}"), "EventId": scheme,
            "vendor": {"name": format!("ACME {scheme}")}, "amount": 12.5})
        .to_string();
        let secret = if scheme == "standard_webhooks" {
            WHSEC
        } else {
            SECRET
        };
        let res = post(
            &app,
            &slug,
            &body,
            &signed(scheme, secret, &body, &format!("d-{scheme}"), now()),
        )
        .await;
        assert_eq!(res.status(), 202, "{scheme}");
        let receipt: Value = res.json().await.unwrap();
        assert_eq!(receipt["status"], "accepted");
        let input = job_input(&app, receipt["job_id"].as_str().unwrap()).await;
        assert_eq!(input["in_Vendor"], format!("ACME {scheme}"), "{scheme}");
        assert_eq!(input["in_Amount"], 12.5);
    }
}

#[tokio::test]
async fn tampered_wrongly_keyed_stale_and_unsigned_deliveries_are_refused() {
    let (app, _sim) = app().await;
    for scheme in [
        "github",
        "stripe",
        "slack",
        "shopify",
        "standard_webhooks",
        "uipath",
        "hmac",
        "token",
    ] {
        define(&app, definition(scheme, scheme)).await;
        let secret = if scheme == "standard_webhooks" {
            WHSEC
        } else {
            SECRET
        };
        let body = json!({"vendor": {"name": "ACME"}, "amount": 1}).to_string();
        let good = signed(scheme, secret, &body, "d1", now());

        // Missing headers.
        let res = post(&app, scheme, &body, &[]).await;
        assert_eq!(res.status(), 401, "{scheme}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let p: Value = res.json().await.unwrap();
        assert!(
            matches!(
                p["code"].as_str(),
                Some("signature_missing" | "timestamp_missing")
            ),
            "{scheme}: {p}"
        );
        // A tampered body.
        if scheme != "token" {
            let tampered = body.replace("ACME", "EVIL");
            let res = post(&app, scheme, &tampered, &good).await;
            assert_eq!(res.status(), 401, "{scheme}");
            let p: Value = res.json().await.unwrap();
            assert_eq!(p["code"], "signature_invalid", "{scheme}: {p}");
            assert!(
                !p["detail"]
                    .as_str()
                    .unwrap()
                    .contains(&hex::encode(mac(secret.as_bytes(), &[tampered.as_bytes()])))
            );
        }
        // The wrong secret.
        let wrong = if scheme == "standard_webhooks" {
            "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string()
        } else {
            "not-the-secret".to_string()
        };
        let res = post(
            &app,
            scheme,
            &body,
            &signed(scheme, &wrong, &body, "d1", now()),
        )
        .await;
        assert_eq!(res.status(), 401, "{scheme}");
    }
    // A stale timestamp (a replay ten minutes later) is refused where the scheme has one.
    for scheme in ["stripe", "slack", "standard_webhooks"] {
        let secret = if scheme == "standard_webhooks" {
            WHSEC
        } else {
            SECRET
        };
        let body = json!({"vendor": {"name": "ACME"}, "amount": 1}).to_string();
        let res = post(
            &app,
            scheme,
            &body,
            &signed(scheme, secret, &body, "d2", now() - 600),
        )
        .await;
        assert_eq!(res.status(), 401, "{scheme}");
        let p: Value = res.json().await.unwrap();
        assert_eq!(p["code"], "timestamp_outside_window", "{scheme}: {p}");
    }
    assert_eq!(jobs_count(&app).await, 0, "nothing started");
    let listed = app.admin_get("/webhooks/github/deliveries").await;
    let items = listed["items"].as_array().unwrap();
    assert!(
        items
            .iter()
            .all(|d| d["outcome"] == "refused" && d["verification"] == "failed")
    );
    assert!(
        items[0]["verification_detail"]
            .as_str()
            .unwrap()
            .contains("wrong secret")
    );
}

#[tokio::test]
async fn a_repeated_delivery_starts_nothing_and_names_the_first_job() {
    let (app, _sim) = app().await;
    define(&app, definition("github", "gh")).await;
    let body = json!({"vendor": {"name": "ACME"}, "amount": 3}).to_string();
    let headers = signed(
        "github",
        SECRET,
        &body,
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        now(),
    );
    let first: Value = post(&app, "gh", &body, &headers)
        .await
        .json()
        .await
        .unwrap();
    let res = post(&app, "gh", &body, &headers).await;
    assert_eq!(res.status(), 200);
    let again: Value = res.json().await.unwrap();
    assert_eq!(again["status"], "duplicate");
    assert_eq!(again["job_id"], first["job_id"]);
    assert_eq!(jobs_count(&app).await, 1);
    // Another body is another job.
    let body = json!({"vendor": {"name": "ACME"}, "amount": 4}).to_string();
    let other = signed("github", SECRET, &body, "other-delivery", now());
    assert_eq!(post(&app, "gh", &body, &other).await.status(), 202);
    assert_eq!(jobs_count(&app).await, 2);
}

#[tokio::test]
async fn a_captured_delivery_sent_again_with_a_new_id_starts_nothing_where_no_timestamp_is_signed()
{
    let (app, _sim) = app().await;
    // (Stripe, Slack, Standard Webhooks and `hmac` with a timestamp sign a timestamp: a
    // captured delivery is refused once outside the window, tested with each scheme.)
    for scheme in ["github", "shopify", "uipath", "hmac"] {
        let slug = format!("replay-{scheme}");
        assert_eq!(define(&app, definition(scheme, &slug)).await.status(), 201);
        let body = json!({"vendor": {"name": scheme}, "amount": 5}).to_string();
        let before = jobs_count(&app).await;
        let headers = signed(scheme, SECRET, &body, "first-id", now());
        assert_eq!(
            post(&app, &slug, &body, &headers).await.status(),
            202,
            "{scheme}"
        );
        // The attacker has the signed bytes; they change the id header, or drop it.
        let mut replay = signed(scheme, SECRET, &body, "forged-id", now());
        let res = post(&app, &slug, &body, &replay).await;
        let status = res.status();
        let answer: Value = res.json().await.unwrap();
        assert_eq!(status, 200, "{scheme}: {answer}");
        assert_eq!(answer["status"], "duplicate", "{scheme}");
        assert_eq!(
            jobs_count(&app).await,
            before + 1,
            "{scheme}: started again"
        );
        replay.retain(|(k, _)| {
            !matches!(
                k.to_ascii_lowercase().as_str(),
                "x-github-delivery" | "x-shopify-webhook-id"
            )
        });
        if matches!(scheme, "github" | "shopify") {
            let res = post(&app, &slug, &body, &replay).await;
            assert_eq!(res.status(), 401, "{scheme} without its delivery id");
            let p: Value = res.json().await.unwrap();
            assert_eq!(p["code"], "delivery_id_missing");
        }
    }
}

#[tokio::test]
async fn a_filter_decides_and_a_failing_expression_is_recorded_not_a_500() {
    let (app, _sim) = app().await;
    let mut d = definition("github", "prs");
    d["filter"] = json!("headers.\"x-github-event\" == 'pull_request' && body.action == 'opened'");
    d["mapping"] =
        json!({"in_Vendor": "body.repository.full_name", "in_Amount": "body.pull_request.number"});
    assert_eq!(define(&app, d).await.status(), 201);

    let opened = json!({"action": "opened", "pull_request": {"number": 42}, "repository": {"full_name": "acme/app"}}).to_string();
    let res = post(
        &app,
        "prs",
        &opened,
        &signed("github", SECRET, &opened, "a", now()),
    )
    .await;
    assert_eq!(res.status(), 202);
    let job = res.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        job_input(&app, &job).await,
        json!({"in_Vendor": "acme/app", "in_Amount": 42})
    );

    let closed = opened.replace("opened", "closed");
    let res = post(
        &app,
        "prs",
        &closed,
        &signed("github", SECRET, &closed, "b", now()),
    )
    .await;
    assert_eq!(res.status(), 200);
    let r: Value = res.json().await.unwrap();
    assert_eq!(r["status"], "filtered");
    assert!(r["detail"].as_str().unwrap().contains("filter"), "{r}");
    assert_eq!(
        jobs_count(&app).await,
        1,
        "the filtered delivery started nothing"
    );

    // An expression that fails on this delivery (abs() of a string).
    let mut d = definition("github", "broken");
    d["mapping"] = json!({"in_Vendor": "'acme'", "in_Amount": "abs(body.amount)"});
    assert_eq!(define(&app, d).await.status(), 201);
    let odd = json!({"amount": "twelve"}).to_string();
    let res = post(
        &app,
        "broken",
        &odd,
        &signed("github", SECRET, &odd, "c", now()),
    )
    .await;
    assert_eq!(res.status(), 422);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["code"], "mapping_failed", "{p}");
    // In our words, on one line, naming the argument and the expression.
    assert_eq!(p["errors"][0]["field"], "mapping.in_Amount", "{p}");
    let detail = p["detail"].as_str().unwrap();
    assert!(!detail.contains('\n') && !detail.contains('^'), "{detail}");
    assert!(
        detail.contains("`abs(body.amount)`")
            && detail.contains("got string as argument 1, where it takes number"),
        "{detail}"
    );
    let listed = app.admin_get("/webhooks/broken/deliveries").await;
    assert_eq!(listed["items"][0]["outcome"], "failed");
    assert!(
        listed["items"][0]["error"]
            .as_str()
            .unwrap()
            .contains("in_Amount")
    );
    assert_eq!(jobs_count(&app).await, 1);
}

#[tokio::test]
async fn expressions_that_do_not_compile_are_refused_at_definition_time() {
    let (app, _sim) = app().await;
    let mut d = definition("github", "bad");
    d["filter"] = json!("body.action ==");
    d["mapping"] = json!({"in_Vendor": "body.[", "in_Amount": "body.amount"});
    let res = define(&app, d).await;
    assert_eq!(res.status(), 422);
    let p: Value = res.json().await.unwrap();
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"filter") && fields.contains(&"mapping.in_Vendor"),
        "{p}"
    );
    // It parses, but JMESPath has no `split`: every delivery would fail, so it is refused now.
    let mut d = definition("github", "nosplit");
    d["mapping"] = json!({"in_Vendor": "split(body.vendor, ' ')[0]"});
    let res = define(&app, d).await;
    assert_eq!(res.status(), 422);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["errors"][0]["field"], "mapping.in_Vendor", "{p}");
    assert!(
        p["errors"][0]["problem"]
            .as_str()
            .is_some_and(|m| m.contains("no function `split`")),
        "{p}"
    );
    // `none` needs `public: true`; other schemes need a secret.
    let res = define(
        &app,
        json!({"slug": "open", "process": "Invoices", "scheme": "none"}),
    )
    .await;
    assert_eq!(res.status(), 422);
    let res = define(
        &app,
        json!({"slug": "nosecret", "process": "Invoices", "scheme": "github"}),
    )
    .await;
    assert_eq!(res.status(), 422);
}

#[tokio::test]
async fn a_rotated_secret_works_while_the_old_one_is_still_listed() {
    let (app, _sim) = app().await;
    let mut d = definition("stripe", "pay");
    d["secrets"] = json!([SECRET, "provider-secret-2"]);
    define(&app, d.clone()).await;
    let body = json!({"id": "evt_1", "vendor": {"name": "A"}, "amount": 1}).to_string();
    assert_eq!(
        post(
            &app,
            "pay",
            &body,
            &signed("stripe", SECRET, &body, "", now())
        )
        .await
        .status(),
        202
    );
    let body2 = json!({"id": "evt_2", "vendor": {"name": "A"}, "amount": 1}).to_string();
    assert_eq!(
        post(
            &app,
            "pay",
            &body2,
            &signed("stripe", "provider-secret-2", &body2, "", now())
        )
        .await
        .status(),
        202
    );
    // The old one is removed: only the new one works.
    d["secrets"] = json!(["provider-secret-2"]);
    let view: Value = app
        .admin(Method::PUT, "/webhooks/pay")
        .json(&d)
        .send_json()
        .await;
    assert_eq!(view["secrets_count"], 1);
    assert!(
        !view.to_string().contains("provider-secret"),
        "secrets are never shown"
    );
    let body3 = json!({"id": "evt_3", "vendor": {"name": "A"}, "amount": 1}).to_string();
    assert_eq!(
        post(
            &app,
            "pay",
            &body3,
            &signed("stripe", SECRET, &body3, "", now())
        )
        .await
        .status(),
        401
    );
    assert_eq!(
        post(
            &app,
            "pay",
            &body3,
            &signed("stripe", "provider-secret-2", &body3, "", now())
        )
        .await
        .status(),
        202
    );
}

#[tokio::test]
async fn slack_challenges_and_github_pings_are_answered_without_a_job() {
    let (app, _sim) = app().await;
    define(&app, definition("slack", "slack")).await;
    define(&app, definition("github", "gh")).await;
    let challenge = json!({"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}).to_string();
    let res = post(
        &app,
        "slack",
        &challenge,
        &signed("slack", SECRET, &challenge, "", now()),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    );
    let ping = json!({"zen": "Keep it logically awesome.", "hook_id": 1}).to_string();
    let mut headers = signed("github", SECRET, &ping, "p1", now());
    headers.retain(|(k, _)| k != "X-GitHub-Event");
    headers.push(("X-GitHub-Event".into(), "ping".into()));
    let res = post(&app, "gh", &ping, &headers).await;
    assert_eq!(res.status(), 200);
    assert_eq!(jobs_count(&app).await, 0);
}

#[tokio::test]
async fn deliveries_are_recorded_and_an_admin_can_replay_one() {
    let (app, _sim) = app().await;
    define(&app, definition("shopify", "shop")).await;
    let body = json!({"vendor": {"name": "Shop"}, "amount": 9.5}).to_string();
    let first: Value = post(
        &app,
        "shop",
        &body,
        &signed("shopify", SECRET, &body, "w1", now()),
    )
    .await
    .json()
    .await
    .unwrap();
    let id = first["delivery_id"].as_str().unwrap();
    let d = app
        .admin_get(&format!("/webhooks/shop/deliveries/{id}"))
        .await;
    assert_eq!(d["verification"], "ok");
    assert_eq!(d["dedup"], "first");
    assert_eq!(d["delivery_key"], "w1");
    assert_eq!(d["mapped_input"]["in_Vendor"], "Shop");
    assert_eq!(d["job_id"], first["job_id"]);
    assert_eq!(d["request"]["body"], body);
    let res = app
        .admin(
            Method::POST,
            &format!("/webhooks/shop/deliveries/{id}/replay"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let replay: Value = res.json().await.unwrap();
    assert_ne!(replay["job_id"], first["job_id"], "a new job");
    assert_eq!(
        job_input(&app, replay["job_id"].as_str().unwrap()).await["in_Amount"],
        9.5
    );
    assert_eq!(jobs_count(&app).await, 2);
}

#[tokio::test]
async fn refused_deliveries_are_recorded_at_a_bounded_rate_and_purged_after_their_retention() {
    let sim = spawn_sim(|s| s.manual_jobs = true).await;
    let (_, url) = db::server().fresh_database().await;
    let (app, _) = setup_on(&sim, url, |s| {
        s.hooks.refused_per_minute = 5;
        s.rate_limits.hook_per_second = 0;
    })
    .await;
    assert_eq!(define(&app, definition("github", "gh")).await.status(), 201);
    let body = json!({"vendor": {"name": "ACME"}, "amount": 3}).to_string();
    for i in 0..40 {
        let mut headers = signed("github", "not-the-secret", &body, &format!("d-{i}"), now());
        if i % 2 == 0 {
            // Unsigned: refused from the headers alone.
            headers.retain(|(k, _)| k != "X-Hub-Signature-256");
        }
        let res = post(&app, "gh", &body, &headers).await;
        assert_eq!(res.status(), 401);
    }
    let stored = || async {
        sqlx::query_scalar::<_, i64>(
            "select count(*) from webhook_deliveries where outcome = 'refused'",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap()
    };
    assert_eq!(stored().await, 5, "40 refusals, 5 a minute recorded");
    assert_eq!(jobs_count(&app).await, 0);
    let retention = uipath_gateway::config::Settings::default()
        .hooks
        .refused_retention_secs;
    // Not yet old enough: kept.
    let purge = |secs| uipath_gateway::storage::hooks::purge_refused(&app.pool, secs, 1_000);
    assert_eq!(purge(retention).await.unwrap(), 0);
    sqlx::query(
        "update webhook_deliveries set received_at = now() - make_interval(secs => $1 + 60)",
    )
    .bind(retention as f64)
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(purge(retention).await.unwrap(), 5);
    assert_eq!(stored().await, 0);
}

#[tokio::test]
async fn svix_senders_are_standard_webhooks_under_their_own_header_names() {
    let (app, _sim) = app().await;
    assert_eq!(
        define(&app, definition("standard_webhooks", "svix"))
            .await
            .status(),
        201
    );
    let body = json!({"vendor": {"name": "ACME"}, "amount": 7}).to_string();
    // Signed as Svix signs (the Standard Webhooks scheme), sent as svix-* headers.
    let svix = |headers: Vec<(String, String)>| -> Vec<(String, String)> {
        headers
            .into_iter()
            .map(|(k, v)| (k.replace("webhook-", "svix-"), v))
            .collect()
    };
    let headers = svix(signed(
        "standard_webhooks",
        WHSEC,
        &body,
        "msg_svix_1",
        now(),
    ));
    assert!(headers.iter().any(|(k, _)| k == "svix-signature"));
    let res = post(&app, "svix", &body, &headers).await;
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
    // The svix-id is the dedup key: the same message again starts nothing.
    let again = post(&app, "svix", &body, &headers).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["status"], "duplicate");
    assert_eq!(jobs_count(&app).await, 1);
    // A wrong signature under svix names is refused, named as the sender sent it.
    let wrong = svix(signed(
        "standard_webhooks",
        "whsec_c2VjcmV0LXdyb25nLTAxMjM0NTY3",
        &body,
        "msg_svix_2",
        now(),
    ));
    let res = post(&app, "svix", &body, &wrong).await;
    assert_eq!(res.status(), 401);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["code"], "signature_invalid");
    assert!(
        p["detail"].as_str().unwrap().contains("svix-signature"),
        "{p}"
    );
}
