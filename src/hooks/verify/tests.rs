//! Unit tests of `verify`.

use super::*;
use std::collections::HashMap;

fn check(
    scheme: &str,
    config: &SchemeConfig,
    headers: &[(&str, &str)],
    body: &[u8],
    secret: &str,
    now: i64,
) -> Result<(), Refusal> {
    let map: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    let header = move |n: &str| map.get(&n.to_ascii_lowercase()).cloned();
    let req = Request {
        header: &header,
        body,
        now,
    };
    crate::hooks::verifier(scheme, config)
        .unwrap()
        .verify(&req, &[secret.to_string()], 300)
}

#[test]
fn github_published_test_values() {
    // docs.github.com, "Validating webhook deliveries", "Testing the webhook payload validation".
    let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let ok = check(
        "github",
        &SchemeConfig::default(),
        &[("X-Hub-Signature-256", sig)],
        b"Hello, World!",
        "It's a Secret to Everybody",
        0,
    );
    assert_eq!(ok, Ok(()));
    let bad = check(
        "github",
        &SchemeConfig::default(),
        &[("X-Hub-Signature-256", sig)],
        b"Hello, World?",
        "It's a Secret to Everybody",
        0,
    );
    assert_eq!(bad.unwrap_err().code, "signature_invalid");
    let none = check("github", &SchemeConfig::default(), &[], b"x", "s", 0);
    assert_eq!(none.unwrap_err().code, "signature_missing");
}

const SLACK_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";

#[test]
fn slack_published_example() {
    // api.slack.com, "Verifying requests from Slack", the worked example.
    let headers = [
        (
            "X-Slack-Signature",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        ),
        ("X-Slack-Request-Timestamp", "1531420618"),
    ];
    let secret = "8f742231b10e8888abcd99yyyzzz85a5";
    assert_eq!(
        check(
            "slack",
            &SchemeConfig::default(),
            &headers,
            SLACK_BODY.as_bytes(),
            secret,
            1531420618 + 10
        ),
        Ok(())
    );
    // The same request six minutes later is a replay.
    let late = check(
        "slack",
        &SchemeConfig::default(),
        &headers,
        SLACK_BODY.as_bytes(),
        secret,
        1531420618 + 360,
    );
    assert_eq!(late.unwrap_err().code, "timestamp_outside_window");
}

#[test]
fn standard_webhooks_published_example() {
    // The Standard Webhooks specification's example (also in Svix's docs).
    let headers = [
        ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
        ("webhook-timestamp", "1614265330"),
        (
            "webhook-signature",
            "v1,bm9ldHZhbGlk v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
    ];
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    assert_eq!(
        check(
            "standard_webhooks",
            &SchemeConfig::default(),
            &headers,
            br#"{"test": 2432232314}"#,
            secret,
            1614265330
        ),
        Ok(())
    );
    let tampered = check(
        "standard_webhooks",
        &SchemeConfig::default(),
        &headers,
        br#"{"test": 2432232315}"#,
        secret,
        1614265330,
    );
    assert_eq!(tampered.unwrap_err().code, "signature_invalid");
}

#[test]
fn stripe_accepts_any_v1_and_checks_the_window() {
    let secret = "whsec_test_secret";
    let body = br#"{"id":"evt_1","type":"invoice.paid"}"#;
    let mut mac = hmac_sha256(secret.as_bytes());
    mac.update(b"1700000000.");
    mac.update(body);
    let good = hex::encode(mac.finalize().into_bytes());
    let header = format!("t=1700000000,v1={},v1={good},v0=abc", "00".repeat(32));
    let h = [("Stripe-Signature", header.as_str())];
    assert_eq!(
        check(
            "stripe",
            &SchemeConfig::default(),
            &h,
            body,
            secret,
            1700000100
        ),
        Ok(())
    );
    assert_eq!(
        check(
            "stripe",
            &SchemeConfig::default(),
            &h,
            body,
            secret,
            1700000400
        )
        .unwrap_err()
        .code,
        "timestamp_outside_window"
    );
    assert_eq!(
        check(
            "stripe",
            &SchemeConfig::default(),
            &h,
            b"{}",
            secret,
            1700000100
        )
        .unwrap_err()
        .code,
        "signature_invalid"
    );
}

#[test]
fn generic_hmac_with_sha512_base64_prefix_and_timestamp() {
    let config = SchemeConfig {
        header: Some("X-Sig".into()),
        algorithm: Some("sha512".into()),
        encoding: Some("base64".into()),
        prefix: Some("sha512=".into()),
        timestamp_header: Some("X-Ts".into()),
        signed_payload: Some("{timestamp}:{body}".into()),
    };
    let mut mac = hmac::Hmac::<sha2::Sha512>::new_from_slice(b"k").unwrap();
    mac.update(b"100:hello");
    let sig = format!(
        "sha512={}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    let h = [("X-Sig", sig.as_str()), ("X-Ts", "100")];
    assert_eq!(check("hmac", &config, &h, b"hello", "k", 120), Ok(()));
    assert!(check("hmac", &config, &h, b"hellO", "k", 120).is_err());
    assert!(
        check_config("hmac", &SchemeConfig::default())
            .iter()
            .any(|(f, _)| f == "config.header")
    );
}

#[test]
fn tokens_compare_whole_values() {
    let config = SchemeConfig {
        header: Some("Authorization".into()),
        prefix: Some("Bearer ".into()),
        ..Default::default()
    };
    assert_eq!(
        check(
            "token",
            &config,
            &[("Authorization", "Bearer s3cret")],
            b"",
            "s3cret",
            0
        ),
        Ok(())
    );
    assert_eq!(
        check(
            "token",
            &config,
            &[("Authorization", "Bearer s3cre")],
            b"",
            "s3cret",
            0
        )
        .unwrap_err()
        .code,
        "token_invalid"
    );
}

#[test]
fn svix_headers_carry_the_standard_webhooks_scheme() {
    // Svix's published example (docs.svix.com, "Verifying payloads manually"): the same
    // vector as the Standard Webhooks one, under svix-* header names.
    let headers = [
        ("svix-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
        ("svix-timestamp", "1614265330"),
        (
            "svix-signature",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
    ];
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let body = br#"{"test": 2432232314}"#;
    let none = SchemeConfig::default();
    assert_eq!(
        check(
            "standard_webhooks",
            &none,
            &headers,
            body,
            secret,
            1614265330
        ),
        Ok(())
    );
    let tampered = check(
        "standard_webhooks",
        &none,
        &headers,
        br#"{"test": 2432232315}"#,
        secret,
        1614265330,
    );
    let refused = tampered.unwrap_err();
    assert_eq!(refused.code, "signature_invalid");
    assert!(
        refused.detail.contains("svix-signature"),
        "{}",
        refused.detail
    );
    let late = check(
        "standard_webhooks",
        &none,
        &headers,
        body,
        secret,
        1614265330 + 301,
    );
    assert_eq!(late.unwrap_err().code, "timestamp_outside_window");
    let unsigned = check(
        "standard_webhooks",
        &none,
        &headers[..2],
        body,
        secret,
        1614265330,
    );
    assert_eq!(unsigned.unwrap_err().code, "signature_missing");
}
