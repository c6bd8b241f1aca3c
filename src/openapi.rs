//! The OpenAPI document, used by the server, the `openapi` command and the drift test.

use actix_web::App;
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;

use crate::routes;

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
    with_rate_limit_answers(api)
}

/// Every call that counts against a rate limit (those with credentials, and
/// `/hooks/{slug}`) may answer 429 with `Retry-After`; every JSON body may get 415; every
/// admin operation answers 401 without the admin token and 403 while the admin API is
/// closed (an operation may say more in its own words).
fn with_rate_limit_answers(mut api: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::{
        ContentBuilder, HeaderBuilder, Ref, ResponseBuilder, Type, schema::ObjectBuilder,
    };
    let answer = ResponseBuilder::new()
        .description(
            "Over the rate limit of this API key or webhook; retry after `Retry-After` seconds",
        )
        .header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::Integer))
                .description(Some("Seconds to wait"))
                .build(),
        )
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build();
    let problem = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build()
    };
    let not_json = problem("The body is not sent as `Content-Type: application/json`");
    let no_admin_token = problem("No or wrong admin token");
    let admin_closed = problem("The admin API is closed");
    for (path, item) in api.paths.paths.iter_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            let limited =
                path == "/hooks/{slug}" || op.security.as_ref().is_some_and(|s| !s.is_empty());
            let admin = serde_json::to_value(&op.security)
                .is_ok_and(|s| s.to_string().contains("\"admin_token\""));
            if admin {
                let answers = &mut op.responses.responses;
                answers
                    .entry("401".into())
                    .or_insert_with(|| no_admin_token.clone().into());
                answers
                    .entry("403".into())
                    .or_insert_with(|| admin_closed.clone().into());
            }
            if limited {
                op.responses
                    .responses
                    .entry("429".into())
                    .or_insert_with(|| answer.clone().into());
            }
            let takes_json = op
                .request_body
                .as_ref()
                .is_some_and(|b| b.content.contains_key("application/json"));
            if takes_json && path != "/hooks/{slug}" {
                op.responses
                    .responses
                    .entry("415".into())
                    .or_insert_with(|| not_json.clone().into());
            }
        }
    }
    api
}

/// The document as committed in `openapi/openapi.json`: pretty JSON and a final newline.
pub fn spec_json() -> String {
    let mut out = spec()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    out.push('\n');
    out
}
