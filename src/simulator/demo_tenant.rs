//! `Scenario::default()`: the ready-made demo tenant (organization, folders, releases
//! with typed arguments, every kind of credential) the demo and the tests start from.

use std::collections::BTreeMap;

use super::scenario::*;

fn arg(name: &str, type_name: &str, required: bool) -> Argument {
    Argument {
        name: name.into(),
        type_name: type_name.into(),
        required,
        has_default: !required,
    }
}

impl Default for Scenario {
    fn default() -> Self {
        let release = |id, key: &str, process_key: &str, folder_id, input, output| Release {
            id,
            key: key.into(),
            process_key: process_key.into(),
            process_version: "1.0.3".into(),
            name: process_key.into(),
            folder_id,
            input_arguments: input,
            output_arguments: output,
        };
        let mut behaviours = BTreeMap::new();
        behaviours.insert(
            "FailingJob".to_string(),
            JobBehaviour {
                outcome: Outcome::Faulted,
                ..JobBehaviour::default()
            },
        );
        Scenario {
            organizations: vec![Organization {
                name: "demo-org".into(),
                tenants: vec!["DefaultTenant".into()],
            }],
            onprem_tenants: vec!["Default".into()],
            folders: vec![
                Folder {
                    id: 1,
                    key: "6b3a8bde-0a5e-4a55-9d6c-2b0e6a6e4a01".into(),
                    fully_qualified_name: "Shared".into(),
                },
                Folder {
                    id: 2,
                    key: "6b3a8bde-0a5e-4a55-9d6c-2b0e6a6e4a02".into(),
                    fully_qualified_name: "Finance".into(),
                },
                Folder {
                    id: 3,
                    key: "6b3a8bde-0a5e-4a55-9d6c-2b0e6a6e4a03".into(),
                    fully_qualified_name: "Finance/AP".into(),
                },
                Folder {
                    id: 4,
                    key: "6b3a8bde-0a5e-4a55-9d6c-2b0e6a6e4a04".into(),
                    fully_qualified_name: "Übersee/Zürich".into(),
                },
            ],
            releases: vec![
                release(
                    101,
                    "b27c7363-459c-4520-bae5-660d4a1d3813",
                    "InvoiceBot",
                    3,
                    vec![
                        arg("in_Vendor", "System.String", true),
                        arg("in_Amount", "System.Decimal", true),
                        arg("in_DueDate", "System.DateTime", false),
                        arg("in_Urgent", "System.Boolean", false),
                    ],
                    vec![arg("out_InvoiceId", "System.String", false)],
                ),
                release(
                    102,
                    "0f7a4e55-9b1c-4c1a-8e8e-0d1c7c3a0102",
                    "OrderSync",
                    1,
                    vec![
                        arg("in_OrderIds", "System.Int64[]", true),
                        arg(
                            "in_Options",
                            "System.Collections.Generic.Dictionary`2[System.String,System.Object]",
                            false,
                        ),
                    ],
                    vec![],
                ),
                release(
                    103,
                    "5a1e3d9c-7d4b-4d8a-9a2c-1f0e9b8c0103",
                    "FailingJob",
                    1,
                    vec![],
                    vec![],
                ),
                release(
                    104,
                    "c4d2b1a0-3e5f-4a6b-8c7d-9e0f1a2b0104",
                    "Reisekosten",
                    4,
                    vec![arg("in_Name", "System.String", true)],
                    vec![],
                ),
            ],
            external_apps: vec![ExternalApp {
                client_id: "sim-app".into(),
                client_secret: Some("sim-app-secret".into()),
                scopes: [
                    "OR.Folders.Read",
                    "OR.Execution.Read",
                    "OR.Jobs",
                    "OR.Webhooks",
                    "OR.Queues",
                ]
                .map(String::from)
                .to_vec(),
            }],
            users: vec![User {
                tenancy_name: "Default".into(),
                username: "admin".into(),
                password: "sim-password".into(),
            }],
            personal_access_tokens: vec![PersonalAccessToken {
                token: format!("rt_{}-1", "5e".repeat(32)),
                scopes: ["OR.Folders.Read", "OR.Execution.Read", "OR.Jobs"]
                    .map(String::from)
                    .to_vec(),
                expires_at: "2099-12-31T00:00:00Z".parse().expect("a valid date"),
            }],
            user_keys: vec![UserKey {
                key: "sim-user-key".into(),
                email: "robot@example.com".into(),
                account_logical_name: "demo-org".into(),
                tenant_logical_name: "DefaultTenant".into(),
            }],
            refresh_tokens: vec![RefreshTokenGrant {
                token: "sim-refresh-token-0".into(),
                client_id: "sim-app".into(),
                scopes: [
                    "OR.Folders.Read",
                    "OR.Execution.Read",
                    "OR.Jobs",
                    "offline_access",
                ]
                .map(String::from)
                .to_vec(),
            }],
            behaviours,
            default_behaviour: JobBehaviour::default(),
            token_lifetimes: TokenLifetimes::default(),
            queues: vec![
                QueueDefinition {
                    id: 201,
                    key: "d1c0a5e2-4b7f-4e59-9a61-3f1d2c0b0201".into(),
                    name: "InvoicesToBook".into(),
                    folder_id: 3,
                    enforce_unique_reference: true,
                    specific_data_json_schema: Some(
                        serde_json::json!({
                            "type": "object",
                            "required": ["InvoiceNumber", "Amount"],
                            "properties": {
                                "InvoiceNumber": {"type": "string", "minLength": 1},
                                "Amount": {"type": "number"},
                                "Vendor": {"type": "string"}
                            }
                        })
                        .to_string(),
                    ),
                    output_data_json_schema: Some(
                        serde_json::json!({"type": "object", "properties": {"BookingId": {"type": "string"}}})
                            .to_string(),
                    ),
                    max_number_of_retries: 1,
                },
                QueueDefinition {
                    id: 202,
                    key: "7e9b3f10-2c4d-4a8e-b6f5-1a2b3c4d0202".into(),
                    name: "Leads".into(),
                    folder_id: 1,
                    enforce_unique_reference: false,
                    specific_data_json_schema: None,
                    output_data_json_schema: None,
                    max_number_of_retries: 0,
                },
            ],
            queue_behaviours: BTreeMap::from([(
                "InvoicesToBook".to_string(),
                QueueBehaviour {
                    output: serde_json::json!({"BookingId": "BK-1001"}),
                    ..QueueBehaviour::default()
                },
            )]),
            jobs_filter_rate_per_minute: 100,
            jobs_filter_window_secs: 60,
            webhook_breaker_seconds: 3600,
            manual_jobs: false,
            list_omits_arguments: false,
        }
    }
}
