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
