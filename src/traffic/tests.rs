//! Unit tests of `traffic`.

use super::*;

#[test]
fn retry_after_is_read_as_seconds_or_as_an_http_date() {
    let now: DateTime<Utc> = "2015-10-21T07:28:00Z".parse().unwrap();
    assert_eq!(
        parse_retry_after("120", now),
        Some(Duration::from_secs(120))
    );
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
        Some(Duration::ZERO),
        "a date in the past means now"
    );
    assert_eq!(parse_retry_after("soon", now), None);
    assert_eq!(parse_retry_after("-5", now), None);
}

#[test]
fn a_tenant_is_its_base_url_and_tenant_header() {
    assert_eq!(
        tenant_key("https://Cloud.UiPath.com/org/t/orchestrator_/", None),
        tenant_key("https://cloud.uipath.com/org/t/orchestrator_", None)
    );
    assert_ne!(
        tenant_key("https://h/odata", Some("A")),
        tenant_key("https://h/odata", Some("B"))
    );
}

#[test]
fn the_running_failure_count_matches_the_window_it_keeps() {
    let mut l = Local {
        row: TenantRow::default(),
        outcomes: VecDeque::new(),
        failures: 0,
        probing: false,
        window: 1,
        lists_spent_until: None,
    };
    let keep = Duration::from_secs(10);
    let start = Instant::now();
    let scanned = |l: &Local| l.outcomes.iter().filter(|(_, f)| *f).count();
    // Calls a second apart, every third one failed: the window holds the last 11.
    for i in 0..40u64 {
        l.record(start + Duration::from_secs(i), i % 3 == 0, keep);
        assert_eq!(l.failures, scanned(&l), "after call {i}");
        assert!(l.outcomes.len() <= 11);
    }
    let (share, calls) = l.failure_share();
    assert_eq!(calls, 11);
    assert!((share - scanned(&l) as f64 / 11.0).abs() < 1e-9);
    // Long quiet: everything is forgotten, and an empty window fails nothing.
    l.forget(start + Duration::from_secs(100), keep);
    assert_eq!((l.failures, l.outcomes.len()), (0, 0));
    assert_eq!(l.failure_share(), (0.0, 0));
    l.record(start + Duration::from_secs(101), true, keep);
    l.clear_outcomes();
    assert_eq!((l.failures, l.outcomes.len()), (0, 0));
}
