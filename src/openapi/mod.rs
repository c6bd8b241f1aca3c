//! The OpenAPI document, used by the server, the `openapi` command and the drift test.

use actix_web::App;
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;

use crate::routes;

mod answers;
mod nullable;

/// Top-level facts of the document; paths and schemas are collected from the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "uipath-gateway",
        description = "Start UiPath robots over plain HTTP. Errors are RFC 9457 \
            `application/problem+json` documents with a stable `code`.",
        license(name = "MIT"),
    ),
    tags(
        (name = "run", description = "Start a process"),
        (name = "jobs", description = "The job ledger"),
        (name = "operations", description = "Health and readiness"),
        (name = "connections", description = "Orchestrator tenants and their credentials (admin)"),
        (name = "processes", description = "What /run/{process} starts (admin)"),
        (name = "queues", description = "Add items to Orchestrator queues (POST /queues/{queue}), read them back, and the queue mappings (admin)"),
        (name = "api-keys", description = "Keys for /run and /jobs (admin)"),
        (name = "hooks", description = "Inbound webhooks: /hooks/{slug} and their definitions (admin)"),
        (name = "dead letters", description = "Jobs and callbacks that ran out of attempts, and redrive (admin)"),
        (name = "admin", description = "The audit log of admin changes (admin)"),
    ),
    components(schemas(crate::error::Problem)),
    modifiers(&SecuritySchemes)
)]
pub struct ApiDoc;

/// Declares the bearer schemes used by `security(...)` on the handlers.
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The value of GATEWAY_ADMIN_TOKEN, or an API key with the admin scope",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key_header",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Header(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    "X-API-Key",
                    "The same API key in an `X-API-Key` header, for senders that cannot set \
                     `Authorization`",
                ),
            )),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key (ugw_...) from POST /api-keys"))
                    .build(),
            ),
        );
    }
}

/// The whole document, exactly as served at `/openapi.json`.
pub fn spec() -> utoipa::openapi::OpenApi {
    let (_, api) = App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(routes::configure)
        .split_for_parts();
    run_view(answers::add(api))
}

/// The document as JSON, as served (before the processes are added) and committed:
/// `spec()` with its optional fields drawn as what they are.
pub fn spec_value() -> serde_json::Value {
    let mut doc = serde_json::to_value(spec()).expect("the OpenAPI document serializes");
    nullable::tidy(&mut doc);
    doc
}

/// `/run` answers with a job as `GET /jobs/{id}` shows it, less its timeline and
/// callbacks: `RunJob`, derived from `JobView` so the two cannot drift apart.
fn run_view(mut api: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::{Ref, RefOr, Schema};
    let Some(components) = api.components.as_mut() else {
        return api;
    };
    let Some(RefOr::T(Schema::Object(job))) = components.schemas.get("JobView") else {
        return api;
    };
    let mut run = job.clone();
    run.properties.remove("timeline");
    run.properties.remove("callbacks");
    run.description = Some(
        "A job as `/run` answers with it; `GET /jobs/{id}` adds its timeline and callbacks.".into(),
    );
    run.example = Some(serde_json::json!({
        "id": "0b5e7a9c-62c2-4d5f-9f55-4ad4f1d7b0a3", "process": "Invoices", "state": "pending",
        "source": "api", "reference": "ugw-0b5e7a9c-62c2-4d5f-9f55-4ad4f1d7b0a3",
        "input": {"in_Vendor": "ACME", "in_Amount": 12.5}, "orchestrator_job_id": 4711,
        "orchestrator_job_key": "6a4c1f3e-2b7d-4e8f-9a10-b2c3d4e5f607", "output": null,
        "error": null, "info": null, "attempts": 1, "next_attempt_at": null, "last_error": null,
        "replay_of": null, "created_at": "2026-12-06T09:00:00Z",
        "updated_at": "2026-12-06T09:00:01Z", "finished_at": null
    }));
    components
        .schemas
        .insert("RunJob".into(), RefOr::T(Schema::Object(run)));
    if let Some(op) = api
        .paths
        .paths
        .get_mut("/run/{process}")
        .and_then(|item| item.post.as_mut())
    {
        for status in ["200", "202"] {
            if let Some(RefOr::T(answer)) = op.responses.responses.get_mut(status)
                && let Some(content) = answer.content.get_mut("application/json")
            {
                content.schema = Some(Ref::from_schema_name("RunJob").into());
            }
        }
    }
    api
}

/// The document as committed in `openapi/openapi.json`: pretty JSON and a final newline.
pub fn spec_json() -> String {
    let mut out =
        serde_json::to_string_pretty(&spec_value()).expect("the OpenAPI document serializes");
    out.push('\n');
    out
}
