//! Unit tests of `odata_query`.

use super::*;
use serde_json::json;

fn matches(filter: &str, v: Value) -> bool {
    Query::parse(&format!("$filter={}", urlencode(filter)))
        .unwrap()
        .filter
        .unwrap()
        .eval(&v)
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("x", s)]).unwrap()[2..].to_string()
}

#[test]
fn filters_combine_and_or_and_paths() {
    let job =
        json!({"Id": 5, "State": "Running", "Reference": "ugw-1", "Release": {"ProcessKey": "X"}});
    assert!(matches("Id eq 5L", job.clone()));
    assert!(matches(
        "(Id eq 4 or Id eq 5) and State eq 'Running'",
        job.clone()
    ));
    assert!(matches("Release/ProcessKey eq 'X'", job.clone()));
    assert!(!matches(
        "Reference eq 'ugw-2' or State ne 'Running'",
        job.clone()
    ));
    assert!(matches("Reference eq 'ugw-1'", job));
}

#[test]
fn ids_pinned_by_a_filter_are_found() {
    let ids = |f: &str| {
        Query::parse(&format!("$filter={}", urlencode(f)))
            .unwrap()
            .filter
            .unwrap()
            .ids()
    };
    assert_eq!(ids("Id eq 1 or Id eq 3"), Some([1, 3].into()));
    assert_eq!(
        ids("(Id eq 1 or Id eq 3) and State eq 'Pending'"),
        Some([1, 3].into())
    );
    assert_eq!(ids("Id eq 1 or State eq 'Pending'"), None);
    assert_eq!(ids("Id gt 1"), None);
    assert_eq!(ids("Id eq 'x'"), None);
    assert_eq!(ids("Id eq 1 and Id eq 2"), Some(BTreeSet::new()));
}

#[test]
fn references_pinned_by_a_filter_are_found() {
    let refs = |f: &str| {
        Query::parse(&format!("$filter={}", urlencode(f)))
            .unwrap()
            .filter
            .unwrap()
            .references()
            .map(|r| r.into_iter().collect::<Vec<_>>())
    };
    assert_eq!(
        refs("Reference eq 'ugw-1'"),
        Some(vec!["ugw-1".to_string()])
    );
    assert_eq!(
        refs("(Reference eq 'a' or Reference eq 'b') and State eq 'Pending'"),
        Some(vec!["a".to_string(), "b".to_string()])
    );
    assert_eq!(refs("Reference eq 'a' or State eq 'Pending'"), None);
    assert_eq!(refs("Reference ne 'a'"), None);
    assert_eq!(refs("Reference eq 'a' and Reference eq 'b'"), Some(vec![]));
    // Compared as instants, so not pinned to one spelling.
    assert_eq!(refs("Reference eq '2026-01-01T00:00:00Z'"), None);
}

#[test]
fn unquoted_strings_and_large_tops_are_refused() {
    assert!(Query::parse("$filter=ProcessKey%20eq%20X").is_err());
    assert!(Query::parse("$top=1001").is_err());
    assert!(Query::parse("$top=1000").is_ok());
}
