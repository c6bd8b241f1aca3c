//! The built-in defaults: the first layer of the settings, and the one place their values
//! are written (the configuration reference is checked against it).

use super::*;

/// A JSON value as figment's own: serde_json keeps numbers as their text
/// (`arbitrary_precision`, for exact arguments), which other serializers would see as a map.
pub(super) fn figment_value(v: &serde_json::Value) -> figment::value::Value {
    use figment::value::{Num, Value as F};
    use serde_json::Value as J;
    let tag = figment::value::Tag::Default;
    match v {
        J::Null => F::from(figment::value::Empty::None),
        J::Bool(b) => F::Bool(tag, *b),
        J::Number(n) => F::Num(
            tag,
            match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => Num::U64(u),
                (None, Some(i)) => Num::I64(i),
                _ => Num::F64(n.as_f64().unwrap_or_default()),
            },
        ),
        J::String(s) => F::String(tag, s.clone()),
        J::Array(items) => F::Array(tag, items.iter().map(figment_value).collect()),
        J::Object(map) => F::Dict(
            tag,
            map.iter()
                .map(|(k, v)| (k.clone(), figment_value(v)))
                .collect(),
        ),
    }
}

/// The built-in defaults of every setting, as the first configuration layer.
pub fn defaults() -> serde_json::Value {
    serde_json::json!({
        "host": "127.0.0.1",
        "port": 8080,
        "data_dir": "./.uipath-gateway",
        "database_url": null,
        "database": DatabaseSettings {
            max_connections: 20,
            min_connections: 1,
            acquire_timeout_ms: 3_000,
            write_timeout_ms: 5_000,
        },
        "pg_bin": null,
        "embedded": EmbeddedSettings { run_as: "postgres".into() },
        "dispatch": DispatchSettings {
            max_attempts: 10,
            reconcile_after_secs: 5,
            lease_secs: 60,
            poll_interval_ms: 250,
            batch_size: 50,
        },
        "tracking": TrackingSettings {
            pass_interval_ms: 1_000,
            poll_every_secs: 5,
            poll_every_secs_with_webhooks: 120,
            webhook_quiet_secs: 300,
            list_budget_per_minute: 60,
            ids_per_list: 50,
            single_get_max: 3,
            single_reads_per_second: 50,
            batch_size: 500,
            webhook_check_secs: 300,
        },
        "traffic": TrafficSettings {
            list_window_secs: 60,
            list_reserve_share: 0.2,
            budget_probe_secs: 3_600,
            list_pause_secs: 60,
            call_pause_secs: 5,
            health_window_secs: 10,
            circuit_min_calls: 8,
            circuit_failure_share: 0.5,
            strike_failure_share: 0.2,
            circuit_open_ms: 1_000,
            circuit_open_max_secs: 30,
            refresh_ms: 250,
            max_filter_chars: 4_000,
        },
        "callbacks": CallbackSettings {
            retry_schedule_secs: vec![5, 300, 1_800, 7_200, 18_000, 36_000],
            jitter: 0.2,
            timeout_ms: 10_000,
            poll_interval_ms: 1_000,
            batch_size: 20,
        },
        "hooks": HookSettings {
            dedup_retention_secs: 7 * 24 * 3600,
            max_body_bytes: 256 * 1024,
            refused_retention_secs: 3 * 24 * 3600,
            refused_per_minute: 60,
        },
        "limits": ClientLimitSettings {
            connections_per_address: 64,
            body_bytes_per_address: 4 * 1024 * 1024,
            body_timeout_secs: 5,
            body_min_bytes_per_sec: 16 * 1024,
        },
        "rate_limits": RateLimitSettings {
            api_key_per_second: 100,
            api_key_burst: 200,
            hook_per_second: 100,
            hook_burst: 200,
        },
        "public_url": null,
        "allow_private_callbacks": false,
        "encryption_keys": null,
        "admin_token": null,
        "orchestrator": OrchestratorSettings {
            timeout_ms: 30_000,
            refresh_at: 0.8,
            refresh_interval_secs: 30,
            pat_warning_days: 14,
        },
        "log_format": LogFormat::Auto,
        "log_level": "info,sqlx=warn",
        "body_limit_bytes": 1024 * 1024,
        "shutdown_timeout_secs": 30,
        "http_workers": 0,
        "connections": [],
        "processes": [],
        "queues": [],
        "api_keys": [],
        "webhooks": [],
    })
}
