//! Unit tests of `config`.

use super::*;

#[test]
fn env_names_follow_the_double_underscore_convention() {
    assert_eq!(env_name(&["port"]), "GATEWAY_PORT");
    assert_eq!(
        env_name(&["database", "max_connections"]),
        "GATEWAY_DATABASE__MAX_CONNECTIONS"
    );
    assert_eq!(env_name(&["database_url"]), "DATABASE_URL");
}

#[test]
fn defaults_are_valid() {
    let s = Settings::default();
    s.validate().unwrap();
    assert_eq!(s.port, 8080);
    assert_eq!(s.body_limit_bytes, 1024 * 1024);
}
